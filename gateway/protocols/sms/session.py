"""One application instance for one verified webhook: its ``receive``/``send`` and its outcome.

The instance gets ``sms.receive`` (or ``sms.status``) first. It *handles* the event by sending
``sms.ack`` or by returning without an exception; raising (or being cancelled) means it did not.
The outcome (:attr:`SmsSession.outcome`) is what the webhook's answer waits for; the instance may
go on running after it (REST sends and their ``sms.send.result``); once it asks for its next event
with no send in flight and nothing unread, it gets ``sms.disconnect`` and has ``application_close``
seconds to return before it is cancelled. An instance that neither handles nor fails within
``deadline`` seconds is cancelled.

``sms.reply`` texts sent before the outcome are held until it: if the event was handled, they go
back inline in the webhook answer where the provider has inline replies (TwiML, Plivo XML, the
generic JSON), otherwise (or when the answer has already gone) each is sent through the provider's
REST API like an ``sms.send`` to the sender; if it was not handled they are dropped (the provider
redelivers the message, and the application replies again). Replies after the outcome go by REST
at once; ``sms.send`` always goes at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.asgi.instance import describe_failure, start_instance
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.sms import asgi
from gateway.protocols.sms.model import InboundMessage, OutboundMessage, SendError, StatusUpdate
from gateway.protocols.sms.phone import PHONE, SHORT_CODE
from gateway.protocols.sms.providers.base import Provider
from gateway.protocols.sms.sender import SmsSender

__all__ = ["Account", "SmsSession"]

log = Logger(namespace="gateway.sms")


@dataclass(eq=False)
class Account:
    """One configured provider account at run time."""

    name: str
    path: str
    provider: Provider
    sender: SmsSender

    @property
    def inline_replies(self) -> bool:
        """Whether ``sms.reply`` can travel in the webhook answer."""
        return type(self.provider).supports_inline_reply


class SmsSession:
    """The ``receive``/``send`` pair and the outcome of one instance.

    Args:
        account: the account the webhook came to.
        event: the provider event being handed over.
        scope: the ``sms`` scope.
        loop: the asyncio loop instances run on.
        deadline: seconds after which an instance that has not handled the event is cancelled.
        application_close: seconds an instance may run on after ``sms.disconnect``.
        on_outcome: called once with ``True`` (handled) or ``False`` (failed).
        stats: the listener's counters (:class:`~gateway.metrics.stats.SmsStats`), or None.
    """

    def __init__(self, account: Account, event: InboundMessage | StatusUpdate, scope: dict[str, Any], *,
                 loop: asyncio.AbstractEventLoop, deadline: float, application_close: float,
                 on_outcome: Callable[[bool], None], stats: Any = None) -> None:
        self.account = account
        self.event = event
        self.scope = scope
        self.loop = loop
        self.application_close = application_close
        self.on_outcome = on_outcome
        self.stats = stats
        first = asgi.receive_event(event) if isinstance(event, InboundMessage) else asgi.status_event(event)
        self.inbox: deque[dict[str, Any]] = deque([first])
        self._waiter: asyncio.Future[None] | None = None
        self.outcome: asyncio.Future[bool] = loop.create_future()
        self.replies: list[tuple[Any, str]] = []
        self.answered: bool | None = None  # True: answered with the replies inline; False: failure answer
        self.sends: set[asyncio.Task[None]] = set()
        self.task: asyncio.Task[Any] | None = None
        self.finished = False
        self._disconnected = False
        self._deadline_timer: asyncio.TimerHandle | None = loop.call_later(deadline, self._overdue)
        self._close_timer: asyncio.TimerHandle | None = None

    # -- driven by the bridge ------------------------------------------------------------

    def start(self, app: Any) -> None:
        """Start the application instance."""
        self.task = start_instance(self.loop, app, self.scope, self.receive, self.send, self._done)

    async def wait(self, timeout: float) -> bool:
        """The outcome, or ``False`` when there is none within ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(asyncio.shield(self.outcome), timeout)
        except asyncio.TimeoutError:
            return False

    def take_replies(self) -> list[str]:
        """The inline replies, for a success answer (later replies go by REST)."""
        self.answered = True
        replies, self.replies = self.replies, []
        return [text for _, text in replies]

    def answered_failure(self) -> None:
        """The webhook was answered with a retry status: inline replies can no longer travel."""
        self.answered = False
        if self.outcome.done() and self.outcome.result():
            self._flush_replies_by_rest()

    def send_by_rest(self, texts: list[str]) -> None:
        """Send replies that could not go inline after all."""
        for text in texts:
            self._reply_by_rest(None, text)

    # -- the application's receive/send --------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: the event, ``sms.send.result`` events, then ``sms.disconnect`` once
        the event has an outcome, no send is in flight and nothing else is waiting to be read."""
        while True:
            if self.inbox:
                return self.inbox.popleft()
            if self._disconnected or (self.outcome.done() and not self.sends):
                if not self._disconnected:
                    self._disconnected = True
                    if not self.finished:
                        self._close_timer = self.loop.call_later(self.application_close, self._kill)
                return dict(asgi.DISCONNECT)
            waiter = self._waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    async def send(self, message: MutableMapping[str, Any]) -> None:
        """ASGI ``send``: ``sms.ack``, ``sms.reply``, ``sms.send``.

        Raises:
            LocalProtocolError: an unknown message type, a malformed message, or a reply to a
                status callback or to a sender that is not a number.
        """
        kind = message.get("type")
        if kind == "sms.ack":
            self._settle(True)
        elif kind == "sms.reply":
            self._reply(message)
        elif kind == "sms.send":
            outbound = asgi.outbound_message(message)
            self._start_send(message.get("id"), outbound)
        else:
            raise LocalProtocolError(f"unexpected ASGI message {kind!r} in an sms scope "
                                     "(expected sms.ack, sms.reply or sms.send)")

    # -- internals -----------------------------------------------------------------------

    def _reply(self, message: MutableMapping[str, Any]) -> None:
        text = asgi.reply_text(message)
        event = self.event
        if not isinstance(event, InboundMessage):
            raise LocalProtocolError("sms.reply answers a received message; use sms.send in a status scope")
        if event.from_.kind not in (PHONE, SHORT_CODE):
            raise LocalProtocolError(f"cannot reply to {event.from_.value!r}: an {event.from_.kind} sender is not a number")
        if self.outcome.done():
            self._reply_by_rest(message.get("id"), text)
            return
        if self.account.inline_replies:
            self.account.provider.respond(event, [t for _, t in self.replies] + [text])  # validates (XML chars)
        self.replies.append((message.get("id"), text))

    def _reply_by_rest(self, request_id: Any, text: str) -> None:
        event = self.event
        if not isinstance(event, InboundMessage):  # pragma: no cover - guarded by _reply
            return
        self._start_send(request_id, OutboundMessage(to=event.from_.value, text=text, from_=event.to.value))

    def _flush_replies_by_rest(self) -> None:
        replies, self.replies = self.replies, []
        for request_id, text in replies:
            self._reply_by_rest(request_id, text)

    def _start_send(self, request_id: Any, outbound: OutboundMessage) -> None:
        task = self.loop.create_task(self._send(request_id, outbound))
        self.sends.add(task)

    async def _send(self, request_id: Any, outbound: OutboundMessage) -> None:
        outcome: Any
        try:
            outcome = await self.account.sender.send(self.account.provider, outbound)
        except (SendError, LocalProtocolError) as exc:
            outcome = exc
            log.warn("sms {account}: sending to {to} failed: {error}", account=self.account.name,
                     to=outbound.to, error=str(exc))
        finally:
            self.sends.discard(asyncio.current_task())  # type: ignore[arg-type]
        if self.stats is not None:
            self.stats.send(self.account.provider.name, not isinstance(outcome, Exception))
        self.inbox.append(asgi.send_result_event(request_id, outcome))
        self._wake()

    def _settle(self, ok: bool) -> None:
        if self.outcome.done():
            return
        self.outcome.set_result(ok)
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        if not ok:
            if self.replies:
                log.info("sms {account}: dropped {count} reply(ies) to unhandled message {id} (it will be "
                         "redelivered)", account=self.account.name, count=len(self.replies), id=self.event.message_id)
            self.replies = []
        elif self.answered is False or not self.account.inline_replies:
            self._flush_replies_by_rest()  # no inline answer to carry them (any more)
        self.on_outcome(ok)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _overdue(self) -> None:
        self._deadline_timer = None
        if self.outcome.done() or self.task is None or self.task.done():
            return
        if self.stats is not None:
            self.stats.instances.timeouts += 1
        log.warn("sms {account}: the application did not handle message {id} in time; cancelled",
                 account=self.account.name, id=self.event.message_id)
        self.task.cancel()

    def _kill(self) -> None:
        self._close_timer = None
        if self.task is not None and not self.task.done():
            if self.stats is not None:
                self.stats.instances.timeouts += 1
            log.warn("sms {account}: application for message {id} still running {seconds}s after "
                     "sms.disconnect; cancelled", account=self.account.name, id=self.event.message_id,
                     seconds=self.application_close)
            self.task.cancel()

    def _done(self, exc: BaseException | None, result: Any) -> None:
        self.finished = True
        for timer in (self._deadline_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._deadline_timer = self._close_timer = None
        problem = describe_failure(exc, result)
        if exc is not None and problem is not None:
            if self.stats is not None:
                self.stats.instances.errors += 1
            log.failure("sms {account}: application failed on message {id}", failure=Failure(exc, type(exc), exc.__traceback__),
                        account=self.account.name, id=self.event.message_id)
        elif problem is not None:
            log.error("sms {account}: {problem}", account=self.account.name, problem=problem)
        self._settle(exc is None and problem is None)
