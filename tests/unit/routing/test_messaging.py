"""EmailToRouter, SMSFromRouter / SMSToRouter and TopicRouter."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.consumers import AsyncConsumer
from gateway.exceptions import NoRouteFound, StopConsumer
from gateway.routing import (
    EmailToRouter,
    ProtocolTypeRouter,
    SMSFromRouter,
    SMSToRouter,
    TopicRouter,
    default,
    matches,
    phone,
    regex,
    topic,
    topic_matches,
)
from gateway.testing import ApplicationCommunicator
from tests.unit.layers.conftest import until


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def email_scope(*recipients: str) -> dict[str, Any]:
    return {"type": "email", "source": "smtp", "sender": "a@example.com", "recipients": list(recipients)}


def answering(name: str, answer: dict[str, Any] | None = None, seen: list[Any] | None = None) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        event = await receive()
        if seen is not None:
            seen.append((name, scope["recipients"], event["type"]))
        await send(dict(answer or {"type": "email.accept"}))
    return app


def test_email_routing_single_target_and_matches() -> None:
    seen: list[Any] = []
    router = EmailToRouter([
        regex(r"@support\.example\.org$", answering("support", seen=seen)),
        regex(r"^sales@", answering("sales", seen=seen)),
    ])

    async def main() -> None:
        assert await matches(router, email_scope("Help@SUPPORT.example.org"))  # case-insensitive
        assert await matches(router, email_scope("sales@x.org"))
        assert not await matches(router, email_scope("nobody@x.org"))
        assert not await matches(router, email_scope())
        assert not await matches(router, email_scope("sales@x.org", "nobody@x.org"))
        comm = ApplicationCommunicator(router, email_scope("a@support.example.org", "b@support.example.org"))
        await comm.send_input({"type": "email.receive", "raw": b"Subject: hi\r\n\r\nbody"})
        assert await comm.receive_output() == {"type": "email.accept"}
        comm = ApplicationCommunicator(router, email_scope("nobody@x.org"))
        reply = await comm.receive_output()
        assert reply["type"] == "email.reject" and reply["code"] == 550 and reply["text"].startswith("5.1.1")

    run(main())
    assert seen == [("support", ["a@support.example.org", "b@support.example.org"], "email.receive")]


@pytest.mark.parametrize("support_answer, sales_answer, expected", [
    ({"type": "email.accept"}, {"type": "email.accept"}, {"type": "email.accept"}),
    ({"type": "email.accept"}, {"type": "email.reject", "code": 451, "text": "4.3.0 later"},
     {"type": "email.reject", "code": 451, "text": "4.3.0 later"}),
    ({"type": "email.reject", "code": 550, "text": "5.7.1 no"}, {"type": "email.reject", "code": 452, "text": "4.2.2 full"},
     {"type": "email.reject", "code": 452, "text": "4.2.2 full"}),
    ({"type": "email.reject", "code": 550, "text": "5.7.1 no"}, {"type": "email.accept"},
     {"type": "email.reject", "code": 550, "text": "5.7.1 no"}),
])
def test_email_multi_recipient_fan_out(support_answer: dict, sales_answer: dict, expected: dict) -> None:
    seen: list[Any] = []
    router = EmailToRouter([
        regex("@support", answering("support", support_answer, seen)),
        regex("@sales", answering("sales", sales_answer, seen)),
        default(answering("fallback", {"type": "email.accept"}, seen)),
    ])

    async def main() -> None:
        comm = ApplicationCommunicator(router, email_scope("x@support", "y@sales", "z@support"))
        await comm.send_input({"type": "email.receive", "raw": b"..."})
        assert await comm.receive_output() == expected
        await comm.wait()

    run(main())
    assert sorted(seen) == [("sales", ["y@sales"], "email.receive"),
                            ("support", ["x@support", "z@support"], "email.receive")]


def test_email_fan_out_propagates_app_failure() -> None:
    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("handler crashed")

    router = EmailToRouter([regex("@a", broken), regex("@b", answering("b"))])

    async def main() -> None:
        comm = ApplicationCommunicator(router, email_scope("x@a", "y@b"))
        await comm.send_input({"type": "email.receive", "raw": b""})
        with pytest.raises(RuntimeError, match="handler crashed"):
            await comm.wait()

    run(main())


def test_email_router_rejects_bad_routes() -> None:
    with pytest.raises(TypeError):
        EmailToRouter(["@x"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        EmailToRouter([default(answering("a")), default(answering("b"))])


def sms_app(name: str, seen: list[str]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(name)
    return app


def test_sms_from_router_longest_prefix() -> None:
    seen: list[str] = []
    router = SMSFromRouter([
        phone("+44", sms_app("uk", seen)),
        phone("+1", sms_app("nanp", seen)),
        phone("+1 (604)", sms_app("vancouver", seen)),
        phone("+447700", sms_app("uk-mobile-test", seen)),
    ])

    async def main() -> None:
        for number in ("+442071838750", "+16045551234", "+12125551234", "+447700900123", "+33142685300"):
            if await matches(router, {"type": "sms", "from": number}):
                await router({"type": "sms", "from": number}, None, None)
            else:
                seen.append("no route")
        with pytest.raises(NoRouteFound):
            await router({"type": "sms", "from": "+33142685300"}, None, None)

    run(main())
    assert seen == ["uk", "vancouver", "nanp", "uk-mobile-test", "no route"]


def test_sms_default_and_to_router() -> None:
    seen: list[str] = []
    from_router = SMSFromRouter([phone("+44", sms_app("uk", seen)), default(sms_app("other", seen))])
    to_router = SMSToRouter([phone("+15550100001", sms_app("support-line", seen)),
                             phone("+15550100002", sms_app("sales-line", seen))])

    async def main() -> None:
        await from_router({"type": "sms", "from": "+33142685300"}, None, None)
        await from_router({"type": "sms", "from": None}, None, None)
        await to_router({"type": "sms", "to": "+15550100002", "from": "+44"}, None, None)
        assert not await matches(to_router, {"type": "sms", "to": "+15550100003"})
        assert await matches(ProtocolTypeRouter({"sms": to_router}), {"type": "sms", "to": "+15550100001"})

    run(main())
    assert seen == ["other", "other", "sales-line"]
    for bad in ("44", "+44a", "", "+1234567890123456"):
        with pytest.raises(ValueError):
            phone(bad, sms_app("x", seen))
    with pytest.raises(ValueError):
        SMSFromRouter([phone("+44", sms_app("a", seen)), phone("+4 4", sms_app("b", seen))])


@pytest.mark.parametrize("topic_filter, name, expected", [
    ("sensors/+/temperature", "sensors/kitchen/temperature", True),
    ("sensors/+/temperature", "sensors/kitchen/humidity", False),
    ("sensors/+/temperature", "sensors/a/b/temperature", False),
    ("sensors/#", "sensors", True),
    ("sensors/#", "sensors/a/b", True),
    ("sensors/#", "sensorsx/a", False),
    ("#", "anything/at/all", True),
    ("#", "$SYS/broker/load", False),
    ("+/broker/load", "$SYS/broker/load", False),
    ("$SYS/#", "$SYS/broker/load", True),
    ("+", "a", True), ("+", "a/b", False), ("+/+", "/x", True), ("a/+", "a/", True),
    ("a/b", "a/b", True), ("a/b", "a/b/", False),
])
def test_topic_matching(topic_filter: str, name: str, expected: bool) -> None:
    assert topic_matches(topic_filter, name) is expected


@pytest.mark.parametrize("bad", ["", "a/#/b", "a#", "a/b+", "+a", "#/#"])
def test_bad_topic_filters(bad: str) -> None:
    with pytest.raises(ValueError):
        topic(bad, sms_app("x", []))


def test_topic_router_routes_publishes_and_connection_events() -> None:
    log: list[tuple[str, Any]] = []

    class Temperatures(AsyncConsumer):
        async def mqtt_publish(self, event: dict[str, Any]) -> None:
            log.append(("temps", (event["topic"], event["topic_route"]["args"])))

        async def mqtt_disconnect(self, event: dict[str, Any]) -> None:
            log.append(("temps", "disconnect"))
            raise StopConsumer()

    class Broker(AsyncConsumer):
        async def mqtt_connect(self, event: dict[str, Any]) -> None:
            await self.send({"type": "mqtt.accept"})

        async def mqtt_subscribe(self, event: dict[str, Any]) -> None:
            await self.send({"type": "mqtt.suback", "filters": event["filters"]})

        async def mqtt_publish(self, event: dict[str, Any]) -> None:
            log.append(("broker", (event["topic"], event["topic_route"]["args"])))

        async def mqtt_disconnect(self, event: dict[str, Any]) -> None:
            log.append(("broker", "disconnect"))
            raise StopConsumer()

    router = TopicRouter([topic("sensors/+/temperature", Temperatures.as_asgi()), topic("#", Broker.as_asgi())])

    async def main() -> None:
        assert await matches(router, {"type": "mqtt", "topic": "sensors/k/temperature"})
        assert not await matches(router, {"type": "mqtt", "topic": "$SYS/x"})
        assert await matches(router, {"type": "mqtt"})
        comm = ApplicationCommunicator(router, {"type": "mqtt", "client_id": "c1"})
        await comm.send_input({"type": "mqtt.connect"})
        assert await comm.receive_output() == {"type": "mqtt.accept"}
        await comm.send_input({"type": "mqtt.publish", "topic": "sensors/kitchen/temperature", "payload": b"21"})
        await comm.send_input({"type": "mqtt.publish", "topic": "lights/hall", "payload": b"on"})
        await comm.send_input({"type": "mqtt.publish", "topic": "$SYS/ignored", "payload": b""})
        await comm.send_input({"type": "mqtt.subscribe", "filters": ["a/#"]})
        assert await comm.receive_output() == {"type": "mqtt.suback", "filters": ["a/#"]}
        await comm.send_input({"type": "mqtt.disconnect"})
        await comm.wait()

    run(main())
    assert log[:2] == [("temps", ("sensors/kitchen/temperature", ["kitchen"])),
                       ("broker", ("lights/hall", ["lights/hall"]))]
    assert sorted(log[2:]) == [("broker", "disconnect"), ("temps", "disconnect")]


def test_topic_router_hands_events_over_one_at_a_time() -> None:
    """The router asks the server for the next event only after the previous one was handled."""
    handled: list[str] = []
    release = asyncio.Event

    async def main() -> None:
        gate = release()
        entered = release()

        class Slow(AsyncConsumer):
            async def mqtt_publish(self, event: dict[str, Any]) -> None:
                entered.set()
                await gate.wait()
                handled.append(event["topic"])

        pulled: list[str] = []
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for name in ("a", "b"):
            queue.put_nowait({"type": "mqtt.publish", "topic": name})

        async def receive() -> dict[str, Any]:
            event = await queue.get()
            pulled.append(event["topic"])
            return event

        task = asyncio.ensure_future(TopicRouter([topic("#", Slow.as_asgi())])({"type": "mqtt"}, receive, None))
        await entered.wait()  # the first event is being handled...
        for _ in range(20):  # ...and the router had many loop passes to pull the next: it must not
            await asyncio.sleep(0)
        assert pulled == ["a"] and handled == []
        gate.set()
        await until(lambda: len(handled) == 2, 5)
        assert handled == ["a", "b"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(main())
