"""The application-instance core: the receive queue, send validation, the client leaving, the end.

A ``RuleBasedStateMachine`` drives one :class:`ApplicationInstance` (with HTTP's message-order
machine) from both sides at once, as the adapter and the application would, against a model of
what each side must see; plain tests pin the endings and their logging.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger, LogLevel, globalLogPublisher

from gateway.asgi.instance import ApplicationInstance, ClientDisconnected, Ending
from gateway.metrics.stats import InstanceStats
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.http.asgi import ResponseState

HIGH = 10
DISCONNECT = {"type": "http.disconnect"}
START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}


class Instance(ApplicationInstance):
    """An instance whose adapter side records what it was asked to do."""

    __slots__ = ("actions", "endings", "paused")

    log = Logger(namespace="tests.instance")

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop, clock: MemoryReactorClock,
                 counters: InstanceStats, high_water: int | None = HIGH) -> None:
        super().__init__(app, {"type": "http", "path": "/"}, ResponseState(), loop, clock, counters, 5.0, high_water)
        self.actions: list[Any] = []
        self.endings: list[Ending] = []
        self.paused = False

    def app_perform(self, action: Any) -> None:
        self.actions.append(action)

    def pause_reading(self) -> None:
        assert not self.paused
        self.paused = True

    def resume_reading(self) -> None:
        assert self.paused
        self.paused = False

    def app_ended(self, ending: Ending) -> None:
        self.endings.append(ending)


class Driven:
    """An application whose every receive and send is one step the test asks for."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[tuple[str, Any, asyncio.Future[Any]]] = asyncio.Queue()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        while True:
            kind, message, reply = await self.requests.get()
            if kind == "end":
                reply.set_result(None)
                return
            try:
                result = await (receive() if kind == "receive" else send(message))
            except Exception as exc:  # handed to the test, which checks which one it was
                reply.set_result(exc)
            else:
                reply.set_result(result)


