"""Drive an SMTPProtocol over a StringTransport with a fake clock and a real asyncio loop."""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from gateway.protocols.smtp.adapter import SMTPProtocol, SMTPSettings
from gateway.protocols.smtp.checks import Authenticator, RecipientCheck
from gateway.protocols.smtp.core import ServerConfig
from gateway.protocols.smtp.listener import SMTPFactory
from tests.unit.smtp.harness import replies


class TLSStringTransport(StringTransport):
    """A StringTransport that records ``startTLS`` (and then marks itself TLS like Twisted's
    ``_newtls``), and counts pause/resume calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tls_started_with: Any = None
        self.written_before_tls = b""
        self.TLS = False
        self.pauses = 0

    def startTLS(self, options: Any) -> None:
        self.tls_started_with = options
        self.written_before_tls = self.value()
        self.TLS = True

    def pauseProducing(self) -> None:
        self.pauses += 1
        super().pauseProducing()


class Harness:
    """One connection; ``send(bytes)`` feeds the client side, ``replies()`` takes what we wrote."""

    def __init__(self, app: Any, *, config: ServerConfig | None = None, auth: Any = None, factory: bool = False,
                 peer: str = "192.0.2.1", **settings: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = MemoryReactorClock()
        config = config or ServerConfig(hostname="mx.test", check_sender=False)
        if auth is not None:
            users, hook = auth
            auth = Authenticator(users, hook, self.loop, self.clock, 5.0)
        self.settings = SMTPSettings(
            app=app, loop=self.loop, reactor=self.clock, server=config,
            recipients=RecipientCheck(app, self.loop, self.clock, settings.pop("recipient_timeout", 5.0)),
            auth=auth, close_timeout=settings.pop("close_timeout", 3.0),
            **settings,
        )
        self.factory = SMTPFactory(self.settings) if factory else None
        self.transport = TLSStringTransport(
            hostAddress=IPv4Address("TCP", "192.0.2.25", 25), peerAddress=IPv4Address("TCP", peer, 40000)
        )
        self.protocol = self.connect(self.transport)

    def connect(self, transport: Any) -> SMTPProtocol:
        protocol = SMTPProtocol(self.settings)
        protocol.factory = self.factory
        self.inside(protocol.makeConnection, transport)
        return protocol

    def send(self, data: bytes, rounds: int = 30) -> None:
        """Deliver ``data`` from inside the loop, as the asyncio reactor does, then let it run."""
        self.inside(self.protocol.dataReceived, data)
        self.run(rounds)

    def inside(self, function: Any, *args: Any) -> Any:
        """Call ``function`` from a callback of the running loop (a reactor callback)."""
        async def call() -> Any:
            return function(*args)

        return self.loop.run_until_complete(call())

    def run(self, rounds: int = 30) -> None:
        for _ in range(rounds):
            self.loop.run_until_complete(asyncio.sleep(0))

    def advance(self, seconds: float) -> None:
        self.inside(self.clock.advance, seconds)
        self.run()

    def output(self) -> bytes:
        value = self.transport.value()
        self.transport.clear()
        return value

    def replies(self) -> list[bytes]:
        return replies(self.output())

    def codes(self) -> list[int]:
        return [int(r[:3]) for r in self.replies()]

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)

    def lose(self) -> None:
        self.protocol.connectionLost(None)
        self.run()

    def close(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.run(3)
        self.loop.close()


def message(subject: str = "hi", body: str = "hello", extra: str = "") -> bytes:
    """A small CRLF message, dot-terminated for the DATA phase."""
    return f"Subject: {subject}\r\nMessage-ID: <{subject}@test>\r\n{extra}\r\n{body}\r\n.\r\n".encode()


def transaction(rcpt: str = "bob@accept.test", *, sender: str = "alice@example.org", **kwargs: Any) -> bytes:
    """MAIL, RCPT and DATA, pipelined, plus the message."""
    return f"MAIL FROM:<{sender}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode() + message(**kwargs)
