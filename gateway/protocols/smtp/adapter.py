# -*- test-case-name: tests.unit.smtp.test_adapter -*-
"""The Twisted side of an SMTP connection: transport, STARTTLS, timer, flow control, decisions.

The only code that touches the socket. The dialogue is the sans-IO core's
(:class:`gateway.protocols.smtp.core.SMTPServer`); this module answers its decisions:

* ``RcptTo``: is the recipient routed? (:class:`~gateway.protocols.smtp.checks.RecipientCheck`;
  no route: ``550 5.1.1``; the check failed: ``451 4.3.0``). Never relays: a recipient is either
  handed to the application or refused.
* ``AuthCredentials``: :class:`~gateway.protocols.smtp.checks.Authenticator`.
* ``MessageReceived``: one ``email`` scope and application instance
  (:class:`gateway.protocols.email.adapter.EmailInstance`); the reply is the answer's
  :meth:`~gateway.protocols.email.asgi.Outcome.smtp_reply`: ``250`` only once the application
  accepted, ``451 4.3.0`` when it raised, timed out or ended without answering.

Reading pauses while a decision is pending and the client keeps sending (the core keeps replies
in command order and bounds what it buffers anyway), and while the client does not read our
replies (the transport's write buffer is above its high-water mark), so what one connection holds
is bounded whatever the client does.
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
from gateway.asgi.types import EmailConnection
from gateway.logs import RejectionLog
from gateway.metrics.stats import SmtpStats
from gateway.protocols.deadlines import Deadlines, Timer
from gateway.protocols.email.adapter import EmailInstance, Sender
from gateway.protocols.email.asgi import ACCEPTED, DEFAULT_ACCEPT, Outcome, email_scope, recipient_probe, smtp_connection
from gateway.protocols.smtp.checks import Authenticator, RecipientCheck
from gateway.protocols.smtp.core import ServerConfig, SMTPServer
from gateway.protocols.smtp.events import (
    AuthCredentials,
    CloseConnection,
    Envelope,
    MailFrom,
    MessageReceived,
    RcptTo,
    StartTLS,
)
from gateway.protocols.smtp.replies import Reply, soften
from gateway.protocols.transport import address_tuple, is_tls, server_tuple, tls_extension

__all__ = ["SMTPSettings", "SMTPProtocol"]

log = Logger(namespace="gateway.smtp")

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
    sender: Sender | None = None
    state: dict[str, Any] | None = None
    max_connections_per_client: int = 50
    #: The listener's counters (:mod:`gateway.metrics`).
    stats: SmtpStats = field(default_factory=SmtpStats)
    #: Rate-limits the lines about refused clients, recipients and logins (one per listener).
    rejections: RejectionLog | None = None
    #: The answer deadlines of the listener's messages (``consumer_timeout``).
    answer_deadlines: Deadlines = field(init=False)

    def __post_init__(self) -> None:
        if self.rejections is None:
            self.rejections = RejectionLog("smtp", self.reactor, log)
        self.answer_deadlines = Deadlines(self.reactor, self.consumer_timeout)

    def allow_log(self, reason: str) -> bool:
        """Whether a line about a refusal for ``reason`` may be logged now (rate-limited)."""
        rejections = self.rejections
        return rejections is None or rejections.allow(reason, LogLevel.info)


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
    """One SMTP connection; the email instance's :class:`~gateway.protocols.email.adapter.EmailReceiver`."""

    transport: Any
    factory: Any

    def __init__(self, settings: SMTPSettings) -> None:
        self.settings = settings
        self.session: SMTPServer | None = None
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int | None] | None = None
        #: The instance deciding about the message received, until it answered.
        self.instance: EmailInstance | None = None
        #: Writes are paused: the client does not read our replies.
        self.writes_paused = False
        self._message: MessageReceived | None = None
        self._started = 0.0
        self._tls = False
        self._starttls = False
        self._tls_info: dict[str, Any] | None = None
        self._closing = False
        self._lost = False
        self._lost_write = False
        self._reading_paused = False
        self._wait_decision = False  # input arrived while a decision was pending
        self._flushing = False
        self._deadline: float | None = None
        self._timer: Timer | None = None

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
                if self.settings.allow_log("too many connections from one client"):
                    log.info("Refusing a connection from {host}: too many connections", host=host)
                refusal = Reply(421, "4.7.0", f"{self.settings.server.hostname} Error: too many connections from {host}")
                self._closing = True
                transport.write(refusal.to_bytes())
                transport.loseConnection()
                return
        self.session = SMTPServer(self.settings.server, tls_active=self._tls)
        self._flush()
        # Told when the write buffer fills (from now on: over implicit TLS, the greeting waits in
        # the TLS layer until the handshake is done, and it pauses its producer meanwhile, which
        # would stop the reading the handshake needs).
        if not self._closing:
            transport.registerProducer(self, True)

    def connectionLost(self, reason: Any = None) -> None:
        self._lost = True
        self._closing = True
        self._cancel_timer()
        session = self.session
        if session is not None and not session.closed:
            session.receive_data(b"")  # EOF: a decision answered later is then ignored
            session.events_received()
        instance, self.instance = self.instance, None
        if instance is not None:
            instance.client_gone()  # the message was not answered: the client will send it again
        factory = self.factory
        if factory is not None:
            factory.connection_closed(self)

    def dataReceived(self, data: bytes) -> None:
        session = self.session
        if self._closing or session is None:
            return
        if session.pending is not None and not self._wait_decision:
            # The client sends more while we decide: stop reading until the answer (the core
            # would buffer it, bounded). A client that waits for its replies never gets here,
            # so the common path costs no pause/resume system calls.
            self._wait_decision = True
            self._update_reading()
        session.receive_data(data)
        self._flush()

    # -- the flush point -------------------------------------------------------------------------
    def _flush(self) -> None:
        """Handle the core's events, write its output, pause or re-arm the timer."""
        if self._flushing:
            return  # a decision answered synchronously inside the loop below
        session = self.session
        if session is None:
            return
        self._flushing = True
        try:
            while True:
                events = session.events_received()
                if not events:
                    break
                for event in events:
                    if isinstance(event, RcptTo):
                        self._check_recipient(session, event)
                    elif isinstance(event, MessageReceived):
                        self._deliver(event)
                    elif isinstance(event, AuthCredentials):
                        self._authenticate(session, event)
                    elif isinstance(event, StartTLS):
                        self._start_tls(session)
                    elif isinstance(event, CloseConnection):
                        self._closing = True
                    elif isinstance(event, MailFrom):  # only with check_sender (off): accept
                        session.accept(event)
        finally:
            self._flushing = False
        data = session.data_to_send()
        if data and not self._lost:
            self._write(data)
        if self._closing:
            if not self._lost and not self._lost_write:
                self.transport.loseConnection()
                if self.writes_paused:  # the client does not read: do not wait for it forever
                    self._abort_later()
            return
        if session.pending is not None:
            return
        if self._wait_decision:
            self._wait_decision = False
            self._update_reading()
        self._arm(session.next_deadline(self.settings.reactor.seconds()))

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

    # -- flow control ----------------------------------------------------------------------------
    def pauseProducing(self) -> None:
        """The transport's write buffer is full: the client does not read our replies."""
        self.writes_paused = True
        self.settings.stats.write_pauses += 1
        self._update_reading()

    def resumeProducing(self) -> None:
        """The client read what we wrote: read its commands again."""
        self.writes_paused = False
        self._update_reading()

    def stopProducing(self) -> None:
        """The connection is going away (``connectionLost`` follows)."""

    def _update_reading(self) -> None:
        """Read from the client unless a decision it sent more behind is pending, or it does not
        read our replies."""
        if self._lost or self._closing:
            return
        if self._wait_decision or self.writes_paused:
            if not self._reading_paused:
                self._reading_paused = True
                self.settings.stats.read_pauses += 1
                self.transport.pauseProducing()
        elif self._reading_paused:
            self._reading_paused = False
            self.transport.resumeProducing()

    # -- timer -----------------------------------------------------------------------------------
    def _arm(self, deadline: float | None) -> None:
        self._deadline = deadline
        if deadline is None:
            return
        if self._timer is None:
            reactor = self.settings.reactor
            self._timer = reactor.callLater(max(0.0, deadline - reactor.seconds()), self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        session = self.session
        if self._lost or session is None or self._deadline is None:
            return
        now = self.settings.reactor.seconds()
        if session.handle_timeout(now):
            if self.settings.allow_log("client timeout"):
                log.info("SMTP client {client} timed out", client=self.client)
            self._flush()
            return
        self._arm(session.next_deadline(now))

    def _abort_later(self) -> None:
        """Closing, but our last replies wait for a client that does not read: abort after the
        command timeout."""
        self._cancel_timer()
        self._deadline = None
        self._timer = self.settings.reactor.callLater(self.settings.server.timeout, self._abort_now)

    def _abort_now(self) -> None:
        self._timer = None
        if not self._lost:
            self.transport.abortConnection()

    def _cancel_timer(self) -> None:
        timer = self._timer
        if timer is not None:
            self._timer = None
            if timer.active():
                timer.cancel()

    # -- STARTTLS (RFC 3207) ---------------------------------------------------------------------
    def _start_tls(self, session: SMTPServer) -> None:
        self._write(session.data_to_send())  # the 220 goes in clear
        self.transport.startTLS(self.settings.tls_options)
        self._starttls = self._tls = True
        session.tls_started()

    # -- decisions -------------------------------------------------------------------------------
    def _tls_details(self) -> dict[str, Any] | None:
        if not self._tls:
            return None
        if self._tls_info is None:
            self._tls_info = tls_extension(self.transport)
        return self._tls_info

    def _connection(self, session: SMTPServer) -> EmailConnection:
        return smtp_connection(helo=session.helo_name, client=self.client, server=self.server,
                               tls=self._tls_details(), auth_user=session.auth_user)

    def _check_recipient(self, session: SMTPServer, event: RcptTo) -> None:
        probe = recipient_probe(self._connection(session), event.sender, event.recipient)

        def checked(routed: bool | None) -> None:
            if routed:
                session.accept(event)
            elif routed is None:
                session.defer(event)
            else:
                settings = self.settings
                settings.stats.recipients_rejected += 1
                if settings.allow_log("recipient without a route"):
                    log.info("Refused recipient {rcpt} from {client}: no route", rcpt=event.recipient, client=self.client)
                reply = Reply(550, "5.1.1", f"<{event.recipient}>: Recipient address rejected")
                session.answer(event, soften(reply) if settings.soft_reject else reply)
            self._answered()

        self.settings.recipients.check(probe, checked)

    def _authenticate(self, session: SMTPServer, event: AuthCredentials) -> None:
        auth = self.settings.auth
        if auth is None:  # AUTH is not offered without users or a hook; never reached
            session.reject(event)
            return

        def checked(ok: bool | None) -> None:
            if ok:
                session.accept(event)
            elif ok is None:
                session.defer(event)
            else:
                if self.settings.allow_log("failed AUTH"):
                    log.info("AUTH {mechanism} failed for {user!r} from {client}", mechanism=event.mechanism,
                             user=event.username, client=self.client)
                session.reject(event)
            self._answered()

        auth.check(event.username, event.password, self._connection(session), checked)

    def _deliver(self, event: MessageReceived) -> None:
        settings = self.settings
        envelope = event.envelope
        raw = event.data
        if settings.received_header:
            raw = self._received(envelope) + raw
        scope = email_scope(
            source="smtp", sender=envelope.sender, recipients=envelope.recipients, size=len(raw),
            server=self.server, tls=self._tls_details(), state=settings.state, can_send=settings.sender is not None,
            helo=envelope.helo, client=self.client, auth_user=envelope.auth_user, esmtp=envelope.esmtp,
            smtputf8=envelope.smtputf8, body=envelope.body,
        )
        self._message = event
        self._started = time.perf_counter()
        instance = self.instance = EmailInstance(
            settings.app, scope, raw, receiver=self, loop=settings.loop, clock=settings.reactor,
            counters=settings.stats.instances, deadlines=settings.answer_deadlines,
            close_timeout=settings.close_timeout, sender=settings.sender,
        )
        instance.start()

    def answered(self, outcome: Outcome) -> None:
        """The application answered the message (or failed to): reply to the client."""
        event, self._message = self._message, None
        self.instance = None
        settings = self.settings
        stats = settings.stats
        accepted = outcome.kind == ACCEPTED
        if accepted:
            stats.accepted += 1
        elif outcome.permanent:
            stats.rejected += 1
        else:
            stats.tempfailed += 1
        stats.message_latency.observe(time.perf_counter() - self._started)
        session = self.session
        if self._lost or session is None or session.closed or event is None:
            if accepted:
                log.warn("A message from {client} was accepted after the client left; it will be sent again",
                         client=self.client)
            return
        if accepted:
            reply = outcome.reply
            session.accept(event, None if reply is DEFAULT_ACCEPT else reply)
        else:
            if outcome.reply is None:
                log.info("Deferring a message from {client}: {reason}", client=self.client, reason=outcome.reason)
            session.answer(event, outcome.smtp_reply(settings.soft_reject))
        self._answered()

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
        session = self.session
        if session is not None and not session.closed:
            session.receive_data(b"")  # the session is over: a late answer is ignored
            session.events_received()
        if not self._lost:
            self.transport.abortConnection()
        instance, self.instance = self.instance, None
        if instance is not None:
            instance.give_up("cancelled: the listener is closing")
