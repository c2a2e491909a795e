"""Drive a WebhookBridge in-process: ``http`` scopes in, answers out, with a fake REST side."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.protocols.http.proxy import TrustedProxies
from gateway.protocols.sms.adapter import Account, WebhookBridge
from gateway.protocols.sms.core import OutboundRequest
from gateway.protocols.sms.dedup import ConcatBuffer, DedupCache
from gateway.protocols.sms.providers import create_provider
from gateway.protocols.sms.sender import SmsSender
from gateway.protocols.sms.testhook import TestWebhook, sign_test_webhook

PUBLIC = "https://sms.example.com"
PROVIDERS = ["twilio", "vonage", "plivo", "telnyx", "generic"]
#: Each provider's success status.
SUCCESS = {"twilio": 200, "vonage": 204, "plivo": 200, "telnyx": 200, "generic": 200}
TELNYX_SEED = bytes(range(1, 33))
TELNYX_PUBLIC = Ed25519PrivateKey.from_private_bytes(TELNYX_SEED).public_key().public_bytes(
    Encoding.Raw, PublicFormat.Raw)

#: provider -> (path, create_provider settings, sign_test_webhook credentials)
ACCOUNTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "twilio": ("/twilio", {"auth_token": "tw-token", "account_sid": "AC1", "default_from": "+15005550006"},
               {"auth_token": "tw-token"}),
    "vonage": ("/vonage", {"signature_secret": "vn-secret", "api_key": "key", "api_secret": "sec",
                           "signature_method": "sha256"},
               {"signature_secret": "vn-secret", "signature_method": "sha256"}),
    "plivo": ("/plivo", {"auth_id": "MA1", "auth_token": "pl-token"}, {"auth_token": "pl-token"}),
    "telnyx": ("/telnyx", {"public_key": TELNYX_PUBLIC, "api_key": "KEY"}, {"private_key": TELNYX_SEED}),
    "generic": ("/generic", {"secret": "gen-secret", "base_url": "https://api.example.net/send",
                             "default_from": "+441134960000"}, {"secret": "gen-secret"}),
}


class LoopCall:
    """One timer of :class:`LoopClock`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, function: Any, args: Any, kwargs: Any) -> None:
        self.called = False
        self.function, self.args, self.kwargs = function, args, kwargs
        self.handle = loop.call_later(delay, self.fire)

    def fire(self) -> None:
        self.called = True
        self.function(*self.args, **self.kwargs)

    def active(self) -> bool:
        return not self.called and not self.handle.cancelled()

    def cancel(self) -> None:
        self.handle.cancel()


