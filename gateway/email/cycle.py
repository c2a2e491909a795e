# -*- test-case-name: tests.unit.smtp.test_cycle -*-
"""One ``email`` scope: the application instance that decides about one message.

The SMTP listener and the IMAP reader both hand a message to the application this way
(``docs/asgi-email.md``)::

    receive() -> {"type": "email.receive", "raw": b"..."}        # first, at once
    send({"type": "email.accept"})                                # or
    send({"type": "email.reject", "code": 550, "text": "5.7.1 ..."})
    send({"type": "email.send", "to": ..., ...})                  # any time, any number
    receive() -> {"type": "email.send.result", "id": ..., "ok": ...}
    receive() -> {"type": "email.disconnect"}                     # answered, no send in flight

The listener learns the answer through ``on_answer(outcome)``, called exactly once with an
:class:`Outcome`: accepted, rejected (with the reply), or failed (the instance raised, ended
without answering, or did not answer within ``answer_timeout``). A failure is never a permanent
refusal: the SMTP listener answers it with ``451 4.3.0`` and the IMAP reader leaves the message
for a later attempt.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from gateway.asgi.app import ASGIApp
from gateway.asgi.instance import start_instance
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.smtp.replies import Reply

__all__ = ["ACCEPTED", "REJECTED", "FAILED", "DEFAULT_ACCEPT", "Outcome", "EmailCycle", "accept_reply", "reject_reply"]

log = Logger(namespace="gateway.email")

ACCEPTED, REJECTED, FAILED = "accepted", "rejected", "failed"
DISCONNECT: Mapping[str, str] = {"type": "email.disconnect"}
#: The reply to an ``email.accept`` without text (the SMTP core has it pre-rendered).
DEFAULT_ACCEPT = Reply(250, "2.0.0", "Ok: queued")


@dataclass(frozen=True)
class Outcome:
    """How the application answered one message.

    Attributes:
        kind: :data:`ACCEPTED`, :data:`REJECTED` or :data:`FAILED`.
        reply: the SMTP reply for an answer (``250`` for accepted, 4xx/5xx for rejected); None
            for a failure.
        reason: for a failure, why (for logs).
    """

    kind: str
    reply: Reply | None = None
    reason: str = ""

    @property
    def permanent(self) -> bool:
        """A permanent (5xx) rejection."""
        return self.kind == REJECTED and self.reply is not None and self.reply.code >= 500


def accept_reply(message: Mapping[str, Any]) -> Reply:
    """The 250 reply for an ``email.accept`` message (optional ``text``, e.g. a ticket number).

    Raises:
        LocalProtocolError: ``text`` is not a string.
    """
    text = message.get("text")
    if text is None:
        return DEFAULT_ACCEPT
    if not isinstance(text, str):
        raise LocalProtocolError(f"email.accept text must be a string, not {type(text).__name__}")
    return Reply.from_text(250, text)


def reject_reply(message: Mapping[str, Any]) -> Reply:
    """The reply for an ``email.reject`` message: ``code`` 400-599 (default 550) and ``text``.

    An enhanced status code at the start of ``text`` is kept (``"5.7.1 Spam"``); without one the
    class's generic status is used (RFC 3463: ``5.0.0``).

    Raises:
        LocalProtocolError: the code is not an int from 400 to 599, or the text is not a string.
    """
    code = message.get("code", 550)
    text = message.get("text", "Message rejected")
    if type(code) is not int or not 400 <= code <= 599 or code // 10 % 10 > 5:
        raise LocalProtocolError(f"email.reject code must be an SMTP reply code 400-599, not {code!r}")
    if not isinstance(text, str):
        raise LocalProtocolError(f"email.reject text must be a string, not {type(text).__name__}")
    return Reply.from_text(code, text)


def _cancel(handle: Any) -> None:
    """Cancel an asyncio ``TimerHandle`` or a Twisted ``DelayedCall`` that may have run."""
    if handle is not None and (not hasattr(handle, "active") or handle.active()):
        handle.cancel()


class EmailCycle:
    """Runs the application for one message and reports its answer.

    Args:
        app: the ASGI application.
        scope: the ``email`` scope.
        raw: the message bytes, delivered as ``email.receive``.
        loop: the asyncio loop instances run on.
        call_later: ``call_later(seconds, function) -> handle`` for the timers: the loop's own
            (``loop.call_later``; Twisted's ``callLater`` costs several times more per message) or
            a fake clock's in tests.
        answer_timeout: seconds the application has to accept or reject.
        close_timeout: grace period of an instance still running once ``answer_timeout`` has
            passed (and its ``email.send`` results were delivered); then it is cancelled.
        sender: the smarthost sender for ``email.send`` (None: each send fails with a result
            saying no smarthost is configured).
        on_answer: called once with the :class:`Outcome`.
        stats: the listener's counters (``app_errors``, ``app_timeouts``), or None.
    """

    __slots__ = (
        "app", "scope", "loop", "call_later", "answer_timeout", "close_timeout", "sender",
        "on_answer", "outcome", "task", "finished", "_inbox", "_waiter", "_sends", "_timer",
        "_grace", "_disconnected", "stats",
    )

    def __init__(
        self,
        app: ASGIApp,
        scope: dict[str, Any],
        raw: bytes,
        *,
        loop: asyncio.AbstractEventLoop,
        call_later: Callable[..., Any],
        answer_timeout: float,
        close_timeout: float,
        sender: Any,
        on_answer: Callable[[Outcome], None],
        stats: Any = None,
    ) -> None:
        self.app = app
        self.scope = scope
        self.loop = loop
        self.call_later = call_later
        self.answer_timeout = answer_timeout
        self.close_timeout = close_timeout
        self.sender = sender
        self.on_answer = on_answer
        self.stats = stats
        self.outcome: Outcome | None = None
        self.task: asyncio.Task[Any] | None = None
        self.finished = False
        self._inbox: deque[Mapping[str, Any]] = deque([{"type": "email.receive", "raw": raw}])
        self._waiter: asyncio.Future[None] | None = None
        self._sends = 0
        self._timer: Any = None
        self._grace = False  # the instance was given close_timeout more seconds
        self._disconnected = False  # email.disconnect delivered since the last send

    def start(self) -> None:
        """Start the application instance and its timer (one per cycle; see :meth:`_expired`)."""
        self._timer = self.call_later(self.answer_timeout, self._expired)
        self.task = start_instance(self.loop, self.app, self.scope, self.receive, self.send, self._instance_done)

    def cancel(self) -> None:
        """Stop the instance now (the listener is closing); an unanswered message fails."""
        self._settle(Outcome(FAILED, reason="cancelled: the listener is closing"))
        if self.task is not None and not self.task.done():
            self.task.cancel()

    # -- the application's receive and send ----------------------------------------------------
    async def receive(self) -> Mapping[str, Any]:
        """The next event: the message, then send results, then ``email.disconnect``.

        ``email.disconnect`` comes once each time nothing is left (answered, no send in flight);
        a further ``receive()`` waits (for the result of a later send, or until cancelled).
        Returning it again at once would let a loop that pumps events (the ``EmailToRouter``
        fan-out does) spin without ever yielding to the event loop.
        """
        while True:
            if self._inbox:
                return self._inbox.popleft()
            if self.outcome is not None and not self._sends and not self._disconnected:
                self._disconnected = True
                return DISCONNECT
            waiter = self._waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    async def send(self, message: Mapping[str, Any]) -> None:
        """Take ``email.accept``, ``email.reject`` or ``email.send`` from the application.

        Raises:
            LocalProtocolError: an unknown message type, a malformed message, or a second answer.
        """
        kind = message.get("type") if isinstance(message, Mapping) else None
        if kind == "email.accept":
            self._answer(Outcome(ACCEPTED, accept_reply(message)))
        elif kind == "email.reject":
            self._answer(Outcome(REJECTED, reject_reply(message)))
        elif kind == "email.send":
            self._start_send(message)
        else:
            raise LocalProtocolError(
                f"unexpected ASGI message {kind!r} in an email scope "
                "(expected email.accept, email.reject or email.send)"
            )

    # -- answers -------------------------------------------------------------------------------
    def _answer(self, outcome: Outcome) -> None:
        if self.outcome is not None:
            if self.outcome.kind == FAILED:
                log.warn("Ignoring a late {kind} for a message already failed ({reason})",
                         kind=outcome.kind, reason=self.outcome.reason)
                return
            raise LocalProtocolError("this message was already answered (email.accept/email.reject)")
        self._settle(outcome)

    def _settle(self, outcome: Outcome) -> None:
        if self.outcome is not None:
            return
        self.outcome = outcome
        try:
            self.on_answer(outcome)
        except Exception:
            log.failure("The listener failed to handle the answer to a message")
        self._wake()

    def _expired(self) -> None:
        """The one timer of the cycle fired.

        ``answer_timeout`` after the start: an unanswered message fails. From then on (or from the
        moment the last ``email.send`` result was delivered, if later) an instance with nothing in
        flight gets ``close_timeout`` more seconds, then is cancelled. One timer, armed at the start
        and cancelled when the instance ends, is all a normal delivery costs.
        """
        self._timer = None
        if self.finished:
            return
        if self.outcome is None:
            log.warn("The application did not answer a message within {seconds}s", seconds=self.answer_timeout)
            if self.stats is not None:
                self.stats.instances.timeouts += 1
            self._settle(Outcome(FAILED, reason=f"no answer within {self.answer_timeout:g}s"))
        if self._sends:
            return  # re-armed when the last result is delivered
        if not self._grace:
            self._grace = True
            self._timer = self.call_later(self.close_timeout, self._expired)
            return
        if self.task is not None and not self.task.done():
            log.warn("Cancelling an email application still running {seconds}s after its answer",
                     seconds=self.close_timeout)
            if self.stats is not None:
                self.stats.instances.timeouts += 1
            self.task.cancel()

    def _instance_done(self, exc: BaseException | None, result: Any) -> None:
        self.finished = True
        _cancel(self._timer)
        self._timer = None
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            if self.stats is not None:
                self.stats.instances.errors += 1
            log.failure("Application instance for an email raised", failure=Failure(exc, type(exc), exc.__traceback__),
                        level=LogLevel.error)
            self._settle(Outcome(FAILED, reason=f"{type(exc).__name__}: {exc}"))
        elif exc is not None:
            self._settle(Outcome(FAILED, reason="the application was cancelled"))
        else:
            if result is not None:
                log.error("An email application returned {result!r}; it must return None", result=result)
            self._settle(Outcome(FAILED, reason="the application ended without email.accept or email.reject"))

    # -- email.send ----------------------------------------------------------------------------
    def _start_send(self, message: Mapping[str, Any]) -> None:
        message_id = message.get("id")
        if message_id is None:
            message_id = uuid.uuid4().hex
        elif not isinstance(message_id, str):
            raise LocalProtocolError("email.send id must be a string")
        if self.sender is None:
            self._deliver_result(message_id, {"ok": False, "code": None, "temporary": False,
                                              "text": "no smarthost is configured for this listener",
                                              "refused": {}})
            return
        deferred = self.sender.send(message)  # raises LocalProtocolError for a malformed message
        self._sends += 1
        self._disconnected = False  # a new disconnect follows once its result was delivered

        def done(result: Any) -> None:
            self._sends -= 1
            if isinstance(result, Failure):
                log.failure("Smarthost sender failed unexpectedly", failure=result)
                result = {"ok": False, "code": None, "temporary": True, "refused": {},
                          "text": f"internal error: {result.getErrorMessage()}"}
            self._deliver_result(message_id, result)

        deferred.addBoth(done)

    def _deliver_result(self, message_id: str, result: Mapping[str, Any]) -> None:
        self._inbox.append({"type": "email.send.result", "id": message_id, **result})
        self._wake()
        if not self._sends and self._timer is None and not self.finished and self.outcome is not None:
            self._grace = True
            self._timer = self.call_later(self.close_timeout, self._expired)

    # -- helpers -------------------------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
