# -*- test-case-name: tests.unit.sms.test_bridge_delivery -*-
"""The SMS adapter: the webhook bridge, and the application instance of each event.

The bridge (:class:`WebhookBridge`) is the ASGI application an SMS listener's HTTP side serves.
For each HTTP request it finds the account by path (404 otherwise), reads the body (413 past
``max_webhook_size``), rebuilds the public URL the provider signed, verifies and parses the webhook
with the provider module (403 / 400 / 405, never reaching an application), drops what was already
handled (dedup), checks that a route exists, hands the event to the user's application as an ``sms``
scope (one :class:`SmsInstance`) and answers the provider: its success answer (with inline
replies) once the application handled the event, else the provider's retry status.

What the application may send, and when the event counts as handled, is
:class:`~gateway.protocols.sms.asgi.SmsOrder`'s to say. Timers, on the reactor's clock: a deadline
per event at the consumer timeout (capped below the provider's deadline; kept in the bridge's
:class:`~gateway.protocols.deadlines.Deadlines`, so an event costs no timer of its own): an event
not handled by then is answered with the retry status, and an instance still not done with it
``application_close`` later is cancelled. Once the event has an outcome and nothing is in flight,
``receive()`` returns ``sms.disconnect``; from the moment the application reads it, it has
``application_close`` to return (a deadline in the bridge's closing :class:`Deadlines`; if it is
due, the core's :meth:`~gateway.asgi.instance.ApplicationInstance.close_after` cancels the
instance at once, and logs and counts it).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from twisted.logger import Logger

from gateway.asgi.app import ASGIApp, Message, Receive, Scope, Send
from gateway.asgi.instance import RETURNED, ApplicationInstance, ClientDisconnected, Clock, Ending
from gateway.logs import RejectionLog
from gateway.metrics.stats import SmsStats
from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.http.proxy import TrustedProxies
from gateway.protocols.sms import asgi
from gateway.protocols.sms.asgi import ACK, Held, SmsOrder
from gateway.protocols.sms.core import (
    Event,
    InboundMessage,
    OtherEvent,
    OutboundMessage,
    SendError,
    SendResult,
    StatusUpdate,
    WebhookRequest,
    WebhookResponse,
)
from gateway.protocols.sms.dedup import ConcatBuffer, DedupStore
from gateway.protocols.sms.providers.base import Provider
from gateway.protocols.deadlines import Deadline, Deadlines, Timer
from gateway.routing.base import matches

__all__ = ["Account", "SmsInstance", "WebhookBridge", "effective_timeout", "public_url"]

log = Logger(namespace="gateway.sms")

_TEXT = (("content-type", "text/plain; charset=utf-8"),)
_HOST = re.compile(r"(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
#: Seconds kept in hand below a provider's documented answer deadline.
DEADLINE_MARGIN = 0.5


def _text(status: int, message: str, extra: Iterable[tuple[str, str]] = ()) -> WebhookResponse:
    return WebhookResponse(status, _TEXT + tuple(extra), message.encode() + b"\n")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            found: bytes = value
            return found
    return None


def public_url(scope: Scope, base: str | None, proxies: TrustedProxies | None) -> str | None:
    """The URL the provider called, as it signed it.

    ``base`` (the configured ``public_url``) plus the request target as received; else, for a
    request from a trusted proxy, its scheme and host (``Forwarded`` / ``X-Forwarded-*``, or the
    ``Host`` the proxy passed on). ``None`` when neither applies: the ``Host`` header of an
    untrusted peer is never used.
    """
    target = scope["raw_path"].decode("latin-1")
    if scope["query_string"]:
        target += "?" + scope["query_string"].decode("latin-1")
    if base is not None:
        return base.rstrip("/") + target
    client = scope.get("client")
    if proxies is None or not proxies.trusts(client[0] if client else None):
        return None
    _, scheme, host = proxies.resolve(client, scope["scheme"], scope["headers"])
    host = host or _header(scope, b"host")
    if host is None:
        return None
    text = host.decode("latin-1").strip()
    port = _header(scope, b"x-forwarded-port") if proxies.x_forwarded else None
    if port is not None and port.strip().isdigit() and not text.endswith("]") and ":" not in text:
        number = int(port)
        if (scheme, number) not in (("http", 80), ("https", 443)):
            text = f"{text}:{number}"
    if not _HOST.fullmatch(text):
        return None
    return f"{scheme}://{text}{target}"


def effective_timeout(consumer_timeout: float, deadline: float | None) -> float:
    """The consumer timeout, capped to answer within the provider's own deadline."""
    if deadline is None:
        return consumer_timeout
    return max(0.1, min(consumer_timeout, deadline - DEADLINE_MARGIN))