class LoopClock:
    """The reactor's timers on the test's asyncio loop, as the asyncio reactor keeps them in the
    daemon (``callLater`` is the loop's ``call_later``), so the bridge's timers and the
    applications' ``asyncio.sleep`` share one clock."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def seconds(self) -> float:
        return self.loop.time()

    def callLater(self, delay: float, function: Any, *args: Any, **kwargs: Any) -> LoopCall:
        return LoopCall(self.loop, delay, function, args, kwargs)


class FakeSender(SmsSender):
    """Records the REST requests and answers them from ``answers`` (status, body) or a default."""

    def __init__(self, answer: tuple[int, bytes] = (200, b'{"id": "out-1"}')) -> None:
        super().__init__(None, client=object())
        self.requests: list[OutboundRequest] = []
        self.answer = answer

    async def _exchange(self, request: OutboundRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        self.requests.append(request)
        return self.answer[0], [("content-type", "application/json")], self.answer[1]


SEND_ANSWERS = {
    "twilio": (201, b'{"sid": "SMout", "status": "queued"}'),
    "vonage": (200, b'{"message-count": "1", "messages": [{"status": "0", "message-id": "v-out"}]}'),
    "plivo": (202, b'{"api_id": "x", "message_uuid": ["p-out"]}'),
    "telnyx": (200, b'{"data": {"id": "t-out", "to": [{"status": "queued"}]}}'),
    "generic": (200, b'{"id": "g-out"}'),
}


class Harness:
    """A bridge over every provider's account, serving ``app``."""

    def __init__(self, app: Any, *, public: str | None = PUBLIC, proxies: Sequence[str] = (),
                 consumer_timeout: float = 2.0, application_close: float = 1.0, max_body: int = 64 * 1024,
                 unrouted: str = "drop", verify: bool = True, dedup_window: float = 3600.0,
                 clock: Any = None) -> None:
        self.senders: dict[str, FakeSender] = {}
        accounts = []
        for name, (path, settings, _) in ACCOUNTS.items():
            sender = self.senders[name] = FakeSender(SEND_ANSWERS[name])
            provider = create_provider(name, verify_signatures=verify, **settings)
            accounts.append(Account(name, path, provider, sender))
        self.loop = asyncio.new_event_loop()
        self.bridge = WebhookBridge(
            app, accounts, loop=self.loop, reactor=LoopClock(self.loop), public_base=public,
            proxies=TrustedProxies(proxies) if proxies else None, consumer_timeout=consumer_timeout,
            application_close=application_close, dedup=DedupCache(dedup_window, 1000),
            concat=ConcatBuffer(600.0), max_body=max_body, unrouted=unrouted, state={"booted": "yes"},
            **({"clock": clock} if clock else {}),
        )

    def url(self, provider: str, query: str = "") -> str:
        return PUBLIC + ACCOUNTS[provider][0] + (f"?{query}" if query else "")

    def credentials(self, provider: str) -> dict[str, Any]:
        return dict(ACCOUNTS[provider][2])

    def request(self, method: str, url: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b"", *,
                client: tuple[str, int] = ("203.0.113.9", 40000), chunk: int | None = None) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request through the bridge; returns (status, headers, body)."""
        return self.loop.run_until_complete(self.arequest(method, url, headers, body, client=client, chunk=chunk))

    async def arequest(self, method: str, url: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b"", *,
                       client: tuple[str, int] = ("203.0.113.9", 40000),
                       chunk: int | None = None) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)] if chunk and body else [body]
        inbox: list[dict[str, Any]] = [{"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
                                       for i, piece in enumerate(pieces)]
        raw_headers = [(b"host", parts.netloc.encode())] + [(k.lower().encode(), v.encode()) for k, v in headers]
        scope = {"type": "http", "method": method, "scheme": "http", "path": parts.path,
                 "raw_path": parts.path.encode(), "query_string": parts.query.encode(), "root_path": "",
                 "headers": raw_headers, "client": client, "server": ("127.0.0.1", 8080)}
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if inbox:
                return inbox.pop(0)
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.bridge(scope, receive, send)
        start = sent[0]
        head = {k.decode(): v.decode() for k, v in start["headers"]}
        return start["status"], head, b"".join(m.get("body", b"") for m in sent[1:])

    def post(self, hook: TestWebhook, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
        return self.request(hook.method, hook.url, hook.headers, hook.body, **kwargs)

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        """Run the loop (sends, late instances) until ``predicate()`` holds.

        Raises:
            AssertionError: it did not within ``timeout`` seconds.
        """

        async def until() -> None:
            deadline = self.loop.time() + timeout
            while not predicate():
                if self.loop.time() > deadline:
                    raise AssertionError(f"condition not reached within {timeout}s")
                await asyncio.sleep(0.01)

        self.loop.run_until_complete(until())

    def close(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


class Recorder:
    """An sms application that records what it got; ``behaviour(scope, event, receive, send)``
    decides what it does (default: acknowledge)."""

    def __init__(self, behaviour: Any = None) -> None:
        self.deliveries: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.later: list[dict[str, Any]] = []
        self.behaviour = behaviour

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        event = await receive()
        self.deliveries.append((scope, event))
        if self.behaviour is not None:
            await self.behaviour(scope, event, receive, send)
        else:
            await send({"type": "sms.ack"})
        while True:
            message = await receive()
            self.later.append(message)
            if message["type"] == "sms.disconnect":
                return


def hook(h: Harness, provider: str, **kwargs: Any) -> TestWebhook:
    """A webhook signed for ``provider``'s account on ``h``."""
    return sign_test_webhook(provider, h.url(provider), **h.credentials(provider), **kwargs)
