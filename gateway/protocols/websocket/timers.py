# -*- test-case-name: tests.unit.websocket.test_adapter -*-
"""The one timer of a WebSocket connection, moved lazily (no scan over all connections).

Each connection has at most one ``callLater`` at a time, armed for its next deadline: during the
opening handshake the application's accept timeout and the handshake timeout; once open the next
idle ping (or the pong deadline) and the maximum lifetime; while closing the close timeout; after
the connection is gone, the application's close timeout. When the timer fires early (the deadline
moved later, e.g. because data arrived) it is re-armed; it is only replaced to fire earlier.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from gateway.protocols.websocket.asgi import CONNECTING

log = Logger(namespace="gateway.websocket")

_HANDSHAKE = 0
_OPEN = 1
_CLOSING = 2
_LOST = 3


class TimerMixin:
    """Deadlines of :class:`~gateway.protocols.websocket.adapter.WebSocketProtocol` (which holds the slots)."""

    settings: Any
    clock: Any
    core: Any
    state: int
    transport: Any
    _timer: Any
    _due: float | None
    _phase: int
    _t0: float
    last_rx: float
    _ping_sent: float
    _task: Any
    _reading_paused: bool

    if TYPE_CHECKING:  # provided by the protocol
        def _refuse(self, status: int, reason: str) -> None: ...
        def abort(self) -> None: ...
        def sendCloseFrame(self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False) -> None: ...
        def sendPing(self, payload: bytes | None = None) -> None: ...

    def timer_init(self) -> None:
        self._timer = None
        self._due = None
        self._phase = _HANDSHAKE
        self._t0 = 0.0
        self.last_rx = 0.0
        self._ping_sent = 0.0

    # -- arming, per phase ------------------------------------------------------------------------

    def arm_handshake(self) -> None:
        """The upgrade request is in: the application must answer, the handshake must end."""
        settings = self.settings
        self._phase = _HANDSHAKE
        self._t0 = now = self.clock()
        self._set_due(now + min(settings.accept_timeout, settings.handshake_timeout))

    def arm_open(self) -> None:
        """The handshake completed: idle pings and the maximum lifetime."""
        self._phase = _OPEN
        self._t0 = self.last_rx = self.clock()
        due = self._open_due()
        if due is None:
            self.timer_stop()
        else:
            self._set_due(due)

    def arm_closing(self) -> None:
        """Our close frame is out (or the connection is being dropped): the peer has close_timeout."""
        if self._phase >= _CLOSING:
            return
        self._phase = _CLOSING
        self._set_due(self.clock() + self.settings.close_timeout)

    def arm_application_close(self) -> None:
        """The connection is gone but the application runs on: it has application_close_timeout."""
        self._phase = _LOST
        self._set_due(self.clock() + self.settings.application_close_timeout)

    def timer_stop(self) -> None:
        """No more deadlines."""
        self._due = None
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    # -- the timer --------------------------------------------------------------------------------

    def _set_due(self, when: float) -> None:
        self._due = when
        timer = self._timer
        if timer is not None:
            if timer.getTime() <= when:
                return  # fires first and moves itself on (lazily)
            # Earlier: a new call rather than reset(), which is O(pending calls) in Twisted's
            # reactor (_moveCallLaterSooner searches its heap); a cancel is O(1).
            timer.cancel()
        self._timer = self.settings.reactor.callLater(max(0.0, when - self.clock()), self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        due = self._due
        if due is None:
            return
        now = self.clock()
        if now < due:
            self._timer = self.settings.reactor.callLater(due - now, self._timer_fired)
            return
        self._due = None
        phase = self._phase
        if phase == _HANDSHAKE:
            self._handshake_deadline(now)
        elif phase == _OPEN:
            self._open_deadline(now)
        elif phase == _CLOSING:
            # RFC 6455 7.1.1: the server closes the TCP connection; the client had its chance.
            self.abort()
        else:
            task = self._task
            if task is not None and not task.done():
                log.warn("WebSocket application was still running {seconds}s after its client left; cancelled",  # noqa: G010
                         seconds=self.settings.application_close_timeout)
                self.settings.stats.ws_instances.timeouts += 1
                task.cancel()

    def _handshake_deadline(self, now: float) -> None:
        settings = self.settings
        if self.state != 1:  # no longer opening (autobahn's STATE_CONNECTING)
            return
        accept_passed = now >= self._t0 + settings.accept_timeout
        if self.core.state == CONNECTING and (accept_passed or now >= self._t0 + settings.handshake_timeout):
            log.info("WebSocket application did not answer websocket.connect within {seconds}s",
                     seconds=min(settings.accept_timeout, settings.handshake_timeout))
            settings.stats.ws_instances.timeouts += 1
            self.core.close_sending()
            self._refuse(503, "Service Unavailable")
        elif now >= self._t0 + settings.handshake_timeout:
            log.info("WebSocket handshake (denial response) not complete after {seconds}s", seconds=settings.handshake_timeout)
            self.abort()
        else:
            self._set_due(self._t0 + settings.handshake_timeout)

    def _open_deadline(self, now: float) -> None:
        settings = self.settings
        lifetime = settings.max_lifetime
        if lifetime is not None and now >= self._t0 + lifetime:
            self.sendCloseFrame(1001, b"maximum lifetime reached")
            return
        interval = settings.ping_interval
        if interval is not None:
            if self._reading_paused:
                # We hold reading (the application is behind): a pong would wait behind the
                # data we have not read, so the client counts as alive.
                self.last_rx = now
            sent = self._ping_sent
            if sent and self.last_rx >= sent:
                self._ping_sent = sent = 0.0  # answered (a pong, or any data)
            if sent:
                if now >= sent + settings.ping_timeout:
                    # The peer is gone or stuck: RFC 6455 7.1.7, fail the connection.
                    self.sendCloseFrame(1011, b"ping timeout")
                    self.abort()
                    return
            elif now >= self.last_rx + interval:
                self.sendPing()  # RFC 6455 5.5.2
                self._ping_sent = now
        due = self._open_due()
        if due is not None:
            self._set_due(due)

    def _open_due(self) -> float | None:
        settings = self.settings
        due = None
        if settings.ping_interval is not None:
            due = self._ping_sent + settings.ping_timeout if self._ping_sent else self.last_rx + settings.ping_interval
        if settings.max_lifetime is not None:
            end = self._t0 + settings.max_lifetime
            due = end if due is None else min(due, end)
        return due
