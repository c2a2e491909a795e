# -*- test-case-name: tests.unit.smtp.test_adapter -*-
"""The Twisted side of an SMTP connection: transport, STARTTLS, timer, and the decisions.

The only code that touches the socket. The dialogue is the sans-IO core's
(:class:`gateway.protocols.smtp.core.SMTPServer`); this module answers its decisions:

* ``RcptTo``: is the recipient routed? (:class:`~gateway.protocols.smtp.checks.RecipientCheck`;
  no route: ``550 5.1.1``; the check failed: ``451 4.3.0``). Never relays: a recipient is either
  handed to the application or refused.
* ``AuthCredentials``: :class:`~gateway.protocols.smtp.checks.Authenticator`.
* ``MessageReceived``: one ``email`` scope and application instance
  (:class:`gateway.email.cycle.EmailCycle`); ``250`` only once the application accepted,
  ``451 4.3.0`` when it raised, timed out or ended without answering.

While a decision is pending and the client keeps sending, reading pauses; the core keeps replies
in command order and bounds what it buffers anyway.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from twisted.internet.protocol import Protocol
from twisted.logger import Logger, LogLevel

from gateway._compat.tcp import write_through
from gateway.asgi.app import ASGIApp
from gateway.email.cycle import ACCEPTED, DEFAULT_ACCEPT, REJECTED, EmailCycle, Outcome
from gateway.logs import RejectionLog
from gateway.metrics.stats import SmtpStats
from gateway.protocols.smtp.checks import Authenticator, RecipientCheck
from gateway.protocols.smtp.config import ServerConfig
from gateway.protocols.smtp.core import SMTPServer
from gateway.protocols.smtp.events import (
    AuthCredentials,
    CloseConnection,
    Envelope,
    MailFrom,
    MessageReceived,
    RcptTo,
    StartTLS,
)
from gateway.protocols.smtp.replies import Reply
from gateway.protocols.transport import address_tuple, is_tls, server_tuple, tls_extension

__all__ = ["SMTPSettings", "SMTPProtocol", "soften"]

log = Logger(namespace="gateway.smtp")

ASGI_VERSION = {"version": "3.0", "spec_version": "1.0"}
_ids = itertools.count(1)
_ID_PREFIX = f"{int(time.time()) % 10**6:06d}"


@dataclass(eq=False)
class SMTPSettings:
    """What one SMTP listener's connections share."""

    app: ASGIApp
    loop: asyncio.AbstractEventLoop
    reactor: Any
    server: ServerConfig
    recipients: RecipientCheck
    auth: Authenticator | None = None
    tls_options: Any = None
    consumer_timeout: float = 60.0
    close_timeout: float = 10.0
    received_header: bool = True
    soft_reject: bool = False
    sender: Any = None
    state: dict[str, Any] | None = None
    max_connections_per_client: int = 50
    #: Timers of the application cycles (``loop.call_later``; tests pass a fake clock's).
    call_later: Any = None
    #: The listener's counters (:mod:`gateway.metrics`).
    stats: SmtpStats = field(default_factory=SmtpStats)
    #: Rate-limits the lines about refused clients, recipients and logins (one per listener).
    rejections: RejectionLog = None  # type: ignore[assignment]  # made in __post_init__

    def __post_init__(self) -> None:
        if self.call_later is None:
            self.call_later = self.loop.call_later
        if self.rejections is None:
            self.rejections = RejectionLog("smtp", self.reactor, log)


def soften(reply: Reply) -> Reply:
    """The 4xx twin of a 5xx reply (Postfix ``soft_bounce``): 550 5.1.1 -> 450 4.1.1."""
    if reply.code < 500:
        return reply
    status = "4" + reply.status[1:] if reply.status else None
    return Reply(reply.code - 100, status, reply.text)


class _ReceivedDate:
    """The date of Received: headers, formatted once per second."""

    second = -1
    text = ""

    def get(self) -> str:
        now = int(time.time())
        if now != self.second:
            self.second, self.text = now, formatdate(now, localtime=True)
        return self.text