class InstanceMachine(RuleBasedStateMachine):
    """The core against a model: events come out in order (then the final one), refused messages
    change nothing, ``send()`` raises once the client left, reading pauses above the high-water
    mark and resumes at half of it."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = MemoryReactorClock()
        self.app = Driven()
        self.instance = Instance(self.app, self.loop, self.clock, InstanceStats())
        self.instance.start()
        self.queued: deque[tuple[dict[str, Any], int]] = deque()
        self.final: dict[str, Any] | None = None
        self.pending_receive: asyncio.Future[Any] | None = None
        self.model_state = "start"
        self.gone = False
        self.run()

    def run(self) -> None:
        for _ in range(5):
            self.loop.run_until_complete(asyncio.sleep(0))

    def ask(self, kind: str, message: Any = None) -> asyncio.Future[Any]:
        reply: asyncio.Future[Any] = self.loop.create_future()
        self.app.requests.put_nowait((kind, message, reply))
        self.run()
        return reply

    def queued_size(self) -> int:
        return sum(size for _, size in self.queued)

    @rule(size=st.integers(0, 8))
    def put(self, size: int) -> None:
        event = {"type": "http.request", "body": b"x" * size, "more_body": True}
        self.instance.put(event, size)
        self.run()
        if self.pending_receive is not None:
            assert self.pending_receive.done() and self.pending_receive.result() is event
            self.pending_receive = None
        else:
            self.queued.append((event, size))

    @precondition(lambda self: self.pending_receive is None)
    @rule()
    def receive(self) -> None:
        reply = self.ask("receive")
        if self.queued:
            event, _ = self.queued.popleft()
            assert reply.done() and reply.result() is event
        elif self.final is not None:
            assert reply.done() and reply.result() is self.final
        else:
            assert not reply.done()  # waits for the next event
            self.pending_receive = reply

    @precondition(lambda self: self.pending_receive is None)
    @rule(message=st.sampled_from([
        START, {"type": "http.response.body", "body": b"ok"}, {"type": "http.response.body", "body": b"o", "more_body": True},
        {"type": "http.response.trailers"}, {"type": "nonsense"}, {"status": 200},
    ]))
    def send(self, message: dict[str, Any]) -> None:
        before = (self.instance.order.state, len(self.instance.actions))  # type: ignore[attr-defined]
        reply = self.ask("send", message)
        assert reply.done()
        result = reply.result()
        kind = message.get("type")
        if self.gone:
            assert isinstance(result, ClientDisconnected)
            assert (self.instance.order.state, len(self.instance.actions)) == before  # type: ignore[attr-defined]
            return
        valid = (self.model_state == "start" and kind == "http.response.start") or (
            self.model_state == "body" and kind == "http.response.body")
        if not valid:
            assert isinstance(result, LocalProtocolError)
            assert (self.instance.order.state, len(self.instance.actions)) == before  # type: ignore[attr-defined]
            return
        assert result is None and len(self.instance.actions) == before[1] + 1
        if kind == "http.response.start":
            self.model_state = "body"
        elif not message.get("more_body"):
            self.model_state = "done"

    @rule()
    def set_final(self) -> None:
        self.final = {"type": "http.disconnect", "n": len(self.queued)}
        self.instance.set_final(self.final)
        self.run()
        if self.pending_receive is not None and not self.queued:
            assert self.pending_receive.done() and self.pending_receive.result() is self.final
            self.pending_receive = None

    @rule()
    def client_leaves(self) -> None:
        if not self.gone:
            self.final = DISCONNECT  # the disconnect event is what receive() ends with
        self.gone = True
        self.instance.client_left(DISCONNECT)
        self.run()
        if self.pending_receive is not None:
            assert self.pending_receive.done()
            self.pending_receive = None

    @invariant()
    def flow_control(self) -> None:
        size = self.queued_size()
        if size > HIGH and not self.gone:
            assert self.instance.paused
        if size <= HIGH // 2:
            assert not self.instance.paused or self.gone
        assert self.instance.queued == size

    def teardown(self) -> None:
        if self.pending_receive is None:
            self.ask("end")
        self.instance.cancel()
        self.run()
        assert len(self.instance.endings) == 1
        self.loop.close()


InstanceMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
test_instance_core = InstanceMachine.TestCase


# -- how an instance ends --------------------------------------------------------------------------


@pytest.fixture
def logged() -> Any:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def end_with(app: Any, *, leave: bool = False) -> tuple[Instance, InstanceStats]:
    loop = asyncio.new_event_loop()
    counters = InstanceStats()
    instance = Instance(app, loop, MemoryReactorClock(), counters)
    instance.start()
    if leave:
        instance.client_left(DISCONNECT)
    for _ in range(5):
        loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    return instance, counters


def errors(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("log_level") in (LogLevel.error, LogLevel.critical)]


def test_an_exception_is_one_error_logged_and_counted(logged: list[dict[str, Any]]) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    instance, counters = end_with(app)
    assert instance.endings == [Ending.FAILED] and (counters.errors, counters.client_left) == (1, 0)
    [event] = errors(logged)
    assert event["log_failure"].value.args == ("boom",)


def test_returning_a_value_is_an_error(logged: list[dict[str, Any]]) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> int:
        return 42

    instance, counters = end_with(app)
    assert instance.endings == [Ending.FAILED] and counters.errors == 1 and len(errors(logged)) == 1


def test_ending_on_the_client_disconnected_send_raised_is_not_an_error(logged: list[dict[str, Any]]) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert await receive() == DISCONNECT
        await send(START)  # raises ClientDisconnected: the application lets it end it

    instance, counters = end_with(app, leave=True)
    assert instance.endings == [Ending.CLIENT_LEFT]
    assert (counters.errors, counters.client_left) == (0, 1) and errors(logged) == []


def test_a_client_disconnected_of_the_applications_own_is_an_error(logged: list[dict[str, Any]]) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ClientDisconnected("not from send()")

    instance, counters = end_with(app)
    assert instance.endings == [Ending.FAILED] and counters.errors == 1


def test_an_application_still_running_after_its_client_left_is_cancelled_at_close_timeout() -> None:
    loop = asyncio.new_event_loop()
    clock = MemoryReactorClock()
    counters = InstanceStats()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.Event().wait()

    instance = Instance(app, loop, clock, counters)
    instance.start()
    loop.run_until_complete(asyncio.sleep(0))
    instance.client_left(DISCONNECT)
    for _ in range(3):
        loop.run_until_complete(asyncio.sleep(0))
    clock.advance(4.9)
    loop.run_until_complete(asyncio.sleep(0))
    assert instance.ended is None
    clock.advance(0.2)
    for _ in range(3):
        loop.run_until_complete(asyncio.sleep(0))
    assert instance.endings == [Ending.CANCELLED] and counters.timeouts == 1
    assert clock.getDelayedCalls() == []
    loop.close()


def test_an_application_that_ends_on_the_disconnect_arms_no_timer() -> None:
    loop = asyncio.new_event_loop()
    clock = MemoryReactorClock()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    instance = Instance(app, loop, clock, InstanceStats())
    instance.start()
    loop.run_until_complete(asyncio.sleep(0))
    instance.client_left(DISCONNECT)
    for _ in range(3):
        loop.run_until_complete(asyncio.sleep(0))
    assert instance.endings == [Ending.RETURNED] and clock.getDelayedCalls() == []
    loop.close()
