"""Rejected input is logged a few times per listener and reason, then summarised."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent

from gateway.logs import AutobahnLog, RejectionLimits, RejectionLog, autobahn_log, set_level


def capture() -> tuple[Logger, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    return Logger(namespace="test", observer=events.append), events


def texts(events: list[dict[str, Any]]) -> list[str]:
    return [formatEvent(event) for event in events]


def test_a_flood_gives_the_first_lines_then_one_summary_per_period() -> None:
    clock, (logger, events) = Clock(), capture()
    rejections = RejectionLog("web", clock, logger, RejectionLimits(lines=3, period=10.0))
    allowed = [rejections.allow("bad request", LogLevel.info) for _ in range(1000)]
    assert allowed[:3] == [True, True, True] and not any(allowed[3:])
    assert rejections.summaries_pending() == 997
    assert events == []  # the summary waits for the end of the window
    clock.advance(9.9)
    assert events == []
    clock.advance(0.1)
    assert texts(events) == ["web: 997 more rejected (bad request) in the last 10 s"]
    assert events[0]["log_level"] is LogLevel.info and events[0]["log_namespace"] == "test"
    # The next window logs its first lines again, and a window without excess has no summary.
    assert [rejections.allow("bad request") for _ in range(3)] == [True, True, True]
    clock.advance(10.0)
    assert len(events) == 1 and clock.getDelayedCalls() == []


def test_reasons_and_listeners_are_counted_apart() -> None:
    clock, (logger, events) = Clock(), capture()
    limits = RejectionLimits(lines=1, period=5.0)
    web, sms = RejectionLog("web", clock, logger, limits), RejectionLog("sms", clock, logger, limits)
    assert web.allow("a") and web.allow("b") and sms.allow("a")
    assert not web.allow("a") and not web.allow("a") and not sms.allow("a")
    clock.advance(5.0)
    assert sorted(texts(events)) == ["sms: 1 more rejected (a) in the last 5 s",
                                     "web: 2 more rejected (a) in the last 5 s"]


def test_the_summary_has_the_level_of_the_lines() -> None:
    clock, (logger, events) = Clock(), capture()
    rejections = RejectionLog("mail", clock, logger, RejectionLimits(lines=0, period=1.0))
    assert not rejections.allow("bad command", LogLevel.warn)  # lines: 0 logs summaries only
    clock.advance(1.0)
    assert texts(events) == ["mail: 1 more rejected (bad command) in the last 1 s"]
    assert events[0]["log_level"] is LogLevel.warn


def test_reasons_are_bounded() -> None:
    clock, (logger, events) = Clock(), capture()
    rejections = RejectionLog("web", clock, logger, RejectionLimits(lines=1, period=1.0))
    for n in range(100):
        rejections.allow(f"reason {n}")
        rejections.allow(f"reason {n}")
    assert len(clock.getDelayedCalls()) == 33  # 32 reasons and "other"
    clock.advance(1.0)
    assert "web: 135 more rejected (other) in the last 1 s" in texts(events)


def test_flush_writes_pending_summaries_now() -> None:
    clock, (logger, events) = Clock(), capture()
    rejections = RejectionLog("web", clock, logger, RejectionLimits(lines=1, period=60.0))
    for _ in range(5):
        rejections.allow("x")
    rejections.flush()
    assert texts(events) == ["web: 4 more rejected (x) in the last 60 s"]
    assert clock.getDelayedCalls() == []


def test_limits_are_read_when_a_window_opens() -> None:
    clock, (logger, _) = Clock(), capture()
    limits = RejectionLimits(lines=1, period=1.0)
    rejections = RejectionLog("web", clock, logger, limits)
    assert rejections.allow("x") and not rejections.allow("x")
    limits.lines = 3  # a reload
    clock.advance(1.0)
    assert [rejections.allow("x") for _ in range(4)] == [True, True, True, False]


# -- autobahn -------------------------------------------------------------------------------------

def autobahn(lines: int = 2) -> tuple[AutobahnLog, Clock, list[dict[str, Any]]]:
    clock, (logger, events) = Clock(), capture()
    rejections = RejectionLog("web", clock, logger, RejectionLimits(lines=lines, period=10.0))
    log = autobahn_log(rejections)
    log.logger = logger
    return log, clock, events


def test_autobahn_protocol_errors_are_rejections() -> None:
    log, clock, events = autobahn()
    for _ in range(50):
        # What autobahn's WebSocketProtocol._fail_connection writes, as it writes it.
        log.warn('failing WebSocket connection (code={code}): "{reason}"', code=1002,
                 reason="unmasked client-to-server frame")
    assert texts(events) == ['web: failing WebSocket connection (code=1002): "unmasked client-to-server frame"'] * 2
    assert all(event["log_level"] is LogLevel.info for event in events)
    clock.advance(10.0)
    assert texts(events)[-1] == "web: 48 more rejected (WebSocket protocol error) in the last 10 s"


def test_autobahn_drop_lines_and_debug_chatter_are_debug_only() -> None:
    log, _, events = autobahn()
    log.warn("dropping connection to peer {peer} with abort={abort}: {reason}", peer=None, abort=False, reason=None)
    log.debug("{request}", request="GET / HTTP/1.1")
    log.trace("x")
    assert events == []
    set_level("debug")
    try:
        log.warn("dropping connection to peer {peer} with abort={abort}: {reason}", peer=None, abort=False, reason=None)
        log.debug("{request}", request="GET /")
    finally:
        set_level("info")
    assert [event["log_level"] for event in events] == [LogLevel.debug, LogLevel.debug]


def test_autobahn_errors_pass_through() -> None:
    log, _, events = autobahn()
    log.error("Firing signal 'message' failed: {fail}", fail="boom")
    log.warn("Auto ping/pong: received non-pending pong")
    try:
        raise ValueError("bad")
    except ValueError:
        log.failure("Unhandled")
    assert texts(events)[:2] == ["Firing signal 'message' failed: boom", "Auto ping/pong: received non-pending pong"]
    assert events[1]["log_level"] is LogLevel.warn
    assert events[2]["log_failure"].value.args == ("bad",)


def test_autobahn_protocol_class_takes_the_stand_in() -> None:
    from autobahn.twisted.websocket import WebSocketServerProtocol

    log, _, events = autobahn(lines=1)
    sent: list[bytes] = []
    cls = type("P", (WebSocketServerProtocol,), {
        "log": log, "sendData": lambda self, data, sync=False, chopsize=None: sent.append(data),
        "_closeConnection": lambda self, abort=False: None, "unregisterProducer": lambda self: None})
    protocol = cls()
    protocol.state = WebSocketServerProtocol.STATE_CONNECTING
    protocol.is_closed = Deferred()
    protocol.wasClean = False
    assert protocol.log is log
    # What autobahn does for a refused handshake: its line, the answer, then the "dropping" line.
    protocol.failHandshake("origin not allowed", 403)
    assert sent and sent[0].startswith(b"HTTP/1.1 403 ")
    assert texts(events) == ["web: failing WebSocket opening handshake ('origin not allowed')"]