class RestSender(Protocol):
    """Sends texts through a provider's REST API (:class:`gateway.protocols.sms.sender.SmsSender`)."""

    async def send(self, provider: Provider, message: OutboundMessage) -> SendResult:
        """Send one text; raises :class:`SendError` when the provider refused it or did not answer."""

    async def close(self) -> None:
        """Close the connections kept open."""


@dataclass(eq=False)
class Account:
    """One configured provider account at run time."""

    name: str
    path: str
    provider: Provider
    sender: RestSender

    @property
    def inline_replies(self) -> bool:
        """Whether ``sms.reply`` can travel in the webhook answer."""
        return type(self.provider).supports_inline_reply


_DISCONNECT = cast(Message, asgi.DISCONNECT)


class SmsInstance(ApplicationInstance):
    """The application instance of one verified webhook event (see the module documentation).

    The bridge awaits :attr:`answer`: True once the event is handled (the webhook gets the
    provider's success answer, see :meth:`answered_inline`), False when it failed or was not
    handled within ``timeout`` (the retry status, see :meth:`answered_retry`).

    Args:
        app: the user's application.
        account: the account the webhook came to.
        event: the provider's event.
        scope: its ``sms`` scope.
        loop, clock: the asyncio loop and the reactor (timers).
        stats: the listener's counters.
        deadlines: the account's handling deadlines (``deadlines.seconds``: the time the
            application has to handle the event).
        closing: the bridge's closing deadlines (``application_close``).
        close_timeout: ``application_close``.
        on_outcome: called once with whether the event was handled (the bridge's dedup).
    """

    __slots__ = ("account", "event", "answer", "closing", "deadlines", "on_outcome", "sends", "stats", "_deadline",
                 "_timer")

    log = log
    notify_receiving = True

    def __init__(self, app: ASGIApp, account: Account, event: InboundMessage | StatusUpdate, scope: asgi.SmsScope, *,
                 loop: asyncio.AbstractEventLoop, clock: Clock, stats: SmsStats, deadlines: Deadlines,
                 closing: Deadlines, on_outcome: Callable[[bool], None]) -> None:
        inline = account.inline_replies
        provider = account.provider
        order = SmsOrder(event, inline=inline,
                         check_inline=(lambda texts: provider.respond(event, texts)) if inline else None)
        super().__init__(app, cast(Scope, scope), order, loop, clock, stats.instances, closing.seconds)
        self.order: SmsOrder = order
        self.account = account
        self.event = event
        self.stats = stats
        self.deadlines = deadlines
        self.closing = closing
        self.on_outcome: Callable[[bool], None] | None = on_outcome
        #: Whether the webhook may get the provider's success answer (see the class documentation).
        self.answer: asyncio.Future[bool] = loop.create_future()
        #: REST sends in flight.
        self.sends: set[asyncio.Task[None]] = set()
        self._deadline: Deadline | None = None
        self._timer: Timer | None = None
        first = asgi.receive_event(event) if isinstance(event, InboundMessage) else asgi.status_event(event)
        self.queue.append((cast(Message, first), 0))

    # -- driven by the bridge ----------------------------------------------------------------

    def start(self) -> None:
        """Start the application and its deadline."""
        self._deadline = self.deadlines.add(self._due)
        super().start()

    def answered_inline(self) -> list[str]:
        """The webhook gets the success answer: the replies held for it."""
        return self.order.answer_inline()

    def answered_retry(self) -> None:
        """The webhook got the retry status: held replies can no longer travel in it."""
        self._send_all(self.order.answer_retry())

    def send_by_rest(self, texts: list[str]) -> None:
        """Send replies that could not travel in the answer after all."""
        event = self.event
        if isinstance(event, InboundMessage):
            for text in texts:
                self._start_send(None, OutboundMessage(to=event.from_.value, text=text, from_=event.to.value))

    # -- the instance's hooks ----------------------------------------------------------------

    def app_perform(self, action: Any) -> None:
        if action is ACK:
            self._outcome(True)
        elif isinstance(action, asgi.Send):
            self._start_send(action.id, action.message)
        return None  # Held: kept by the order for the outcome; None: a repeated sms.ack

    def app_receiving(self) -> None:
        # sms.disconnect once the event has an outcome, no REST send is in flight and every
        # result was read; the application is timed from the moment it reads it.
        if self.final is None and not self.queue and not self.sends and self.order.handled is not None:
            self.set_final(_DISCONNECT)
            self._cancel_timer()
            self._deadline = self.closing.add(self._close_due)

    def app_ended(self, ending: Ending) -> None:
        self._cancel_timer()
        if self.order.handled is None:
            self._send_all(self.order.settle(ending is RETURNED))
            self._settled()

    def describe(self) -> str:
        return f"sms {self.account.name} message {self.event.message_id}"

    # -- internals -----------------------------------------------------------------------------

    def _outcome(self, handled: bool) -> None:
        """``sms.ack``: the event is handled."""
        self._cancel_timer()
        self._send_all(self.order.after_outcome())
        self._settled()

    def _settled(self) -> None:
        handled = bool(self.order.handled)
        if not handled:
            dropped = len(self.order.held)
            if dropped:
                log.info("sms {account}: dropped {count} reply(ies) to unhandled message {id} (it will be "
                         "redelivered)", account=self.account.name, count=dropped, id=self.event.message_id)
        answer = self.answer
        if not answer.done():
            answer.set_result(handled)
        on_outcome, self.on_outcome = self.on_outcome, None
        if on_outcome is not None:
            on_outcome(handled)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self.app_receiving()

    def _close_due(self) -> None:
        self._deadline = None
        if self.ended is None:
            self.time_out(self.close_timeout, "sms.disconnect")

    def _due(self) -> None:
        """The consumer timeout: not handled yet, so the provider is told to retry; the instance
        gets ``application_close`` more to handle it (the event is then remembered as handled)."""
        self._deadline = None
        if self.order.handled is not None or self.ended is not None:  # pragma: no cover - cleared then
            return
        answer = self.answer
        if not answer.done():
            answer.set_result(False)
        self._timer = self.clock.callLater(self.close_timeout, self._overdue)

    def _overdue(self) -> None:
        self._timer = None
        if self.order.handled is not None or self.ended is not None:
            return
        self.counters.timeouts += 1
        log.warn("sms {account}: the application did not handle message {id} in time; cancelled",
                 account=self.account.name, id=self.event.message_id)
        self.cancel()

    def _cancel_timer(self) -> None:
        deadline = self._deadline
        if deadline is not None:
            self._deadline = None
            deadline.clear()
        timer = self._timer
        if timer is not None:
            self._timer = None
            if timer.active():
                timer.cancel()

    def _send_all(self, sends: list[asgi.Send]) -> None:
        for send in sends:
            self._start_send(send.id, send.message)

    def _start_send(self, request_id: Any, outbound: OutboundMessage) -> None:
        task = self.loop.create_task(self._send(request_id, outbound))
        self.sends.add(task)

    async def _send(self, request_id: Any, outbound: OutboundMessage) -> None:
        account = self.account
        outcome: SendResult | SendError | LocalProtocolError
        try:
            outcome = await account.sender.send(account.provider, outbound)
        except (SendError, LocalProtocolError) as exc:
            outcome = exc
            log.warn("sms {account}: sending to {to} failed: {error}", account=account.name, to=outbound.to,
                     error=str(exc))
        finally:
            task = asyncio.current_task()
            if task is not None:
                self.sends.discard(task)
        self.stats.send(account.provider.name, not isinstance(outcome, Exception))
        if self.ended is None:
            self.put(cast(Message, asgi.send_result_event(request_id, outcome)), 0)


