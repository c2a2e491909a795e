"""The IMAP reader as a daemon listener (``protocol: imap``): no socket of its own; it starts
reading after lifespan startup and, on stop, finishes the message in progress and logs out."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from twisted.internet import defer

from gateway.listener import GatewayListener, ListenerContext
from gateway.protocols.email.sender import SmarthostSender
from gateway.protocols.imap.adapter import MailboxReader
from gateway.protocols.imap.config import ImapListenerConfig

__all__ = ["ImapListener", "build_listener"]


class ImapListener(GatewayListener):
    """Runs one :class:`MailboxReader`."""

    def __init__(self, name: str, reader: MailboxReader) -> None:
        super().__init__(name)
        self.reader = reader

    def attach_stats(self, stats: Any) -> None:
        super().attach_stats(stats)
        self.reader.stats = stats

    def start_accepting(self) -> None:
        self.reader.start()

    def drain(self, timeout: float, reactor: Any) -> defer.Deferred[None]:
        """Let the message in progress finish (up to ``timeout``), then log out."""
        done: defer.Deferred[None] = defer.Deferred.fromFuture(asyncio.ensure_future(self.reader.stop(), loop=self.reader.loop))
        timer = reactor.callLater(timeout, self.force_close)

        def finished(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        return done.addBoth(finished)

    def force_close(self) -> None:
        self.reader.abort()

    def addresses(self) -> list[str]:
        return []

    def connection_count(self) -> int:
        return 1 if self.reader.client is not None else 0


def build_listener(config: ImapListenerConfig, context: ListenerContext) -> ImapListener:
    """Build the listener service for an IMAP reader configuration."""
    sender = None
    if config.smarthost is not None:
        sender = SmarthostSender(config.smarthost, context.reactor, socket.getfqdn())
    reader = MailboxReader(
        config,
        app=context.app,
        loop=context.loop,
        reactor=context.reactor,
        state=context.state,
        sender=sender,
        close_timeout=context.daemon.timeouts.application_close,
    )
    return ImapListener(config.name, reader)
