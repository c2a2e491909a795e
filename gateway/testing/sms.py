"""``SmsCommunicator``: hand an SMS (or a delivery report) to an application without a daemon.

    communicator = SmsCommunicator(application, "hello", from_="+447400123456")
    outcome = await communicator.deliver()
    assert outcome.acked and outcome.replies == ["hi there"]

The scope and the first event are the ones the SMS listener builds (``docs/asgi-sms.md``), by the
same functions; keyword arguments fill them in. What the application sends is checked by the
listener's own message-order machine (:class:`~gateway.protocols.sms.asgi.SmsOrder`), which also
says what the provider would get: the success answer with the held replies once the event is
handled, and no replies when it was not (the provider delivers it again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.asgi.app import ASGIApp, Message
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.sms import asgi
from gateway.protocols.sms.asgi import SmsOrder
from gateway.protocols.sms.core import InboundMessage, Media, StatusUpdate
from gateway.protocols.sms.encoding import analyse
from gateway.protocols.sms.phone import UNKNOWN, Address, normalize
from gateway.testing.application import ProtocolCommunicator, UnexpectedMessage

__all__ = ["SmsCommunicator", "SmsOutcome"]


@dataclass
class SmsOutcome:
    """What the application did with one event.

    Attributes:
        acked: it sent ``sms.ack`` (or returned cleanly) — the webhook would get its success answer.
        replies: texts of the ``sms.reply`` messages sent before the acknowledgement: what the
            success answer carries (none when the event was not handled: they are dropped).
        sends: the ``sms.send`` messages (and ``sms.reply`` messages after it), in order.
        error: the exception the application raised, if it did (the provider would retry).
    """

    acked: bool = False
    replies: list[str] = field(default_factory=list)
    sends: list[Message] = field(default_factory=list)
    error: BaseException | None = None


class SmsCommunicator(ProtocolCommunicator):
    """Drives one ``sms`` scope.

    Args:
        application: the ASGI application (a consumer's ``as_asgi()``, a router).
        text: the message text (``kind="message"``).
        from_, to: sender and our number (E.164).
        kind: ``"message"`` or ``"status"``.
        provider, account, message_id, country: scope keys.
        media: ``[{"url", "content_type"}]`` for an MMS.
        status: the delivery status for ``kind="status"``.
        scope_overrides: further scope keys.
    """

    scope_type = "sms"

    def __init__(self, application: ASGIApp, text: str = "", *, from_: str | None = "+447400123456",
                 to: str | None = "+441134960000", kind: str = "message", provider: str = "generic",
                 account: str = "test", message_id: str = "m-1", country: str | None = None,
                 media: list[dict[str, Any]] | None = None, status: str = "delivered",
                 scope_overrides: dict[str, Any] | None = None) -> None:
        if kind not in ("message", "status"):
            raise ValueError("kind is 'message' or 'status'")
        self.text = text
        self.kind = kind
        self.media = list(media or [])
        self.status = status
        self.delivered = False
        sender = normalize(from_) if from_ else None
        recipient = normalize(to) if to else None
        self.provider_event = self._provider_event(provider, message_id, sender, recipient)
        #: The listener's message-order machine, fed with everything the application sends.
        self.order = SmsOrder(self.provider_event, inline=True)
        super().__init__(application, scope_overrides=scope_overrides, kind=kind, provider=provider,
                         account=account, sender=sender, recipient=recipient, message_id=message_id, country=country)

    def _provider_event(self, provider: str, message_id: str, sender: Address | None,
                        recipient: Address | None) -> InboundMessage | StatusUpdate:
        if self.kind == "status":
            return StatusUpdate(provider=provider, message_id=message_id, status=self.status,
                                provider_status=self.status, to=recipient, segments=1)
        info = analyse(self.text)
        nobody = Address("", UNKNOWN, None, "")
        return InboundMessage(provider=provider, message_id=message_id, from_=sender or nobody, to=recipient or nobody,
                              text=self.text, encoding=info.encoding, segments=info.segments,
                              media=tuple(Media(m["url"], m.get("content_type")) for m in self.media),
                              country=sender.country if sender is not None else None)

    def build_scope(self, *, kind: str, provider: str, account: str, sender: Address | None,
                    recipient: Address | None, message_id: str, country: str | None) -> dict[str, Any]:
        """An ``sms`` scope as the listener builds it (:func:`~gateway.protocols.sms.asgi.build_scope`)."""
        scope = asgi.build_scope(
            kind="status" if kind == "status" else "message", provider=provider, account=account,
            provider_account=None, sender=sender, recipient=recipient,
            country=country if country is not None else (sender.country if sender is not None else None),
            message_id=message_id, inline_replies=True, state=None,
        )
        return dict(scope)

    def event(self) -> dict[str, Any]:
        """The first event: ``sms.receive`` or ``sms.status``."""
        event = self.provider_event
        if isinstance(event, StatusUpdate):
            return dict(asgi.status_event(event))
        return dict(asgi.receive_event(event))

    def check(self, message: Message) -> Any:
        """What the listener makes of a message from the application (the order's action).

        Raises:
            UnexpectedMessage: the listener would refuse it (``send()`` would raise
                ``LocalProtocolError``).
        """
        try:
            return self.order.app_send(message)
        except LocalProtocolError as exc:
            raise UnexpectedMessage(f"the sms application sent {message!r}: {exc}") from None

    async def deliver(self, timeout: float = 1) -> SmsOutcome:
        """Hand the event over and collect what the application does until it acknowledges,
        returns or fails (then ``sms.disconnect`` is sent if it is still running).

        Raises:
            UnexpectedMessage: the application sent something the listener would refuse.
            TimeoutError: it did none of these within ``timeout``.
        """
        if self.delivered:
            raise RuntimeError("deliver() is called once per communicator")
        self.delivered = True
        await self.send_input(self.event())
        outcome = SmsOutcome()
        order = self.order
        while order.handled is None:
            message = await self.next_output(timeout)
            if message is None:  # the application ended: handled if it returned cleanly
                error = None if self.future.cancelled() else self.future.exception()
                outcome.error = error
                order.settle(error is None and not self.future.cancelled())
            elif isinstance(self.check(message), asgi.Send):  # Held replies stay with the order
                outcome.sends.append(message)
        outcome.acked = bool(order.handled)
        outcome.replies = order.answer_inline() if order.handled else []
        return outcome

    async def send_result(self, request_id: Any = None, *, ok: bool = True, message_ids: list[str] | None = None,
                          error: dict[str, Any] | None = None) -> None:
        """Give the application an ``sms.send.result``."""
        await self.send_input({
            "type": "sms.send.result", "id": request_id, "ok": ok,
            "message_ids": list(message_ids or (["sent-1"] if ok else [])),
            "status": "queued" if ok else "failed", "provider_status": None, "segments": None,
            "error": None if ok else (error or {"http_status": 400, "code": None, "message": "refused",
                                                "retryable": False}),
        })

    async def collect_sends(self, timeout: float = 0.1) -> list[Message]:
        """The ``sms.send`` / ``sms.reply`` messages sent since, until ``timeout`` passes quietly."""
        sends: list[Message] = []
        while not await self.receive_nothing(timeout):
            message = await self.receive_output(timeout)
            if isinstance(self.check(message), asgi.Send):
                sends.append(message)
        return sends

    async def disconnect(self, timeout: float = 1) -> None:
        """Send ``sms.disconnect`` and wait for the application to finish."""
        await self.send_input({"type": "sms.disconnect"})
        await self.wait(timeout)
