# -*- test-case-name: tests.unit.imap.test_reader -*-
"""The IMAP reader's adapter, the mailbox reader: new messages in an IMAP mailbox become ``email`` scopes, at least once.

One loop per configured mailbox::

    connect (implicit TLS, or STARTTLS, the certificate checked) -> CAPABILITY -> log in
    -> CAPABILITY -> SELECT (UIDVALIDITY) -> repeat:
        UID SEARCH UNSEEN UNDELETED -> for each message due: UID FETCH BODY.PEEK[] (never sets
        \\Seen) -> the application (an EmailInstance) -> only after email.accept: \\Seen / MOVE
        / delete (gateway.protocols.imap.asgi.disposition)
        -> IDLE until * n EXISTS (or poll_interval without IDLE)
    on any error: close, wait (reconnect_initial, doubling up to reconnect_max), start over.

Nothing is marked before the application accepted: a message it failed on (exception, timeout,
4xx) stays unseen and is offered again ``retry_interval`` later, and one whose action could not be
applied (the connection broke) is offered again after reconnecting. So the same message can reach
the application twice; consumers that must not act twice dedupe on ``Message-ID`` (or on
``(uidvalidity, uid)``). The unseen flag is the queue, kept by the server, so nothing depends on
in-memory state: when UIDVALIDITY changes (the mailbox was rebuilt, RFC 3501 §2.3.1.1) the
remembered UIDs are simply forgotten.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from gateway.asgi.app import ASGIApp
from gateway.asgi.types import EmailScope, TLSInfo
from gateway.metrics.stats import ImapStats
from gateway.protocols.email.adapter import EmailInstance, Sender
from gateway.protocols.email.asgi import FAILED, REJECTED, Outcome
from gateway.protocols.deadlines import Deadlines
from gateway.tls import client_tls_options
from gateway.protocols.imap.asgi import disposition, message_scope
from gateway.protocols.imap.client import MailboxClient
from gateway.protocols.imap.config import ImapListenerConfig
from gateway.protocols.smtp.replies import Reply
from gateway.routing.base import matches

__all__ = ["MailboxReader", "tls_details"]

log = Logger(namespace="gateway.imap")

_BATCH = 200


class MailboxReader:
    """Reads one mailbox (see the module docstring).

    Args:
        config: the listener's configuration.
        app: the ASGI application.
        loop: the asyncio loop.
        reactor: connections and timers (tests pass a fake clock).
        state: the lifespan state copied into each scope.
        sender: the smarthost sender for ``email.send``, or None.
        close_timeout: grace period of an answered instance (``timeouts.application_close``).
        connect: ``connect(client) -> Deferred`` connecting a :class:`MailboxClient` (tests
            replace the network); by default from ``host``, ``port`` and ``tls``.
    """

    def __init__(self, config: ImapListenerConfig, *, app: ASGIApp, loop: asyncio.AbstractEventLoop, reactor: Any,
                 state: dict[str, Any] | None = None, sender: Sender | None = None, close_timeout: float = 10.0,
                 connect: Callable[[MailboxClient], defer.Deferred[Any]] | None = None) -> None:
        self.config = config
        self.app = app
        self.loop = loop
        self.reactor = reactor
        self.state = state
        self.sender = sender
        self.close_timeout = close_timeout
        self.connect = connect or self._connect
        #: The answer deadline of the message in hand (``timeouts.consumer``).
        self.deadlines = Deadlines(reactor, config.timeouts.consumer)
        self.client: MailboxClient | None = None
        #: The instance deciding about the message in hand, and the answer it will give.
        self.instance: EmailInstance | None = None
        self._answer: asyncio.Future[Outcome] | None = None
        self.task: asyncio.Task[None] | None = None
        self.stopping = False
        self.new_mail = False
        self.uidvalidity: int | None = None
        self.retry_at: dict[int, float] = {}  # UID -> when it may be offered again
        self.skip: set[int] = set()  # rejected and left in place (after_reject: leave)
        self.backoff: float = config.reconnect_initial
        self.sessions = 0  # successful logins, for status and tests
        #: The listener's counters (:mod:`gateway.metrics`; the daemon replaces this one).
        self.stats = ImapStats()
        self._wake: asyncio.Future[None] | None = None
        self._tls_options: Any = None
        self._tls_info: TLSInfo | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start reading (the listener calls this after lifespan startup)."""
        if self.task is None:
            self.task = self.loop.create_task(self.run())

    async def stop(self) -> None:
        """Finish the message in progress (and its action), log out, return."""
        self.stopping = True
        self._wake_up()
        if self.task is not None and not self.task.done():
            await asyncio.wait([self.task])

    def abort(self) -> None:
        """Stop now: cancel the application and drop the connection (nothing is marked)."""
        self.stopping = True
        if self.instance is not None:
            self.instance.give_up("cancelled: the listener is closing")
        transport: Any = self.client.transport if self.client is not None else None
        if transport is not None:
            transport.abortConnection()  # a TCP (or TLS) transport: ITCPTransport
        if self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        """Sessions until stopped, with exponential backoff between failed ones."""
        config = self.config
        while not self.stopping:
            try:
                await self.session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stopping:
                    break
                log.warn("{name}: IMAP session with {host}:{port} ended: {error}", name=config.name,
                         host=config.host, port=config.effective_port, error=_describe(exc))
            if self.stopping:
                break
            delay = self.backoff
            self.backoff = min(self.backoff * 2, config.reconnect_max)
            log.info("{name}: reconnecting in {delay:g}s", name=config.name, delay=delay)
            await self._nap(delay)

    # -- one session -----------------------------------------------------------------------------
    async def session(self) -> None:
        """Connect, log in, select, then process and wait until stopped or the connection fails."""
        config = self.config
        client = MailboxClient(on_new_mail=self._on_new_mail)
        self._tls_info = None
        connected = self.connect(client).addCallback(lambda _: client.greeting)
        await self._within(connected, config.timeouts.connect, "connecting")
        self.client = client
        try:
            await self._cmd(client.capability(), "CAPABILITY")
            if config.tls == "starttls":
                await self._cmd(client.starttls(self._options()), "STARTTLS")
            await self._cmd(client.authenticate_plain_or_login(config.username, config.password), "login")
            capabilities = await self._cmd(client.capability(), "CAPABILITY")
            selected = await self._cmd(client.select(config.mailbox), "SELECT")
            self._check_uidvalidity(selected.get("UIDVALIDITY"))
            self.sessions += 1
            self.stats.sessions += 1
            self.backoff = config.reconnect_initial
            idle = b"IDLE" in capabilities
            log.info("{name}: reading {mailbox} on {host} ({mode})", name=config.name, mailbox=config.mailbox,
                     host=config.host, mode="IDLE" if idle else f"polling every {config.poll_interval:g}s")
            while not self.stopping:
                await self._process(client)
                if self.stopping:
                    break
                await self._wait_for_mail(client, idle)
            try:
                await self._cmd(client.logout(), "LOGOUT")
            except Exception:
                pass
        finally:
            self.client = None
            transport: Any = client.transport
            if transport is not None:
                transport.loseConnection()

    def _check_uidvalidity(self, value: Any) -> None:
        if not isinstance(value, int):
            raise ValueError("the server gave no UIDVALIDITY for the mailbox")
        if self.uidvalidity is not None and value != self.uidvalidity:
            log.warn("{name}: UIDVALIDITY of {mailbox} changed ({old} -> {new}); remembered UIDs are dropped",
                     name=self.config.name, mailbox=self.config.mailbox, old=self.uidvalidity, new=value)
            self.retry_at.clear()
            self.skip.clear()
        self.uidvalidity = value

    # -- messages --------------------------------------------------------------------------------
    async def _process(self, client: MailboxClient) -> None:
        """Offer every unseen message that is due, oldest first."""
        self.new_mail = False
        uids = await self._cmd(client.uid_search(b"UNSEEN UNDELETED"), "UID SEARCH")
        waiting = set(uids)
        for uid in [u for u in self.retry_at if u not in waiting]:
            del self.retry_at[uid]
        self.skip &= waiting
        now = self.reactor.seconds()
        due = [uid for uid in uids if uid not in self.skip and self.retry_at.get(uid, 0.0) <= now]
        for start in range(0, len(due), _BATCH):
            batch = due[start:start + _BATCH]
            sizes = await self._cmd(client.uid_fetch(batch, body=False), "UID FETCH")
            for uid in batch:
                if self.stopping:
                    return
                meta = sizes.get(uid)
                if meta is not None:
                    await self._handle(client, uid, meta.size)

    async def _handle(self, client: MailboxClient, uid: int, size: int | None) -> None:
        if size is not None and size > self.config.max_message_size:
            log.warn("{name}: message UID {uid} is {size} bytes, over max_message_size", name=self.config.name,
                     uid=uid, size=size)
            outcome = Outcome(REJECTED, Reply(552, "5.3.4", "Message size exceeds fixed limit"))
        else:
            fetched = await self._cmd(client.uid_fetch([uid], body=True), "UID FETCH BODY.PEEK[]")
            message = fetched.get(uid)
            if message is None or message.body is None:
                return  # expunged meanwhile
            outcome = await self._deliver(uid, message.body)
        await self._settle(client, uid, outcome)

    async def _deliver(self, uid: int, raw: bytes) -> Outcome:
        """Hand one message to the application; its :class:`Outcome`."""
        scope = self._scope(uid, raw)
        try:
            routed = await matches(self.app, cast(dict[str, Any], scope))
        except Exception as exc:
            log.warn("{name}: route check for UID {uid} failed: {error!r}", name=self.config.name, uid=uid, error=exc)
            return Outcome(FAILED, reason=f"route check failed: {exc!r}")
        if not routed:
            return Outcome(REJECTED, Reply(550, "5.1.1", f"no route for {scope['recipients']}"))
        answer = self._answer = self.loop.create_future()
        instance = self.instance = EmailInstance(
            self.app, scope, raw, receiver=self, loop=self.loop, clock=self.reactor, counters=self.stats.instances,
            deadlines=self.deadlines, close_timeout=self.close_timeout, sender=self.sender,
        )
        instance.start()
        try:
            return await answer
        except asyncio.CancelledError:
            instance.give_up("cancelled: the reader stopped")
            raise
        finally:
            self.instance = None
            self._answer = None

    def answered(self, outcome: Outcome) -> None:
        """The application answered the message in hand (or failed to)."""
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_result(outcome)

    async def _settle(self, client: MailboxClient, uid: int, outcome: Outcome) -> None:
        """Apply the configured action; a failure or a 4xx leaves the message for later."""
        config = self.config
        todo = disposition(outcome, config)
        if todo.retry:
            self.stats.retried += 1
            reply = outcome.reply
            reason = outcome.reason or (f"{reply.code} {reply.text}" if reply is not None else outcome.kind)
            log.info("{name}: UID {uid} not taken ({reason}); offered again in {delay:g}s", name=config.name,
                     uid=uid, reason=reason, delay=config.retry_interval)
            self.retry_at[uid] = self.reactor.seconds() + config.retry_interval
            return
        if outcome.permanent:
            self.stats.rejected += 1
        else:
            self.stats.taken += 1
        self.retry_at.pop(uid, None)
        action = todo.action
        log.info("{name}: UID {uid} {kind}; {action}", name=config.name, uid=uid, kind=outcome.kind, action=action)
        if action == "leave":
            self.skip.add(uid)
            return
        uids = [uid]
        capabilities = client.capabilities
        if action == "seen":
            await self._cmd(client.uid_store(uids, b"\\Seen"), "UID STORE")
        elif action == "delete":
            await self._cmd(client.uid_store(uids, b"\\Seen \\Deleted"), "UID STORE")
            if b"UIDPLUS" in capabilities:
                await self._cmd(client.uid_expunge(uids), "UID EXPUNGE")
        else:  # move
            target = todo.target or ""
            await self._cmd(client.uid_store(uids, b"\\Seen"), "UID STORE")
            if b"MOVE" in capabilities:
                await self._cmd(client.uid_move(uids, target), "UID MOVE")
            else:
                await self._cmd(client.uid_copy(uids, target), "UID COPY")
                await self._cmd(client.uid_store(uids, b"\\Deleted"), "UID STORE")
                if b"UIDPLUS" in capabilities:
                    await self._cmd(client.uid_expunge(uids), "UID EXPUNGE")

    def _scope(self, uid: int, raw: bytes) -> EmailScope:
        if self._tls_info is None and self.config.tls != "none" and self.client is not None:
            self._tls_info = tls_details(self.client.transport)
        return message_scope(self.config, uid, raw, uidvalidity=self.uidvalidity, tls=self._tls_info,
                             state=self.state, can_send=self.sender is not None)

    # -- waiting ---------------------------------------------------------------------------------
    async def _wait_for_mail(self, client: MailboxClient, idle: bool) -> None:
        """IDLE (or sleep) until new mail, a retry is due, a refresh is needed, or stop."""
        if self.new_mail or self.stopping:
            return
        config = self.config
        seconds = config.idle_refresh if idle else config.poll_interval
        if self.retry_at:
            seconds = max(0.0, min(seconds, min(self.retry_at.values()) - self.reactor.seconds()))
        if not idle:
            await self._nap(seconds)
            return
        ended = client.idle().asFuture(self.loop)
        wake = self._wake = self.loop.create_future()
        timer = self.reactor.callLater(seconds, self._wake_up)
        try:
            await asyncio.wait([wake, ended], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._wake = None
            if timer.active():
                timer.cancel()
            client.idle_done()
        await self._within(ended, config.timeouts.command, "IDLE/DONE")

    def _on_new_mail(self) -> None:
        self.new_mail = True
        self._wake_up()

    def _wake_up(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _nap(self, seconds: float) -> None:
        """Sleep on the reactor's clock; new mail and :meth:`stop` cut it short."""
        if self.stopping:
            return
        wake = self._wake = self.loop.create_future()
        timer = self.reactor.callLater(seconds, self._wake_up)
        try:
            await wake
        finally:
            self._wake = None
            if timer.active():
                timer.cancel()

    # -- helpers ---------------------------------------------------------------------------------
    async def _cmd(self, deferred: defer.Deferred[Any], what: str) -> Any:
        return await self._within(deferred, self.config.timeouts.command, what)

    async def _within(self, deferred: Any, seconds: float, what: str) -> Any:
        """Await a Deferred (or future) for at most ``seconds`` of reactor time."""
        future = deferred.asFuture(self.loop) if isinstance(deferred, defer.Deferred) else deferred
        timer = self.reactor.callLater(seconds, future.cancel)
        try:
            return await future
        except asyncio.CancelledError:
            if timer.called:
                raise TimeoutError(f"{what}: no answer within {seconds:g}s") from None
            raise
        finally:
            if timer.active():
                timer.cancel()

    def _options(self) -> Any:
        if self._tls_options is None:
            self._tls_options = client_tls_options(self.config.server_name or self.config.host, self.config.ca_file)
        return self._tls_options

    def _connect(self, client: MailboxClient) -> defer.Deferred[Any]:
        config = self.config
        endpoint: Any = HostnameEndpoint(self.reactor, config.host, config.effective_port,
                                         timeout=config.timeouts.connect)
        if config.tls == "implicit":
            endpoint = wrapClientTLS(self._options(), endpoint)
        connected: defer.Deferred[Any] = endpoint.connect(_OneClient(client))
        return connected


class _OneClient(Factory):
    """Connects one given protocol (``connectProtocol`` without its log line per connection)."""

    noisy = False

    def __init__(self, client: MailboxClient) -> None:
        self.client = client

    def buildProtocol(self, addr: Any) -> MailboxClient:
        return self.client


def _describe(exc: BaseException) -> str:
    value = getattr(exc, "value", None)  # a Twisted Failure's reason
    if value is not None:
        exc = value
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


def tls_details(transport: Any) -> TLSInfo | None:
    """The ``tls`` scope key for our client connection: the server's certificate and the session."""
    try:
        connection = transport.getHandle()
        from OpenSSL import crypto

        peer = connection.get_peer_certificate()
        return {
            "server_cert": crypto.dump_certificate(crypto.FILETYPE_PEM, peer).decode("ascii") if peer else None,
            "client_cert_chain": [],
            "client_cert_name": None,
            "client_cert_error": None,
            "tls_version": connection.get_protocol_version(),
            "cipher_suite": None,
            "cipher_name": connection.get_cipher_name(),
        }
    except Exception:  # not a TLS transport, or the handshake is not finished
        return None
