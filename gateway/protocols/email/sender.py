# -*- test-case-name: tests.unit.smtp.test_sender -*-
"""Submitting ``email.send`` messages to a smarthost: STARTTLS (or implicit TLS) with the server's
certificate verified, optional AUTH, one connection per message.

Built on Twisted's :class:`twisted.mail.smtp.ESMTPSender` with one fix: its ``transformChunk``
converts LF to CRLF and dot-stuffs each 16 KiB chunk on its own, so a line starting with a period
right after a chunk boundary is sent unstuffed (a lone ``.`` there would end the data early).
Here the whole message is made wire-ready once (:func:`gateway.protocols.email.compose.wire_data`) and
sent unchanged.

The outcome becomes the fields of an ``email.send.result`` event (``docs/asgi-email.md``):
``ok``, ``code`` (the last SMTP reply code, None when no reply was read), ``text``,
``temporary`` (a retry may succeed: 4xx replies, connection and TLS failures, timeouts) and
``refused`` (recipient -> reply, for recipients the smarthost refused).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.mail import smtp
from twisted.python.failure import Failure

from gateway.protocols.email.compose import Outgoing, compose
from gateway.protocols.email.config import SmarthostConfig
from gateway.tls import client_tls_options

__all__ = ["SmarthostSender"]

log = Logger(namespace="gateway.protocols.email.sender")


class _Sender(smtp.ESMTPSender):
    """ESMTPSender that sends the prepared data as it is (see the module docstring)."""

    def transformChunk(self, chunk: bytes) -> bytes:
        self.resetTimeout()
        return chunk


class _SenderFactory(smtp.ESMTPSenderFactory):
    protocol = _Sender
    noisy = False

    def __init__(self, *args: Any, helo: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.domain = helo.encode("ascii")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class SmarthostSender:
    """Sends messages through one configured smarthost.

    Args:
        config: the smarthost settings.
        reactor: the reactor to connect with.
        helo: the EHLO name when the configuration gives none.
    """

    def __init__(self, config: SmarthostConfig, reactor: Any, helo: str) -> None:
        self.config = config
        self.reactor = reactor
        self.helo = config.helo or helo
        self.tls_name = config.server_name or config.host
        self._options: Any = None

    def tls_options(self) -> Any:
        """The client TLS options (built once; reading the CA file may fail)."""
        if self._options is None:
            self._options = client_tls_options(self.tls_name, self.config.ca_file)
        return self._options

    def prepare(self, message: Mapping[str, Any]) -> Outgoing:
        """Check and build one message (raises ``LocalProtocolError`` when malformed)."""
        return compose(message, self.config.sender)

    def send(self, message: Mapping[str, Any]) -> defer.Deferred[dict[str, Any]]:
        """Submit an ``email.send`` message; fires with the result fields (never fails).

        Raises:
            LocalProtocolError: the message is malformed (raised at once, nothing is sent).
        """
        outgoing = self.prepare(message)
        return self.submit(outgoing)

    def submit(self, outgoing: Outgoing) -> defer.Deferred[dict[str, Any]]:
        """Submit a prepared message; fires with the result fields (never fails)."""
        config = self.config
        done: defer.Deferred[Any] = defer.Deferred()
        try:
            options = self.tls_options()
        except Exception as exc:
            return defer.succeed(_failure_result(Failure(exc)))
        username = config.username.encode("utf-8") if config.username is not None else None
        password = config.password.encode("utf-8") if config.password is not None else None
        factory = _SenderFactory(
            username,
            password,
            outgoing.sender,
            list(outgoing.recipients),
            io.BytesIO(outgoing.data),
            done,
            retries=0,
            timeout=config.timeout,
            contextFactory=options,
            requireAuthentication=username is not None,
            requireTransportSecurity=True,
            helo=self.helo,
        )
        if config.tls == "implicit":
            self.reactor.connectSSL(config.host, config.port, factory, options, timeout=config.timeout)
        else:
            self.reactor.connectTCP(config.host, config.port, factory, timeout=config.timeout)
        done.addCallbacks(_success_result, _failure_result)
        return done


def _success_result(result: Any) -> dict[str, Any]:
    accepted, addresses = result
    refused = {
        _text(address): f"{code} {_text(text)}".strip()
        for address, code, text in addresses
        if code not in smtp.SUCCESS
    }
    if refused:
        return {"ok": False, "code": 250, "temporary": False, "refused": refused,
                "text": f"sent to {accepted} recipient(s); {len(refused)} refused"}
    return {"ok": True, "code": 250, "temporary": False, "refused": {}, "text": "sent"}


def _failure_result(failure: Failure) -> dict[str, Any]:
    exc = failure.value
    if isinstance(exc, smtp.SMTPClientError):
        code = exc.code if isinstance(exc.code, int) and exc.code > 0 else None
        refused = {}
        for item in getattr(exc, "addresses", None) or ():
            address, rcode, rtext = item
            if rcode not in smtp.SUCCESS:
                refused[_text(address)] = f"{rcode} {_text(rtext)}".strip()
        text = _text(exc.resp) if exc.resp else str(exc)
        if isinstance(exc, smtp.SMTPConnectError) and exc.__cause__ is not None:
            text = f"cannot connect to the smarthost: {exc.__cause__}"
        temporary = code is None or 400 <= code < 500 or isinstance(exc, smtp.SMTPConnectError)
        return {"ok": False, "code": code, "temporary": temporary, "refused": refused, "text": text}
    log.info("Smarthost send failed: {error}", error=failure.getErrorMessage())
    return {"ok": False, "code": None, "temporary": True, "refused": {},
            "text": f"{type(exc).__name__}: {failure.getErrorMessage()}"}
