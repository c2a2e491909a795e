"""One application instance per scope: the core every protocol's adapter drives.

An :class:`ApplicationInstance` runs ``app(scope, receive, send)`` as an asyncio task watched by a
done-callback (nothing polls), and owns everything the application's side of a scope needs that
is the same in every protocol:

* the **receive queue** and its waiter: the adapter :meth:`~ApplicationInstance.put` s events, a
  waiting ``receive()`` gets the next one handed over directly; the queue is bounded by a
  high-water mark (in bytes, events, whatever the adapter counts) above which the adapter is
  asked to stop reading (backpressure) until the application has caught up to half of it;
* the **send side**: every message is checked by the protocol's *message-order state machine*
  (a pure object, :class:`MessageOrder`) and the action it returns is performed by the
  protocol's subclass (:meth:`~ApplicationInstance.app_perform`); an action that has to wait for
  a slow client returns an awaitable;
* **the client leaving**: :meth:`~ApplicationInstance.client_left` makes ``send()`` raise
  :class:`ClientDisconnected` (ASGI www 2.4), wakes a waiting ``receive()`` with the protocol's
  disconnect event, and gives the application ``close_timeout`` seconds (on the reactor's clock)
  before it is cancelled;
* **the end**: one place decides what an ending was (:class:`Ending`), logs real application
  errors once at ERROR with a traceback, counts them, and hands the ending to the adapter's
  failure hook (:meth:`~ApplicationInstance.app_ended`), which gives the protocol's answer (HTTP 500 or an
  abort, WebSocket 403 or 1011, MQTT reason 0x80, SMTP 451, an SMS provider's retry status).
  An application that ends with the very :class:`ClientDisconnected` its ``send()`` raised (the
  client left, or the connection is closing) is not an error: that is logged at debug level and
  counted as such.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from gateway.asgi.app import ASGIApp, Message, Scope

__all__ = [
    "ApplicationInstance", "ClientDisconnected", "Clock", "Ending", "InstanceCounters", "MessageOrder", "failure_of",
]


class ClientDisconnected(OSError):
    """Raised by ``send()`` once the peer has gone (ASGI www 2.4 asks for an ``OSError``)."""


class Ending(enum.Enum):
    """How an application instance ended."""

    #: It returned ``None``.
    RETURNED = "returned"
    #: It raised, or returned something other than ``None``: a real application error.
    FAILED = "failed"
    #: It ended with the :class:`ClientDisconnected` its ``send()`` raised after the client left.
    CLIENT_LEFT = "client left"
    #: It was cancelled (it outlived ``close_timeout``, or its adapter cancelled it).
    CANCELLED = "cancelled"


# The endings as module globals: an Enum member looked up on its class costs several times a
# global load, and one is looked up per instance.
RETURNED = Ending.RETURNED
FAILED = Ending.FAILED
CLIENT_LEFT = Ending.CLIENT_LEFT
CANCELLED = Ending.CANCELLED


class Clock(Protocol):
    """The part of the reactor an instance needs (``MemoryReactorClock`` in tests)."""

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> IDelayedCall: ...

    def seconds(self) -> float: ...


class InstanceCounters(Protocol):
    """Where an instance counts its troubles (:class:`gateway.metrics.stats.InstanceStats`)."""

    errors: int
    timeouts: int
    client_left: int


class MessageOrder(Protocol):
    """A protocol's rules for what the application may send, and when: a pure state machine.

    ``app_send`` checks one message against the current state, moves to the next state, and
    returns the action the adapter performs (what that is, is between the machine and its
    adapter). It raises :class:`~gateway.protocols.errors.LocalProtocolError` for a message that is
    malformed, unknown or out of order (changing nothing), and :class:`ClientDisconnected` once
    nothing more may be sent because the connection is closed.
    """

    def app_send(self, message: Message) -> Any: ...


def failure_of(exc: BaseException) -> Failure:
    """A Twisted ``Failure`` of an exception that was raised (keeps its traceback for the log)."""
    return Failure(exc, type(exc), exc.__traceback__)


class ApplicationInstance:
    """One running application instance (see the module documentation).

    Each protocol subclasses it once, for the adapter's side of one scope, and overrides the
    hooks below (:meth:`app_perform`, :meth:`app_ended`, :meth:`describe`, and where needed
    :meth:`app_receiving`, :meth:`pause_reading`, :meth:`resume_reading`); ``log`` is the
    protocol's logger. A subclass holds the connection it serves, never the reverse of a cycle
    it cannot break: an HTTP exchange is garbage as soon as its response is complete.

    Args:
        app: the ASGI 3 application.
        scope: its scope.
        order: the protocol's message-order state machine for this scope.
        loop: the asyncio loop the instance runs on.
        clock: the reactor (timers).
        counters: where errors, timeouts and clients that left are counted.
        close_timeout: seconds an instance may run on after its client left (or after
            :meth:`close_after` was called) before it is cancelled.
        high_water: queued size above which reading pauses (None: never).
    """

    __slots__ = (
        "app", "scope", "order", "loop", "clock", "counters", "close_timeout", "high_water",
        "queue", "queued", "reading_paused", "waiter", "task", "gone", "final", "ended", "left_error", "_close_timer",
    )

    log = Logger(namespace="gateway.asgi")
    #: Whether ``receive()`` calls :meth:`app_receiving` (a subclass that needs it says so).
    notify_receiving = False

    def __init__(
        self,
        app: ASGIApp,
        scope: Scope,
        order: MessageOrder,
        loop: asyncio.AbstractEventLoop,
        clock: Clock,
        counters: InstanceCounters,
        close_timeout: float,
        high_water: int | None = None,
    ) -> None:
        self.app = app
        self.scope = scope
        self.order = order
        self.loop = loop
        self.clock = clock
        self.counters = counters
        self.close_timeout = close_timeout
        self.high_water = high_water
        #: Events not yet received, each with the size it counts for.
        self.queue: deque[tuple[Message, int]] = deque()
        self.queued = 0
        self.reading_paused = False
        #: The future a waiting ``receive()`` awaits; once it has a result (an event handed over
        #: directly), it stays here until ``receive()`` has taken it.
        self.waiter: asyncio.Future[Message] | None = None
        self.task: asyncio.Task[Any] | None = None
        #: The client left: ``send()`` raises :class:`ClientDisconnected`.
        self.gone = False
        #: What ``receive()`` returns, every time, once the queue is empty (a disconnect event).
        self.final: Message | None = None
        #: How the instance ended, once it has.
        self.ended: Ending | None = None
        #: The :class:`ClientDisconnected` ``send()`` raised last (nothing may be sent any more).
        self.left_error: ClientDisconnected | None = None
        self._close_timer: IDelayedCall | None = None

    # -- hooks for the protocol's subclass ---------------------------------------------------

    def app_perform(self, action: Any) -> Awaitable[None] | None:
        """Carry out an action the state machine returned for a sent message.

        Returns an awaitable when ``send()`` has to wait (the client reads slowly), else None.
        """
        raise NotImplementedError

    def app_receiving(self) -> None:
        """The application asks for its next event (so it handled the previous one); called only
        when the class sets :attr:`notify_receiving`."""

    def pause_reading(self) -> None:
        """The receive queue passed its high-water mark: stop reading from the client."""

    def resume_reading(self) -> None:
        """The application caught up (half the high-water mark): read again."""

    def app_ended(self, ending: Ending) -> None:
        """The instance ended (already logged and counted): give the protocol's answer."""

    def describe(self) -> str:
        """What this instance serves, for log lines ("GET /path", "MQTT client c1")."""
        return str(self.scope.get("type"))

    # -- driven by the adapter ---------------------------------------------------------------

    def start(self) -> None:
        """Start the application (its first step runs on the next loop pass)."""
        # An ASGI application returns a coroutine (asgiref's types say Awaitable).
        task = self.task = self.loop.create_task(self.app(self.scope, self.receive, self.send))  # type: ignore[arg-type]
        task.add_done_callback(self._done)

    def put(self, message: Message, size: int = 1) -> None:
        """Queue an event for ``receive()`` (``size`` counts against the high-water mark)."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(message)
            return
        self.queue.append((message, size))
        self.queued += size
        high = self.high_water
        if high is not None and self.queued > high and not self.reading_paused and not self.gone:
            self.reading_paused = True
            self.pause_reading()

    def last_queued(self) -> Message | None:
        """The last event put that the application has not seen yet (the adapter may still
        amend it), or None."""
        queue = self.queue
        if queue:
            return queue[-1][0]
        waiter = self.waiter
        if waiter is not None and waiter.done() and not waiter.cancelled():
            return waiter.result()
        return None

    def set_final(self, message: Message) -> None:
        """From now on ``receive()`` returns ``message`` whenever the queue is empty."""
        self.final = message
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(message)

    def client_left(self, final: Message | None = None) -> None:
        """The client is gone: ``send()`` raises from now on, ``receive()`` ends with ``final``
        (if given) and the application has ``close_timeout`` seconds left."""
        if self.gone:
            return
        self.gone = True
        if final is not None:
            self.set_final(final)
        task = self.task
        if task is not None and not task.done():
            # Most applications end on the disconnect event within a loop pass; only one still
            # running after that gets a timer (a reactor timer costs ten times a loop callback).
            self.loop.call_soon(self._arm_close_timer)

    def _arm_close_timer(self) -> None:
        task = self.task
        if task is not None and not task.done():
            self.close_after()

    def close_after(self, seconds: float | None = None, since: str = "its client left") -> None:
        """Cancel the application if it still runs ``seconds`` (default ``close_timeout``) from now.

        ``since`` says what the time is counted from, for the log line if it comes to that.
        """
        if self.ended is not None or self.task is None:
            return
        timer = self._close_timer
        if timer is not None and timer.active():
            timer.cancel()
        delay = self.close_timeout if seconds is None else seconds
        self._close_timer = self.clock.callLater(delay, self._expired, delay, since)

    def cancel(self) -> None:
        """Cancel the application now (the adapter gives up on it)."""
        task = self.task
        if task is not None and not task.done():
            task.cancel()

    @property
    def running(self) -> bool:
        """Whether the application has started and not yet ended."""
        return self.task is not None and self.ended is None

    # -- the application's receive and send -----------------------------------------------

    async def receive(self) -> Message:
        """ASGI ``receive``: the queued events in order, then the final event (if any)."""
        if self.notify_receiving:
            self.app_receiving()
        queue = self.queue
        if queue:
            message, size = queue.popleft()
            if size:
                self.queued -= size
                if self.reading_paused and self.queued <= (self.high_water or 0) // 2:
                    self.reading_paused = False
                    if not self.gone:
                        self.resume_reading()
            return message
        final = self.final
        if final is not None:
            return final
        waiter = self.waiter = self.loop.create_future()
        try:
            return await waiter
        finally:
            self.waiter = None

    async def send(self, message: Message) -> None:
        """ASGI ``send``: checked by the state machine, then performed by the adapter.

        Raises:
            ClientDisconnected: the client left (or the connection is closing): nothing may be
                sent. An application that lets this very exception end it ends quietly.
            LocalProtocolError: the message is malformed, unknown or out of order.
        """
        if self.gone:
            raise self._left()
        try:
            waiting = self.app_perform(self.order.app_send(message))
        except ClientDisconnected as exc:
            self.left_error = exc
            raise
        if waiting is not None:
            await waiting
            if self.gone:
                raise self._left()

    def _left(self) -> ClientDisconnected:
        exc = self.left_error = ClientDisconnected("the client disconnected")
        return exc

    # -- the end ---------------------------------------------------------------------------

    def _expired(self, seconds: float, since: str) -> None:
        self._close_timer = None
        self.time_out(seconds, since)

    def time_out(self, seconds: float, since: str) -> None:
        """The application had its time (``seconds`` after ``since``): count a timeout, say so,
        and cancel it (if it still runs)."""
        task = self.task
        if task is not None and not task.done():
            self.counters.timeouts += 1
            self.log.warn("Application for {what} was still running {seconds:g}s after {since}; cancelled",
                          what=self.describe(), seconds=seconds, since=since)
            task.cancel()

    def _done(self, task: asyncio.Task[Any]) -> None:
        timer = self._close_timer
        if timer is not None:
            self._close_timer = None
            if timer.active():
                timer.cancel()
        if task.cancelled():
            ending = CANCELLED
        else:
            exc = task.exception()
            if exc is None:
                result = task.result()
                if result is None:
                    ending = RETURNED
                else:
                    ending = FAILED
                    self.counters.errors += 1
                    self.log.error("The application for {what} returned {result!r}; an ASGI application must return None",
                                   what=self.describe(), result=result)
            elif isinstance(exc, ClientDisconnected) and (self.gone or exc is self.left_error):
                ending = CLIENT_LEFT
                self.counters.client_left += 1
                self.log.debug("Client left {what}; its application ended on send()", what=self.describe())
            else:
                ending = FAILED
                self.counters.errors += 1
                self.log.failure("Exception in ASGI application for {what}", failure=failure_of(exc),
                                 level=LogLevel.error, what=self.describe())
        self.ended = ending
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.cancel()
        self.app_ended(ending)


# -- being retired: the bridges not yet on ApplicationInstance still use these ----------------

#: Called with (exception or None, result) when an instance ends.
DoneCallback = Callable[[BaseException | None, Any], None]


def start_instance(
    loop: asyncio.AbstractEventLoop, app: ASGIApp, scope: Scope, receive: Any, send: Any, on_done: DoneCallback
) -> asyncio.Task[Any]:
    """Start ``app(scope, receive, send)`` as a task and call ``on_done`` when it ends."""
    task: asyncio.Task[Any] = loop.create_task(app(scope, receive, send))  # type: ignore[arg-type]

    def done(finished: asyncio.Task[Any]) -> None:
        if finished.cancelled():
            on_done(asyncio.CancelledError(), None)
            return
        exc = finished.exception()
        on_done(exc, None if exc is not None else finished.result())

    task.add_done_callback(done)
    return task


def describe_failure(exc: BaseException | None, result: Any) -> str | None:
    """A log-friendly reason when an instance ended badly, else ``None``."""
    if exc is not None:
        if isinstance(exc, asyncio.CancelledError):
            return None
        return f"{type(exc).__name__}: {exc}"
    if result is not None:
        return f"the application returned {result!r}; an ASGI application must return None"
    return None
