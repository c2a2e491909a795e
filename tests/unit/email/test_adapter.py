"""``EmailInstance``: the application instance of one message (event order, answers, timers,
email.send), on a fake clock and a real asyncio loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from gateway.metrics.stats import InstanceStats
from gateway.protocols.deadlines import Deadlines
from gateway.protocols.email.adapter import EmailInstance
from gateway.protocols.email.asgi import ACCEPTED, FAILED, REJECTED, Outcome
from gateway.protocols.errors import LocalProtocolError


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.pending: list[defer.Deferred[Any]] = []

    def send(self, message: dict[str, Any]) -> defer.Deferred[Any]:
        if "to" not in message:
            raise LocalProtocolError("email.send needs at least one recipient")
        self.sent.append(message)
        d: defer.Deferred[Any] = defer.Deferred()
        self.pending.append(d)
        return d


class Run:
    def __init__(self, app: Any, *, sender: Any = None, answer_timeout: float = 10.0, close_timeout: float = 2.0) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = MemoryReactorClock()
        self.outcomes: list[Outcome] = []
        self.counters = InstanceStats()
        self.deadlines = Deadlines(self.clock, answer_timeout)
        self.instance = EmailInstance(app, {"type": "email"}, b"raw bytes", receiver=self, loop=self.loop,  # type: ignore[arg-type]
                                      clock=self.clock, counters=self.counters,
                                      deadlines=self.deadlines,
                                      close_timeout=close_timeout, sender=sender)
        self.instance.start()
        self.spin()

    def answered(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    @property
    def finished(self) -> bool:
        return self.instance.ended is not None

    def spin(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            self.loop.run_until_complete(asyncio.sleep(0))

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.spin()

    def close(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.spin(3)
        self.loop.close()


@pytest.fixture
def run():
    runs: list[Run] = []

    def make(app: Any, **kwargs: Any) -> Run:
        r = Run(app, **kwargs)
        runs.append(r)
        return r

    yield make
    for r in runs:
        r.close()


def test_receive_gives_the_message_then_disconnect_after_the_answer(run):
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(await receive())
        await send({"type": "email.accept"})
        seen.append(await receive())

    r = run(app)
    assert seen == [{"type": "email.receive", "raw": b"raw bytes"}, {"type": "email.disconnect"}]
    assert [o.kind for o in r.outcomes] == [ACCEPTED]
    assert r.finished and len(r.deadlines) == 0  # the answer deadline is cleared
    r.advance(10.0)  # the listener's one timer finds nothing due
    assert not r.clock.getDelayedCalls()


def test_a_second_answer_is_an_error(run):
    errors: list[Exception] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "email.reject", "code": 451, "text": "4.3.0 later"})
        try:
            await send({"type": "email.accept"})
        except LocalProtocolError as exc:
            errors.append(exc)

    r = run(app)
    assert len(errors) == 1
    (outcome,) = r.outcomes
    assert outcome.kind == REJECTED and outcome.reply.code == 451 and not outcome.permanent


@pytest.mark.parametrize("message", [
    {"type": "email.reject", "code": 250},
    {"type": "email.reject", "code": "550"},
    {"type": "email.reject", "code": 550, "text": b"bytes"},
    {"type": "email.accept", "text": 3},
    {"type": "http.response.start"},
])
def test_malformed_messages_raise_in_the_application(run, message):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send(message)

    r = run(app)
    (outcome,) = r.outcomes
    assert outcome.kind == FAILED and "LocalProtocolError" in outcome.reason


def test_timeout_fails_the_message_then_the_instance_is_cancelled(run):
    cancelled: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    r = run(app, answer_timeout=10.0, close_timeout=2.0)
    r.advance(9.9)
    assert r.outcomes == []
    r.advance(0.2)
    assert [o.kind for o in r.outcomes] == [FAILED] and "no answer within 10s" in r.outcomes[0].reason
    assert not cancelled
    r.advance(2.1)
    assert cancelled == [True]


def test_a_late_answer_after_the_timeout_is_ignored(run):
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await gate.wait()
        await send({"type": "email.accept"})

    r = run(app, answer_timeout=1.0)
    r.advance(1.5)
    r.loop.call_soon(gate.set)
    r.spin()
    assert [o.kind for o in r.outcomes] == [FAILED]
    assert r.finished


def test_send_results_come_back_and_keep_the_instance_alive(run):
    sender = FakeSender()
    events: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "email.accept"})
        await send({"type": "email.send", "id": "a", "to": "x@example.org"})
        await send({"type": "email.send", "to": "y@example.org"})
        while True:
            event = await receive()
            events.append(event)
            if event["type"] == "email.disconnect":
                return

    r = run(app, sender=sender, answer_timeout=5.0, close_timeout=1.0)
    r.advance(30.0)  # past both timers: sends in flight keep the instance
    assert not r.finished and len(sender.sent) == 2
    sender.pending[1].callback({"ok": False, "code": 550, "text": "no", "temporary": False, "refused": {}})
    r.spin()
    sender.pending[0].callback({"ok": True, "code": 250, "text": "sent", "temporary": False, "refused": {}})
    r.spin()
    assert [e["type"] for e in events] == ["email.send.result", "email.send.result", "email.disconnect"]
    assert events[0]["ok"] is False and len(events[0]["id"]) == 32  # a generated id
    assert events[1]["id"] == "a" and events[1]["ok"] is True
    assert r.finished


def test_a_malformed_send_raises_and_a_failing_sender_is_reported(run):
    sender = FakeSender()
    events: list[Any] = []
    errors: list[Exception] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        try:
            await send({"type": "email.send", "subject": "no recipient"})
        except LocalProtocolError as exc:
            errors.append(exc)
        await send({"type": "email.send", "id": "z", "to": "x@example.org"})
        await send({"type": "email.accept"})
        events.append(await receive())

    r = run(app, sender=sender)
    sender.pending[0].errback(RuntimeError("bug in the sender"))
    r.spin()
    assert len(errors) == 1
    assert events[0]["id"] == "z" and events[0]["ok"] is False and events[0]["temporary"] is True
    assert "bug in the sender" in events[0]["text"]


def test_cancel_fails_an_unanswered_message(run):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(3600)

    r = run(app)
    r.instance.give_up("cancelled: the listener is closing")
    r.spin()
    assert [o.kind for o in r.outcomes] == [FAILED] and r.finished


def test_disconnect_comes_once_then_receive_waits(run):
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "email.accept"})
        seen.append(await receive())
        seen.append(await receive())  # nothing more will come: waits until cancelled

    r = run(app, answer_timeout=1.0, close_timeout=1.0)
    assert seen == [{"type": "email.disconnect"}] and not r.finished
    r.advance(1.5)  # the answer deadline: a grace period starts
    assert not r.finished
    r.advance(1.5)
    assert r.finished and r.instance.task.cancelled()
