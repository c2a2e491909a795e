"""SmsConsumer / AsyncSmsConsumer through SmsCommunicator, and through the real bridge."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from gateway.consumers.sms import AsyncSmsConsumer, SmsConsumer
from gateway.routing import SMSFromRouter, SMSToRouter, default, phone
from gateway.testing.sms import SmsCommunicator
from gateway.protocols.sms.testhook import sign_test_webhook

from .bridge_harness import Harness


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Echo(AsyncSmsConsumer):
    seen: list[Any] = []

    async def receive(self, text: str, message: dict[str, Any]) -> None:
        if text == "fail":
            raise RuntimeError("nope")
        if text == "send":
            await self.send_sms("+14155550100", "out", id="x1")
            return
        await self.reply(f"you said {text} from {self.scope['from']}")

    async def status(self, message: dict[str, Any]) -> None:
        Echo.seen.append(("status", message["status"]))

    async def send_result(self, message: dict[str, Any]) -> None:
        Echo.seen.append(("result", message["id"], message["ok"]))

    async def disconnect(self) -> None:
        Echo.seen.append(("disconnect",))


class SyncEcho(SmsConsumer):
    threads: list[str] = []

    def receive(self, text: str, message: dict[str, Any]) -> None:
        SyncEcho.threads.append(threading.current_thread().name)
        if text == "ack early":
            self.ack()
            self.reply("after ack")
            return
        self.reply(text.upper())
        self.send_sms("+447400123456", "copy", from_="Brand", media_urls=["https://x/y.png"],
                      status_callback="https://cb", id=3)


def test_async_consumer_replies_inline_then_acks() -> None:
    async def go() -> Any:
        communicator = SmsCommunicator(Echo.as_asgi(), "hi", from_="+447400123456")
        assert communicator.scope["country"] == "GB" and communicator.scope["type"] == "sms"
        outcome = await communicator.deliver()
        await communicator.disconnect()
        return outcome

    outcome = run(go())
    assert outcome.acked and outcome.replies == ["you said hi from +447400123456"] and outcome.error is None


def test_async_consumer_failure_is_not_acked() -> None:
    async def go() -> Any:
        return await SmsCommunicator(Echo.as_asgi(), "fail").deliver()

    outcome = run(go())
    assert not outcome.acked and isinstance(outcome.error, RuntimeError)


def test_async_consumer_status_send_result_and_disconnect() -> None:
    Echo.seen = []

    async def go() -> Any:
        communicator = SmsCommunicator(Echo.as_asgi(), "send")
        outcome = await communicator.deliver()
        await communicator.send_result("x1", ok=False)
        await communicator.disconnect()
        status = SmsCommunicator(Echo.as_asgi(), kind="status", status="undelivered")
        assert (await status.deliver()).acked
        await status.disconnect()
        return outcome

    outcome = run(go())
    assert outcome.sends == [{"type": "sms.send", "to": "+14155550100", "text": "out", "id": "x1"}]
    assert Echo.seen == [("result", "x1", False), ("disconnect",), ("status", "undelivered"), ("disconnect",)]


def test_sync_consumer_runs_on_the_pool_and_sends() -> None:
    async def go() -> Any:
        communicator = SmsCommunicator(SyncEcho.as_asgi(), "hey")
        outcome = await communicator.deliver()
        early = SmsCommunicator(SyncEcho.as_asgi(), "ack early")
        early_outcome = await early.deliver()
        sends = await early.collect_sends()
        await communicator.disconnect()
        await early.disconnect()
        return outcome, early_outcome, sends

    outcome, early, sends = run(go())
    assert outcome.acked and outcome.replies == ["HEY"]
    assert outcome.sends == [{"type": "sms.send", "to": "+447400123456", "text": "copy", "from": "Brand",
                              "media_urls": ["https://x/y.png"], "status_callback": "https://cb", "id": 3}]
    assert early.acked and early.replies == [] and sends == [{"type": "sms.reply", "text": "after ack"}]
    assert all(name != threading.main_thread().name for name in SyncEcho.threads)


def test_communicator_plain_app_returning_counts_as_acked() -> None:
    async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()

    assert run(SmsCommunicator(bare, "x").deliver()).acked


def test_communicator_times_out_on_a_silent_app() -> None:
    async def silent(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(10)

    with pytest.raises(TimeoutError):
        run(SmsCommunicator(silent, "x").deliver(timeout=0.05))


@pytest.mark.parametrize(("sender", "to", "expected"), [
    ("+447400123456", "+441134960000", "uk"),
    ("+14155550123", "+441134960000", "us"),
    ("+33612345678", "+441134960000", "other"),
    ("+33612345678", "+15005550006", "us-number"),
])
def test_routing_by_from_and_to_through_the_bridge(sender: str, to: str, expected: str) -> None:
    reached: list[str] = []

    def named(name: str) -> Any:
        class Named(AsyncSmsConsumer):
            async def receive(self, text: str, message: dict[str, Any]) -> None:
                reached.append(name)
        return Named.as_asgi()

    by_sender = SMSFromRouter([phone("+44", named("uk")), phone("+1", named("us")), default(named("other"))])
    app = SMSToRouter([phone("+15005550006", named("us-number")), default(by_sender)])
    h = Harness(app)
    try:
        hook = sign_test_webhook("twilio", h.url("twilio"), auth_token="tw-token", from_=sender, to=to)
        assert h.post(hook)[0] == 200
        h.wait_for(lambda: bool(reached))
        assert reached == [expected]
    finally:
        h.close()


def test_consumer_failure_through_the_bridge_is_a_retry_status() -> None:
    h = Harness(Echo.as_asgi())
    try:
        hook = sign_test_webhook("plivo", h.url("plivo"), auth_token="pl-token", text="fail")
        assert h.post(hook)[0] == 503
        hook = sign_test_webhook("plivo", h.url("plivo"), auth_token="pl-token", text="yo")
        status, _, body = h.post(hook)
        assert status == 200 and b">you said yo from +447400123456</Message>" in body
    finally:
        h.close()
