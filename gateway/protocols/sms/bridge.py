"""The webhook bridge: the ASGI application an SMS listener's HTTP side serves.

For each HTTP request it finds the account by path (404 otherwise), reads the body (413 past
``max_webhook_size``), rebuilds the public URL the provider signed, verifies and parses the webhook
with the provider module (403 / 400 / 405, never reaching an application), drops what was already
handled (dedup), checks that a route exists, hands the event to the user's application as an ``sms``
scope (:class:`~gateway.protocols.sms.session.SmsSession`) and answers the provider: its success
answer (with inline replies) once the application handled the event, else the provider's retry
status.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from twisted.logger import Logger

from gateway.asgi.app import Receive, Scope, Send
from gateway.asgi.instance import ClientDisconnected
from gateway.logs import RejectionLog
from gateway.metrics.stats import SmsStats
from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.http.proxy import TrustedProxies
from gateway.protocols.sms import asgi
from gateway.protocols.sms.dedup import ConcatBuffer, DedupStore
from gateway.protocols.sms.model import Event, InboundMessage, OtherEvent, StatusUpdate, WebhookResponse
from gateway.protocols.sms.session import Account, SmsSession
from gateway.protocols.sms.webhook import WebhookRequest
from gateway.routing.base import matches

__all__ = ["WebhookBridge", "public_url", "effective_timeout"]

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
            return value  # type: ignore[no-any-return]
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


class WebhookBridge:
    """An ASGI application (``http`` scopes) that turns webhooks into ``sms`` scopes for ``app``.

    Args:
        app: the user's application.
        accounts: the configured accounts.
        loop: the loop instances run on.
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

    def __init__(self, app: Any, accounts: Iterable[Account], *, loop: asyncio.AbstractEventLoop,
                 public_base: str | None, proxies: TrustedProxies | None, consumer_timeout: float,
                 application_close: float, dedup: DedupStore, concat: ConcatBuffer, max_body: int,
                 unrouted: str = "drop", state: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.time, rejections: RejectionLog | None = None) -> None:
        self.app = app
        self.accounts = {account.path.rstrip("/") or "/": account for account in accounts}
        self.loop = loop
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
        self.in_flight: dict[str, SmsSession] = {}
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
            ok = await running.wait(timeout)
            stats.webhook(provider.name, "duplicate")
            return provider.respond(None) if ok else provider.failure_response()
        scope = asgi.sms_scope(event, account=account.name, inline_replies=account.inline_replies, state=self.state)
        try:
            routed = await matches(self.app, scope)
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

        session = SmsSession(account, event, scope, loop=self.loop, deadline=timeout + self.application_close,
                             application_close=self.application_close, on_outcome=outcome, stats=stats)
        self.in_flight[key] = session
        session.start(self.app)
        handled = await session.wait(timeout) or (session.outcome.done() and session.outcome.result())
        if not handled:
            if not session.outcome.done():
                log.warn("sms {account}: the application did not handle {id} within {timeout}s; answered {status} "
                         "so that the provider retries", account=account.name, id=event.message_id,
                         timeout=timeout, status=provider.retry_policy.failure_status)
            session.answered_failure()
            stats.webhook(provider.name, "failed")
            return provider.failure_response()
        stats.webhook(provider.name, "handled")
        if isinstance(event, StatusUpdate):
            stats.status(provider.name, event.status)
        replies = session.take_replies()
        try:
            return provider.respond(event, replies)
        except LocalProtocolError:
            session.send_by_rest(replies)
            return provider.respond(None)
