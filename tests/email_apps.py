"""Applications the email tests run in real daemons (SMTP listener, IMAP reader).

Every message an application takes is appended, as one JSON line, to the file named by the
``EMAIL_TEST_OUTBOX`` environment variable, so a test can read what the daemon delivered.
Recipients choose the behaviour (``EmailToRouter`` routes on them):

* ``*@accept.test``: accepted and recorded;
* ``*@fail-once.test``: the first delivery of each Message-ID raises (the client must get 451 and
  retry), the next one is accepted and recorded;
* ``*@fail.test``: always raises;
* ``*@reject.test``: rejected with ``554 5.7.1``;
* ``*@slow.test``: accepted after the number of seconds in the ``X-Delay`` header;
* ``*@reply.test``: replies to the sender through the smarthost, waits for the result, records it;
* anything else has no route (``550 5.1.1`` at RCPT).
"""

from __future__ import annotations

import asyncio
import json
import os
from email.message import EmailMessage
from typing import Any

from gateway.consumers.email import AsyncEmailConsumer
from gateway.routing import EmailToRouter, ProtocolTypeRouter, regex

_seen: set[str] = set()


def record(kind: str, scope: dict[str, Any], raw: bytes, **extra: Any) -> None:
    """Append one delivery to the outbox file."""
    path = os.environ.get("EMAIL_TEST_OUTBOX")
    if not path:
        return
    entry = {
        "kind": kind,
        "source": scope.get("source"),
        "sender": scope.get("sender"),
        "recipients": scope.get("recipients"),
        "helo": scope.get("helo"),
        "tls": scope.get("tls") is not None,
        "tls_version": (scope.get("tls") or {}).get("tls_version"),
        "auth_user": scope.get("auth_user"),
        "client": list(scope["client"]) if scope.get("client") else None,
        "mailbox": scope.get("mailbox"),
        "uid": scope.get("uid"),
        "raw": raw.decode("latin-1"),
        **extra,
    }
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


class Recorder(AsyncEmailConsumer):
    """Accepts and records."""

    async def receive(self, message: EmailMessage, raw: bytes) -> None:
        record("accepted", self.scope, raw, subject=str(message.get("Subject", "")))
        await self.accept("2.0.0 Ok: recorded")


class FailOnce(AsyncEmailConsumer):
    """Raises on the first delivery of each Message-ID, accepts the next."""

    async def receive(self, message: EmailMessage, raw: bytes) -> None:
        key = str(message.get("Message-ID", ""))
        if key not in _seen:
            _seen.add(key)
            record("failed", self.scope, raw)
            raise RuntimeError("storage unavailable (first attempt)")
        record("accepted", self.scope, raw, subject=str(message.get("Subject", "")))


class Fail(AsyncEmailConsumer):
    """Always raises."""

    async def receive(self, message: EmailMessage, raw: bytes) -> None:
        record("failed", self.scope, raw)
        raise RuntimeError("always failing")


class Rejecter(AsyncEmailConsumer):
    """Rejects permanently."""

    async def receive(self, message: EmailMessage, raw: bytes) -> None:
        record("rejected", self.scope, raw)
        await self.reject(554, "5.7.1 Not wanted here")


class Slow(AsyncEmailConsumer):
    """Accepts after X-Delay seconds."""

    async def receive(self, message: EmailMessage, raw: bytes) -> None:
        record("started", self.scope, raw, subject=str(message.get("Subject", "")))
        await asyncio.sleep(float(message.get("X-Delay", "1")))
        record("accepted", self.scope, raw, subject=str(message.get("Subject", "")))


class Replier(AsyncEmailConsumer):
    """Accepts, replies to the sender through the smarthost and records the send result."""

    async def receive(self, message: EmailMessage, raw: bytes) -> None:
        record("accepted", self.scope, raw, subject=str(message.get("Subject", "")))
        await self.accept()
        self.reply_id = await self.reply("Thanks, we got it.", from_="robot@reply.test")

    async def send_result(self, result: dict[str, Any]) -> None:
        record("send_result", self.scope, b"", result={k: v for k, v in result.items() if k != "type"},
               expected_id=getattr(self, "reply_id", None))


async def auth_hook(username: str, password: str, scope: dict[str, Any]) -> bool:
    """The AUTH hook: one user that is not in the configuration."""
    await asyncio.sleep(0)
    return username == "hookuser" and password == "hookpass" and scope.get("tls") is not None


email_router = EmailToRouter([
    regex(r"@accept\.test$", Recorder.as_asgi()),
    regex(r"@fail-once\.test$", FailOnce.as_asgi()),
    regex(r"@fail\.test$", Fail.as_asgi()),
    regex(r"@reject\.test$", Rejecter.as_asgi()),
    regex(r"@slow\.test$", Slow.as_asgi()),
    regex(r"@reply\.test$", Replier.as_asgi()),
])

app = ProtocolTypeRouter({"email": email_router})


class Counter(AsyncEmailConsumer):
    """The benchmark consumer: accepts every message (and counts it)."""

    count = 0

    async def receive(self, message: EmailMessage, raw: bytes) -> None:
        Counter.count += 1


bench_app = ProtocolTypeRouter({"email": EmailToRouter([regex(r"@", Counter.as_asgi())])})
