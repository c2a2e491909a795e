"""``SmsCommunicator``: hand an SMS (or a delivery report) to an application without a daemon.

    communicator = SmsCommunicator(application, "hello", from_="+447400123456")
    outcome = await communicator.deliver()
    assert outcome.acked and outcome.replies == ["hi there"]

The scope is the one the SMS listener builds (``docs/asgi-sms.md``); keyword arguments fill it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.asgi.app import ASGIApp, Message
from gateway.testing.application import ProtocolCommunicator, UnexpectedMessage

__all__ = ["SmsCommunicator", "SmsOutcome"]


@dataclass
class SmsOutcome:
    """What the application did with one event.

    Attributes:
        acked: it sent ``sms.ack`` (or returned cleanly) — the webhook would get its success answer.
        replies: texts of the ``sms.reply`` messages sent before the acknowledgement.
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
        super().__init__(application, scope_overrides=scope_overrides, kind=kind, provider=provider,
                         account=account, from_=from_, to=to, message_id=message_id, country=country)

    def build_scope(self, *, kind: str, provider: str, account: str, from_: str | None, to: str | None,
                    message_id: str, country: str | None) -> dict[str, Any]:
        """An ``sms`` scope as the listener builds it."""
        if country is None and from_ and from_.startswith("+"):
            from gateway.protocols.sms.phone import normalize

            country = normalize(from_).country
        scope = super().build_scope(
            kind=kind, provider=provider, account=account, provider_account=None,
            to=to, to_kind="phone" if to else None, country=country, message_id=message_id,
            extensions={"sms.reply": {"inline": True}, "sms.send": {}},
        )
        scope["from"] = from_
        scope["from_kind"] = "phone" if from_ else None
        scope["asgi"]["spec_version"] = "1.0"
        return scope

    def event(self) -> dict[str, Any]:
        """The first event: ``sms.receive`` or ``sms.status``."""
        if self.kind == "status":
            return {"type": "sms.status", "message_id": self.scope["message_id"], "status": self.status,
                    "provider_status": self.status, "error_code": None, "error_message": None,
                    "to": self.scope["to"], "segments": 1, "raw": {}}
        from gateway.protocols.sms.encoding import analyse

        info = analyse(self.text)
        return {"type": "sms.receive", "text": self.text, "encoding": info.encoding, "segments": info.segments,
                "media": self.media, "raw": {}}

    async def deliver(self, timeout: float = 1) -> SmsOutcome:
        """Hand the event over and collect what the application does until it acknowledges,
        returns or fails (then ``sms.disconnect`` is sent if it is still running).

        Raises:
            UnexpectedMessage: the application sent something that is not an sms message.
            TimeoutError: it did none of these within ``timeout``.
        """
        if self.delivered:
            raise RuntimeError("deliver() is called once per communicator")
        self.delivered = True
        await self.send_input(self.event())
        outcome = SmsOutcome()
        while not outcome.acked:
            message = await self.next_output(timeout)
            if message is None:  # the application ended
                error = None if self.future.cancelled() else self.future.exception()
                outcome.error = error
                outcome.acked = error is None and not self.future.cancelled()
                break
            kind = message.get("type")
            if kind == "sms.ack":
                outcome.acked = True
            elif kind == "sms.reply" and not outcome.acked:
                outcome.replies.append(message["text"])
            elif kind in ("sms.send", "sms.reply"):
                outcome.sends.append(message)
            else:
                raise UnexpectedMessage(f"unexpected message from an sms application: {message!r}")
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
            if message.get("type") not in ("sms.send", "sms.reply", "sms.ack"):
                raise UnexpectedMessage(f"unexpected message from an sms application: {message!r}")
            if message.get("type") != "sms.ack":
                sends.append(message)
        return sends

    async def disconnect(self, timeout: float = 1) -> None:
        """Send ``sms.disconnect`` and wait for the application to finish."""
        await self.send_input({"type": "sms.disconnect"})
        await self.wait(timeout)
