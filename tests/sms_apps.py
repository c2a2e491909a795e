"""Applications the SMS tests run (in a real daemon: ``tests.sms_apps:app``; or in-process).

The text of a message picks the behaviour:

* ``echo <words>``: reply ``echo: <words>`` (inline where the provider allows), then acknowledge;
* ``fail``: raise (not handled: the provider is told to retry);
* ``slow <seconds>``: sleep, then acknowledge;
* ``ack-first <seconds>``: acknowledge, then sleep;
* ``send <number> <words>``: ``sms.send`` the words to the number, wait for ``sms.send.result`` and
  reply with it as JSON (inline), then acknowledge;
* ``flaky``: fail the first delivery of each message id, handle the next;
* anything else: acknowledge.

Every delivery (scope and event) is appended as one JSON line to the file named by
``GATEWAY_SMS_LOG``, so a test can count what reached the application. Senders under ``+1`` go to
:class:`USText` (an ``AsyncSmsConsumer``), others to :func:`texts`: ``SMSFromRouter`` as in the
issue.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from gateway.consumers.sms import AsyncSmsConsumer
from gateway.routing import SMSFromRouter, default, phone

_FAILED_ONCE: set[str] = set()


def record(scope: dict[str, Any], event: dict[str, Any], handler: str) -> None:
    """Append one delivery to ``$GATEWAY_SMS_LOG``."""
    path = os.environ.get("GATEWAY_SMS_LOG")
    if not path:
        return
    keys = ("kind", "provider", "account", "provider_account", "from", "from_kind", "to", "to_kind", "country",
            "message_id")
    line = {"handler": handler, "scope": {k: scope.get(k) for k in keys}, "event": event,
            "state": dict(scope.get("state") or {})}
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line, default=str) + "\n")


async def texts(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A plain ASGI sms application (see the module docstring)."""
    event = await receive()
    record(scope, event, "texts")
    if event["type"] == "sms.receive":
        await _act(scope, event["text"], receive, send)
    else:
        await send({"type": "sms.ack"})
    while (await receive())["type"] != "sms.disconnect":
        pass


async def _act(scope: dict[str, Any], text: str, receive: Any, send: Any) -> None:
    word, _, rest = text.partition(" ")
    if word == "echo":
        await send({"type": "sms.reply", "text": f"echo: {rest}"})
    elif word == "fail":
        raise RuntimeError("the test application failed on purpose")
    elif word == "flaky" and scope["message_id"] not in _FAILED_ONCE:
        _FAILED_ONCE.add(scope["message_id"])
        raise RuntimeError("failing the first delivery on purpose")
    elif word == "slow":
        await asyncio.sleep(float(rest))
    elif word == "ack-first":
        await send({"type": "sms.ack"})
        await asyncio.sleep(float(rest))
    elif word == "send":
        number, _, words = rest.partition(" ")
        await send({"type": "sms.send", "to": number, "text": words, "id": "s1"})
        result = await receive()
        record(scope, result, "texts")
        await send({"type": "sms.reply", "text": json.dumps(result, sort_keys=True)})
    await send({"type": "sms.ack"})


class USText(AsyncSmsConsumer):
    """The ``+1`` route, as a consumer: echoes, records statuses and send results."""

    async def receive(self, text: str, message: dict[str, Any]) -> None:
        record(self.scope, message, "USText")
        if text.startswith("echo "):
            await self.reply(f"consumer echo: {text[5:]}")
        elif text == "fail":
            raise RuntimeError("consumer failed on purpose")
        elif text.startswith("send "):
            _, number, words = text.split(" ", 2)
            await self.send_sms(number, words, id="c1")

    async def status(self, message: dict[str, Any]) -> None:
        record(self.scope, message, "USText")

    async def send_result(self, message: dict[str, Any]) -> None:
        record(self.scope, message, "USText")


sms = SMSFromRouter([phone("+1", USText.as_asgi()), default(texts)])


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The daemon's application: lifespan (sets ``state["booted"]``) and ``sms`` scopes."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["booted"] = "yes"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "sms":
        await sms(scope, receive, send)
    else:
        raise ValueError(f"unexpected scope type {scope['type']!r}")


async def nowhere(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Routes only ``+44`` senders: everything else is unrouted."""
    if scope["type"] == "lifespan":
        await app(scope, receive, send)
        return
    await SMSFromRouter([phone("+44", texts)])(scope, receive, send)


nowhere.matches = SMSFromRouter([phone("+44", texts)]).matches  # type: ignore[attr-defined]