_date = _ReceivedDate()


class SMTPProtocol(Protocol):
    """One SMTP connection."""

    def __init__(self, settings: SMTPSettings) -> None:
        self.settings = settings
        self.session: SMTPServer | None = None
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int | None] | None = None
        self.cycle: EmailCycle | None = None
        self._tls = False
        self._starttls = False
        self._tls_info: dict[str, Any] | None = None
        self._closing = False
        self._lost = False
        self._lost_write = False
        self._paused = False
        self._flushing = False
        self._deadline: float | None = None
        self._timer: Any = None

    # -- connection lifecycle --------------------------------------------------------------------
    def connectionMade(self) -> None:
        transport = self.transport
        self.client = address_tuple(transport.getPeer())
        self.server = server_tuple(transport.getHost())
        self._tls = is_tls(transport)
        set_no_delay = getattr(transport, "setTcpNoDelay", None)
        if set_no_delay is not None:  # replies are small and the client waits for each one
            set_no_delay(True)
        factory = self.factory
        if factory is not None:
            factory.connection_opened(self)
            if factory.client_count(self.client) > self.settings.max_connections_per_client:
                host = self.client[0] if self.client else "?"
                if self.settings.rejections.allow("too many connections from one client", LogLevel.info):
                    log.info("Refusing a connection from {host}: too many connections", host=host)
                refusal = Reply(421, "4.7.0", f"{self.settings.server.hostname} Error: too many connections from {host}")
                self._closing = True
                transport.write(refusal.to_bytes())
                transport.loseConnection()
                return
        self.session = SMTPServer(self.settings.server, tls_active=self._tls)
        self._flush()

    def connectionLost(self, reason: Any = None) -> None:
        self._lost = True
        self._closing = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.session is not None and not self.session.closed:
            self.session.receive_data(b"")  # EOF: a decision answered later is then ignored
            self.session.events_received()
        factory = self.factory
        if factory is not None:
            factory.connection_closed(self)

    def dataReceived(self, data: bytes) -> None:
        if self._closing or self.session is None:
            return
        session = self.session
        if session.pending is not None and not self._paused:
            # The client sends more while we decide: stop reading until the answer (the core
            # would buffer it, bounded). A client that waits for its replies never gets here,
            # so the common path costs no pause/resume system calls.
            self._paused = True
            self.settings.stats.read_pauses += 1
            self.transport.pauseProducing()
        session.receive_data(data)
        self._flush()

    # -- the flush point -------------------------------------------------------------------------
    def _flush(self) -> None:
        """Handle the core's events, write its output, pause or re-arm the timer."""
        if self._flushing:
            return  # a decision answered synchronously inside the loop below
        self._flushing = True
        session = self.session
        try:
            while True:
                events = session.events_received()  # type: ignore[union-attr]
                if not events:
                    break
                for event in events:
                    kind = event.__class__
                    if kind is RcptTo:
                        self._check_recipient(event)  # type: ignore[arg-type]
                    elif kind is MessageReceived:
                        self._deliver(event)  # type: ignore[arg-type]
                    elif kind is AuthCredentials:
                        self._authenticate(event)  # type: ignore[arg-type]
                    elif kind is StartTLS:
                        self._start_tls()
                    elif kind is CloseConnection:
                        self._closing = True
                    elif kind is MailFrom:  # only with check_sender (off): accept
                        session.accept(event)  # type: ignore[union-attr, arg-type]
        finally:
            self._flushing = False
        data = session.data_to_send()  # type: ignore[union-attr]
        if data and not self._lost:
            self._write(data)
        if self._closing:
            if not self._lost and not self._lost_write:
                self.transport.loseConnection()
            return
        if session.pending is not None:  # type: ignore[union-attr]
            return
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()
        self._arm(session.next_deadline(self.settings.reactor.seconds()))  # type: ignore[union-attr]

    def _write(self, data: bytes) -> None:
        try:
            if self._starttls:
                self.transport.write(data)  # write_through would bypass the TLS layer of startTLS
            else:
                write_through(self.transport, data)
        except RuntimeError as exc:
            # uvloop closes a socket's poll handle when the peer resets it, before Twisted's
            # read callback reports the loss; a write in between is refused. The connection is
            # gone (the reply with it: the client will retry); connectionLost follows.
            log.debug("Write to {client} refused: {error}", client=self.client, error=exc)
            self._lost_write = True
            self._closing = True

    def _answered(self) -> None:
        """A decision was answered from outside the flush loop: continue."""
        if not self._flushing and not self._lost:
            self._flush()

    # -- timer -----------------------------------------------------------------------------------
    def _arm(self, deadline: float | None) -> None:
        self._deadline = deadline
        if deadline is None:
            return
        timer = self._timer
        if timer is None:
            delay = max(0.0, deadline - self.settings.reactor.seconds())
            self._timer = self.settings.reactor.callLater(delay, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        if self._lost or self.session is None or self._deadline is None:
            return
        now = self.settings.reactor.seconds()
        if self.session.handle_timeout(now):
            if self.settings.rejections.allow("client timeout", LogLevel.info):
                log.info("SMTP client {client} timed out", client=self.client)
            self._flush()
            return
        self._arm(self.session.next_deadline(now))

    # -- STARTTLS (RFC 3207) ---------------------------------------------------------------------
    def _start_tls(self) -> None:
        session = self.session
        self._write(session.data_to_send())  # type: ignore[union-attr]  # the 220 goes in clear
        self.transport.startTLS(self.settings.tls_options)
        self._starttls = self._tls = True
        session.tls_started()  # type: ignore[union-attr]

    # -- decisions -------------------------------------------------------------------------------
    def _connection_scope(self) -> dict[str, Any]:
        session = self.session
        tls = self._tls_details() if self._tls else None
        return {
            "type": "email",
            "asgi": ASGI_VERSION,
            "source": "smtp",
            "helo": session.helo_name if session is not None else None,
            "client": self.client,
            "server": self.server,
            "tls": tls,
            "auth_user": session.auth_user if session is not None else None,
        }

    def _tls_details(self) -> dict[str, Any] | None:
        if self._tls_info is None:
            self._tls_info = tls_extension(self.transport)
        return self._tls_info

    def _check_recipient(self, event: RcptTo) -> None:
        probe = self._connection_scope()
        probe["sender"] = event.sender
        probe["recipients"] = [event.recipient]

        def checked(routed: bool | None) -> None:
            session = self.session
            if routed:
                session.accept(event)  # type: ignore[union-attr]
            elif routed is None:
                session.defer(event)  # type: ignore[union-attr]
            else:
                self.settings.stats.recipients_rejected += 1
                if self.settings.rejections.allow("recipient without a route", LogLevel.info):
                    log.info("Refused recipient {rcpt} from {client}: no route", rcpt=event.recipient, client=self.client)
                reply = Reply(550, "5.1.1", f"<{event.recipient}>: Recipient address rejected")
                session.answer(event, soften(reply) if self.settings.soft_reject else reply)  # type: ignore[union-attr]
            self._answered()

        self.settings.recipients.check(probe, checked)

    def _authenticate(self, event: AuthCredentials) -> None:
        auth = self.settings.auth
        if auth is None:  # AUTH is not offered without users or a hook; never reached
            self.session.reject(event)  # type: ignore[union-attr]
            return

        def checked(ok: bool | None) -> None:
            if ok:
                self.session.accept(event)  # type: ignore[union-attr]
            elif ok is None:
                self.session.defer(event)  # type: ignore[union-attr]
            else:
                if self.settings.rejections.allow("failed AUTH", LogLevel.info):
                    log.info("AUTH {mechanism} failed for {user!r} from {client}", mechanism=event.mechanism,
                             user=event.username, client=self.client)
                self.session.reject(event)  # type: ignore[union-attr]
            self._answered()

        auth.check(event.username, event.password, self._connection_scope(), checked)

    def _deliver(self, event: MessageReceived) -> None:
        settings = self.settings
        envelope = event.envelope
        raw = event.data
        if settings.received_header:
            raw = self._received(envelope) + raw
        scope = self._connection_scope()
        scope["sender"] = envelope.sender
        scope["recipients"] = list(envelope.recipients)
        scope["helo"] = envelope.helo
        scope["esmtp"] = envelope.esmtp
        scope["smtputf8"] = envelope.smtputf8
        scope["body"] = envelope.body
        scope["size"] = len(raw)
        scope["state"] = dict(settings.state) if settings.state else {}
        scope["extensions"] = {"email.send": {}} if settings.sender is not None else {}
        stats = settings.stats
        started = time.perf_counter()

        def on_answer(outcome: Outcome) -> None:
            self.cycle = None
            if outcome.kind == ACCEPTED:
                stats.accepted += 1
            elif outcome.permanent:
                stats.rejected += 1
            else:
                stats.tempfailed += 1
            stats.message_latency.observe(time.perf_counter() - started)
            session = self.session
            if self._lost or session is None or session.closed:
                if outcome.kind == ACCEPTED:
                    log.warn("A message from {client} was accepted after the client left; it will be sent again",
                             client=self.client)
                return
            if outcome.kind == ACCEPTED:
                session.accept(event, None if outcome.reply is DEFAULT_ACCEPT else outcome.reply)
            elif outcome.kind == REJECTED:
                reply = outcome.reply
                session.answer(event, soften(reply) if settings.soft_reject else reply)  # type: ignore[arg-type]
            else:
                log.info("Deferring a message from {client}: {reason}", client=self.client, reason=outcome.reason)
                session.defer(event)
            self._answered()

        cycle = EmailCycle(
            settings.app, scope, raw, loop=settings.loop, call_later=settings.call_later,
            answer_timeout=settings.consumer_timeout, close_timeout=settings.close_timeout,
            sender=settings.sender, on_answer=on_answer, stats=stats,
        )
        self.cycle = cycle
        cycle.start()

    def _received(self, envelope: Envelope) -> bytes:
        """The Received: trace header (RFC 5321 §4.4; ``with`` keywords from RFC 3848/6531)."""
        protocol = ("UTF8SMTP" if envelope.smtputf8 else "ESMTP") if envelope.esmtp else "SMTP"
        if envelope.tls:
            protocol += "S"
        if envelope.auth_user is not None:
            protocol += "A"
        ip = self.client[0] if self.client else "unix"
        helo = envelope.helo.encode("ascii", "backslashreplace").decode("ascii").replace("(", "").replace(")", "")
        rcpt = f"\r\n\tfor <{envelope.recipients[0]}>" if len(envelope.recipients) == 1 else ""
        text = (f"Received: from {helo} ([{ip}])\r\n\tby {self.settings.server.hostname} with {protocol} "
                f"id {_ID_PREFIX}{next(_ids):x}{rcpt};\r\n\t{_date.get()}\r\n")
        return text.encode("utf-8")

    # -- graceful shutdown (called by the listener) ----------------------------------------------
    def shutdown(self) -> None:
        """Finish the message in progress, then ``421 4.3.2`` and close (RFC 5321 §3.8)."""
        if self.session is None or self._lost:
            return
        self.session.shutdown()
        self._flush()

    def abort(self) -> None:
        """Close now; an unanswered message is retried by its sender."""
        if self.session is not None and not self.session.closed:
            self.session.receive_data(b"")  # the session is over: a late answer is ignored
            self.session.events_received()
        if not self._lost:
            self.transport.abortConnection()
        if self.cycle is not None:
            self.cycle.cancel()

