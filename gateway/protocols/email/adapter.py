# -*- test-case-name: tests.unit.email.test_adapter -*-
"""One ``email`` scope on the reactor: the application instance that decides about one message.

The SMTP listener and the IMAP reader both hand a message to the application as an
:class:`EmailInstance` (``docs/asgi-email.md``)::

    receive() -> {"type": "email.receive", "raw": b"..."}        # first, at once
    send({"type": "email.accept"})                                # or
    send({"type": "email.reject", "code": 550, "text": "5.7.1 ..."})
    send({"type": "email.send", "to": ..., ...})                  # any time, any number
    receive() -> {"type": "email.send.result", "id": ..., "ok": ...}
    receive() -> {"type": "email.disconnect"}                     # answered, no send in flight

What the application may send, and when, is :class:`~gateway.protocols.email.asgi.EmailOrder`'s
to say; the listener learns the answer through its :class:`EmailReceiver` ``answered(outcome)``,
called exactly once with an :class:`~gateway.protocols.email.asgi.Outcome`: accepted, rejected,
or failed (the instance raised, ended without answering, did not answer within
``answer_timeout``, or was cancelled). A failure is never a permanent refusal: the SMTP listener
answers it with ``451 4.3.0`` and the IMAP reader leaves the message for a later attempt.

Timers, on the reactor's clock: one deadline per message, the listener's answer timeout after the
start (in the listener's :class:`~gateway.protocols.deadlines.Deadlines`, so a message costs no
timer of its own; cleared when the instance ends, which is all a normal delivery costs). When it
is due, an unanswered message fails; from then on (or from the moment the last ``email.send``
result was delivered, if later) an instance still running has the application-close timeout (the
core's :meth:`~gateway.asgi.instance.ApplicationInstance.close_after`) before it is cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol, cast

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.asgi.app import ASGIApp, Message, Scope
from gateway.asgi.instance import CANCELLED, CLIENT_LEFT, RETURNED, ApplicationInstance, Clock, Ending, InstanceCounters
from gateway.asgi.types import EmailScope
from gateway.protocols.email.asgi import DISCONNECT, EmailOrder, Late, Outcome, Send, receive_event, send_result_event
from gateway.protocols.deadlines import Deadline, Deadlines

__all__ = ["EmailInstance", "EmailReceiver", "Sender"]

log = Logger(namespace="gateway.email")

_NO_SMARTHOST: Mapping[str, Any] = {
    "ok": False, "code": None, "temporary": False, "refused": {},
    "text": "no smarthost is configured for this listener",
}
_DISCONNECT = cast(Message, DISCONNECT)


class EmailReceiver(Protocol):
    """Who learns the answer to a message (the SMTP connection, the IMAP reader)."""

    def answered(self, outcome: Outcome) -> None:
        """Called once, with the answer or the failure."""


class Sender(Protocol):
    """Where ``email.send`` goes (:class:`gateway.protocols.email.sender.SmarthostSender`)."""

    def send(self, message: Mapping[str, Any]) -> defer.Deferred[dict[str, Any]]:
        """Submit a message; fires with the result fields, never fails.

        Raises:
            LocalProtocolError: the message is malformed (nothing is sent).
        """


def _why(ending: Ending, task: asyncio.Task[Any] | None) -> str:
    """Why a message failed, for logs."""
    if ending is RETURNED:
        return "the application ended without email.accept or email.reject"
    if ending is CANCELLED:
        return "the application was cancelled"
    if ending is CLIENT_LEFT:
        return "the client left"
    exc = task.exception() if task is not None and task.done() and not task.cancelled() else None
    if exc is not None:
        return f"{type(exc).__name__}: {exc}"
    return "the application returned something other than None"


class EmailInstance(ApplicationInstance):
    """The application instance of one message (see the module documentation).

    Args:
        app: the ASGI application.
        scope: the ``email`` scope (:func:`gateway.protocols.email.asgi.email_scope`).
        raw: the message bytes, delivered as ``email.receive``.
        receiver: told the answer, once.
        loop: the asyncio loop instances run on.
        clock: the reactor (timers).
        counters: the listener's instance counters.
        deadlines: the listener's answer deadlines: the time the application has to accept or
            reject (``deadlines.seconds``).
        close_timeout: how long an instance may run on once ``answer_timeout`` has passed (and its
            ``email.send`` results were delivered); then it is cancelled.
        sender: the smarthost sender for ``email.send`` (None: each send gets a result saying no
            smarthost is configured).
    """

    __slots__ = ("deadlines", "receiver", "sender", "sends", "deadline_passed", "told_disconnect", "_deadline")

    log = log
    notify_receiving = True

    def __init__(self, app: ASGIApp, scope: EmailScope, raw: bytes, *, receiver: EmailReceiver,
                 loop: asyncio.AbstractEventLoop, clock: Clock, counters: InstanceCounters, deadlines: Deadlines,
                 close_timeout: float, sender: Sender | None) -> None:
        order = EmailOrder()
        super().__init__(app, cast(Scope, scope), order, loop, clock, counters, close_timeout)
        self.order: EmailOrder = order
        self.receiver: EmailReceiver | None = receiver
        self.sender = sender
        self.deadlines = deadlines
        #: ``email.send`` messages whose result has not come back yet.
        self.sends = 0
        self.deadline_passed = False
        #: ``email.disconnect`` was queued since the last send started.
        self.told_disconnect = False
        self._deadline: Deadline | None = None
        self.queue.append((cast(Message, receive_event(raw)), 0))

    # -- driven by the listener --------------------------------------------------------------

    def start(self) -> None:
        """Start the application and its answer deadline."""
        self._deadline = self.deadlines.add(self._answer_due)
        super().start()

    def client_gone(self) -> None:
        """The SMTP client left before the answer: ``send()`` raises from now on."""
        self._clear_deadline()
        self.client_left(_DISCONNECT)

    def give_up(self, reason: str) -> None:
        """Stop now (the listener is closing): an unanswered message fails."""
        self._settle(self.order.give_up(reason))
        self.cancel()

    # -- the instance's hooks ----------------------------------------------------------------

    def app_perform(self, action: Any) -> None:
        kind = action.__class__
        if kind is Outcome:
            self._settle(action)
        elif kind is Send:
            self._start_send(action)
        elif kind is Late:
            log.warn("Ignoring a late {kind} for a message already failed ({reason})",
                     kind=action.outcome.kind, reason=action.failure.reason)
        return None

    def app_receiving(self) -> None:
        # email.disconnect comes once each time nothing is left (answered, no send in flight);
        # a further receive() waits (for the result of a later send, or until cancelled).
        # Returning it again at once would let a loop that pumps events (the EmailToRouter
        # fan-out does) spin without ever yielding to the event loop.
        if not self.told_disconnect and not self.sends and not self.queue and self.order.outcome is not None:
            self.told_disconnect = True
            self.put(_DISCONNECT, 0)

    def app_ended(self, ending: Ending) -> None:
        self._clear_deadline()
        self._settle(self.order.give_up(_why(ending, self.task)))
        self.receiver = None

    def describe(self) -> str:
        scope = self.scope
        return f"the {scope.get('source')} message from <{scope.get('sender')}>"

    # -- internals -----------------------------------------------------------------------------

    def _settle(self, outcome: Outcome | None) -> None:
        """Tell the receiver, once."""
        if outcome is None:
            return
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            try:
                receiver.answered(outcome)
            except Exception:
                log.failure("The listener failed to handle the answer to a message")
        self._wake_for_disconnect()

    def _wake_for_disconnect(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self.app_receiving()

    def _answer_due(self) -> None:
        self._deadline = None
        self.deadline_passed = True
        if self.ended is not None:
            return
        seconds = self.deadlines.seconds
        failure = self.order.give_up(f"no answer within {seconds:g}s")
        if failure is not None:
            self.counters.timeouts += 1
            log.warn("The application did not answer {what} within {seconds:g}s", what=self.describe(), seconds=seconds)
            self._settle(failure)
        if not self.sends:
            self.close_after(since="its answer was due")

    def _clear_deadline(self) -> None:
        deadline = self._deadline
        if deadline is not None:
            self._deadline = None
            deadline.clear()

    def _start_send(self, action: Send) -> None:
        sender = self.sender
        if sender is None:
            self._deliver_result(action.id, _NO_SMARTHOST)
            return
        deferred = sender.send(action.message)  # raises LocalProtocolError for a malformed message
        self.sends += 1
        self.told_disconnect = False  # a new disconnect follows once its result was delivered
        message_id = action.id

        def done(result: Any) -> None:
            self.sends -= 1
            if isinstance(result, Failure):
                log.failure("Smarthost sender failed unexpectedly", failure=result)
                result = {"ok": False, "code": None, "temporary": True, "refused": {},
                          "text": f"internal error: {result.getErrorMessage()}"}
            self._deliver_result(message_id, result)

        deferred.addBoth(done)

    def _deliver_result(self, message_id: str, result: Mapping[str, Any]) -> None:
        if self.ended is not None:
            return
        self.put(cast(Message, send_result_event(message_id, result)), 0)
        if not self.sends:
            self._wake_for_disconnect()
            if self.deadline_passed:
                self.close_after(since="its last email.send result")