class WebhookBridge:
    """An ASGI application (``http`` scopes) that turns webhooks into ``sms`` scopes for ``app``.

    Args:
        app: the user's application.
        accounts: the configured accounts.
        loop: the loop instances run on.
        reactor: the reactor (the instances' timers).
        public_base: the configured ``public_url``.
        proxies: the trusted proxies (``None``: none).
        consumer_timeout: seconds an application has to handle an event.
        application_close: seconds an instance may run on after ``sms.disconnect``.
        dedup: where handled deliveries are remembered (this process, or shared).
        concat: the buffer of split messages' parts.
        max_body: largest webhook body in bytes.
        unrouted: ``"drop"`` or ``"retry"``.
        state: the lifespan state.
        clock: Unix time in seconds (tests pass their own).
        rejections: rate-limits the lines about refused webhooks (None: every one is logged).
    """

    def __init__(self, app: Any, accounts: Iterable[Account], *, loop: asyncio.AbstractEventLoop, reactor: Clock,
                 public_base: str | None, proxies: TrustedProxies | None, consumer_timeout: float,
                 application_close: float, dedup: DedupStore, concat: ConcatBuffer, max_body: int,
                 unrouted: str = "drop", state: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.time, rejections: RejectionLog | None = None) -> None:
        self.app = app
        self.accounts = {account.path.rstrip("/") or "/": account for account in accounts}
        self.loop = loop
        self.reactor = reactor
        self.public_base = public_base
        self.proxies = proxies
        self.consumer_timeout = consumer_timeout
        self.application_close = application_close
        self.dedup = dedup
        self.concat = concat
        self.max_body = max_body
        self.unrouted = unrouted
        self.state = state
        self.clock = clock
        self.rejections = rejections
        self.in_flight: dict[str, SmsInstance] = {}
        #: The handling deadlines of the events being handled, by timeout (one per provider's cap).
        self.deadlines: dict[float, Deadlines] = {}
        #: The instances' closing deadlines (``application_close`` after they read sms.disconnect).
        self.closing = Deadlines(reactor, application_close)
        #: The listener's counters (:mod:`gateway.metrics`; the daemon replaces this one).
        self.stats = SmsStats()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response = await self.handle(scope, receive)
        if response is None:
            return
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        headers.append((b"content-length", str(len(response.body)).encode()))
        try:
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            await send({"type": "http.response.body", "body": response.body})
        except (ClientDisconnected, OSError):
            log.info("sms: the provider left before its webhook was answered ({status})", status=response.status)

    def account_for(self, scope: Scope) -> Account | None:
        """The account whose path the request is for (``root_path`` stripped)."""
        path = scope["path"]
        root = scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root):]
        return self.accounts.get(path.rstrip("/") or "/")

    async def handle(self, scope: Scope, receive: Receive) -> WebhookResponse | None:
        """The answer to one webhook request (``None``: the provider left)."""
        account = self.account_for(scope)
        if account is None:
            return _text(404, "no SMS account at this path")
        if scope["method"] not in ("GET", "POST"):
            return _text(405, "webhooks are GET or POST", [("allow", "GET, POST")])
        read = await self._read_body(receive)
        if read is None:
            return None
        body, too_large = read
        if too_large:
            return _text(413, f"webhook body larger than {self.max_body} bytes")
        url = public_url(scope, self.public_base, self.proxies)
        if url is None:
            if self._log_rejection(f"{account.name} webhook without public URL"):
                log.warn("sms {account}: webhook from {client} refused: not from a trusted proxy and no public_url "
                         "is configured, so the signed URL is unknown", account=account.name, client=scope.get("client"))
            return _text(403, "cannot establish the public URL of this webhook")
        provider = account.provider
        try:
            event = provider.receive(WebhookRequest(scope["method"], url, scope["headers"], body), now=self.clock())
        except RemoteProtocolError as exc:
            self.stats.webhook(provider.name, "rejected")
            if self._log_rejection(f"{account.name} webhook {exc.hint}"):
                log.warn("sms {account}: webhook from {client} rejected ({status}): {error}", account=account.name,
                         client=scope.get("client"), status=exc.hint, error=exc.message)
            return provider.error_response(exc)
        except LocalProtocolError as exc:
            log.error("sms {account}: cannot check webhooks: {error}", account=account.name, error=exc.message)
            return _text(500, "webhook verification is misconfigured")
        return await self.dispatch(account, event)

    def _log_rejection(self, reason: str) -> bool:
        return self.rejections is None or self.rejections.allow(reason)

    async def _read_body(self, receive: Receive) -> tuple[bytes, bool] | None:
        """``(body, too_large)``: a body over the limit is read to the end but not kept (so that the
        client reads the 413 rather than a connection reset; the HTTP side's ``max_body_size``
        bounds it). ``None`` when the client left."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= self.max_body:
                chunks.append(chunk)
            elif chunks:
                chunks = []
            if not message.get("more_body", False):
                return b"".join(chunks), size > self.max_body

    async def dispatch(self, account: Account, event: Event) -> WebhookResponse:
        """Hand a verified event over (or acknowledge it) and return the answer."""
        if isinstance(event, OtherEvent):
            self.stats.webhook(account.provider.name, "ignored")
            log.debug("sms {account}: acknowledged {kind} event", account=account.name, kind=event.event_type)
            return account.provider.respond(None)
        if isinstance(event, InboundMessage) and event.concat is not None:
            return await self._part(account, event)
        return await self._deliver(account, event)

    async def _part(self, account: Account, part: InboundMessage) -> WebhookResponse:
        provider = account.provider
        now = self.clock()
        part_key = f"{account.name}:part:{part.dedup_key}"
        if await self.dedup.check(part_key, now):
            self.stats.webhook(provider.name, "duplicate")
            return provider.respond(None)
        try:
            set_key, joined, given_up = self.concat.add(account.name, part, now)
        except ValueError as exc:
            log.warn("sms {account}: dropped a concatenated message: {error}", account=account.name, error=str(exc))
            return _text(400, str(exc))
        for lost in given_up:
            log.warn("sms {account}: gave up a concatenated message with {have} of {total} parts",
                     account=account.name, have=len(lost.parts), total=lost.total)
        if joined is None:
            self.dedup.remember(part_key, now)
            self.stats.webhook(provider.name, "part")
            return provider.respond(None)

        def handled() -> None:
            self.concat.discard(set_key)
            self.dedup.remember(part_key, self.clock())

        return await self._deliver(account, joined, on_handled=handled)

    async def _deliver(self, account: Account, event: InboundMessage | StatusUpdate, *,
                       on_handled: Callable[[], None] | None = None) -> WebhookResponse:
        provider = account.provider
        key = f"{account.name}:{event.dedup_key}"
        timeout = effective_timeout(self.consumer_timeout, provider.retry_policy.deadline)
        stats = self.stats
        if await self.dedup.check(key, self.clock()):
            stats.webhook(provider.name, "duplicate")
            log.info("sms {account}: {id} was already handled; acknowledged the redelivery",
                     account=account.name, id=event.message_id)
            return provider.respond(None)
        running = self.in_flight.get(key)
        if running is not None:
            ok = await asyncio.shield(running.answer)
            stats.webhook(provider.name, "duplicate")
            return provider.respond(None) if ok else provider.failure_response()
        scope = asgi.sms_scope(event, account=account.name, inline_replies=account.inline_replies, state=self.state)
        try:
            routed = await matches(self.app, cast(dict[str, Any], scope))
        except Exception as exc:
            log.error("sms {account}: routing failed: {error}", account=account.name, error=repr(exc))
            stats.webhook(provider.name, "failed")
            return provider.failure_response()
        if not routed:
            log.warn("sms {account}: no route for {kind} {id} from {sender} to {to}; {action}", account=account.name,
                     kind=scope["kind"], id=event.message_id, sender=scope["from"], to=scope["to"],
                     action="dropped" if self.unrouted == "drop" else "the provider will retry")
            stats.webhook(provider.name, "unrouted")
            return provider.respond(None) if self.unrouted == "drop" else provider.failure_response()

        def outcome(ok: bool) -> None:
            self.in_flight.pop(key, None)
            if ok:
                self.dedup.remember(key, self.clock())
                if on_handled is not None:
                    on_handled()

        deadlines = self.deadlines.get(timeout)
        if deadlines is None:
            deadlines = self.deadlines[timeout] = Deadlines(self.reactor, timeout)
        instance = SmsInstance(self.app, account, event, scope, loop=self.loop, clock=self.reactor, stats=stats,
                               deadlines=deadlines, closing=self.closing, on_outcome=outcome)
        self.in_flight[key] = instance
        instance.start()
        if not await asyncio.shield(instance.answer):
            if instance.order.handled is None:
                log.warn("sms {account}: the application did not handle {id} within {timeout}s; answered {status} "
                         "so that the provider retries", account=account.name, id=event.message_id,
                         timeout=timeout, status=provider.retry_policy.failure_status)
            instance.answered_retry()
            stats.webhook(provider.name, "failed")
            return provider.failure_response()
        stats.webhook(provider.name, "handled")
        if isinstance(event, StatusUpdate):
            stats.status(provider.name, event.status)
        replies = instance.answered_inline()
        try:
            return provider.respond(event, replies)
        except LocalProtocolError:
            instance.send_by_rest(replies)
            return provider.respond(None)
