# -*- test-case-name: tests.unit.sms.test_asgi -*-
"""The ASGI ``sms`` mapping, sans-IO: scopes and events from provider events, the order of what
applications send, and when an event counts as handled. ``docs/asgi-sms.md`` is the
specification; keep the two in step.

The webhook bridge (:mod:`gateway.protocols.sms.adapter`) and the test communicator
(:class:`gateway.testing.sms.SmsCommunicator`) both check the application's messages with
:class:`SmsOrder`, which also holds the "acknowledged only once handled" rule: the provider gets
its success answer (with the replies held for it) only once the event is handled (``sms.ack``, or
the instance returned), its retry status otherwise, and replies to an event that was not handled
are dropped (the provider delivers it again).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal

from gateway.asgi.types import SmsDisconnect, SmsReceive, SmsScope, SmsSendError, SmsSendResult, SmsStatus
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.sms.core import InboundMessage, OutboundMessage, SendError, SendResult, StatusUpdate
from gateway.protocols.sms.phone import PHONE, SHORT_CODE, Address, normalize

__all__ = [
    "ASGI_VERSION",
    "SPEC_VERSION",
    "MESSAGE",
    "STATUS",
    "sms_scope",
    "build_scope",
    "receive_event",
    "status_event",
    "send_result_event",
    "DISCONNECT",
    "reply_text",
    "outbound_message",
    "ACK",
    "Held",
    "Send",
    "SmsOrder",
]

ASGI_VERSION = "3.0"
#: Version of the ``sms`` mapping (docs/asgi-sms.md).
SPEC_VERSION = "1.0"
#: Values of the scope's ``kind``.
MESSAGE: Final = "message"
STATUS: Final = "status"

DISCONNECT: SmsDisconnect = {"type": "sms.disconnect"}

# Where status callbacks name *our* sender (the message's "from"), per provider.
_STATUS_SENDER_FIELDS = {"twilio": "From", "plivo": "From", "vonage": "to", "generic": "from"}


def _plain(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The provider's fields as a plain dict (JSON-serialisable for channel layers)."""
    return dict(raw)


def _status_sender(update: StatusUpdate) -> Address | None:
    raw = update.raw
    value: Any
    if update.provider == "telnyx":
        data = raw.get("data")
        payload = data.get("payload") if isinstance(data, dict) else None
        sender = payload.get("from") if isinstance(payload, dict) else None
        value = sender.get("phone_number") if isinstance(sender, dict) else sender
    else:
        name = _STATUS_SENDER_FIELDS.get(update.provider)
        value = raw.get(name) if name else None
    if not isinstance(value, str) or not value.strip():
        return None
    return normalize(value, assume_international=update.provider in ("vonage", "plivo"))


def sms_scope(
    event: InboundMessage | StatusUpdate,
    *,
    account: str,
    inline_replies: bool,
    state: dict[str, Any] | None = None,
) -> SmsScope:
    """The ``sms`` scope of one verified webhook (see ``docs/asgi-sms.md``).

    Args:
        event: the provider module's reading of the webhook.
        account: the configured account name.
        inline_replies: whether ``sms.reply`` goes back in the webhook answer (else by REST).
        state: the lifespan state (copied).
    """
    if isinstance(event, InboundMessage):
        sender = event.from_
        return build_scope(kind=MESSAGE, provider=event.provider, account=account, provider_account=event.account,
                           sender=sender, recipient=event.to, country=event.country or sender.country,
                           message_id=event.message_id, inline_replies=inline_replies, state=state)
    status_sender = _status_sender(event)
    return build_scope(kind=STATUS, provider=event.provider, account=account, provider_account=event.account,
                       sender=status_sender, recipient=event.to,
                       country=status_sender.country if status_sender is not None else None,
                       message_id=event.message_id, inline_replies=inline_replies, state=state)


def build_scope(
    *,
    kind: Literal["message", "status"],
    provider: str,
    account: str,
    provider_account: str | None,
    sender: Address | None,
    recipient: Address | None,
    country: str | None,
    message_id: str,
    inline_replies: bool,
    state: dict[str, Any] | None,
) -> SmsScope:
    """An ``sms`` scope from its parts (:func:`sms_scope` reads them from a provider's event)."""
    scope: SmsScope = {
        "type": "sms",
        "asgi": {"version": ASGI_VERSION, "spec_version": SPEC_VERSION},
        "kind": kind,
        "provider": provider,
        "account": account,
        "provider_account": provider_account,
        "from": sender.value if sender is not None else None,
        "from_kind": sender.kind if sender is not None else None,
        "to": recipient.value if recipient is not None else None,
        "to_kind": recipient.kind if recipient is not None else None,
        "country": country,
        "message_id": message_id,
        "extensions": {"sms.reply": {"inline": inline_replies}, "sms.send": {}},
    }
    if state is not None:
        scope["state"] = state.copy()
    return scope


def receive_event(message: InboundMessage) -> SmsReceive:
    """``sms.receive``: the text and its details."""
    return {
        "type": "sms.receive",
        "text": message.text,
        "encoding": message.encoding,
        "segments": message.segments,
        "media": [{"url": m.url, "content_type": m.content_type} for m in message.media],
        "raw": _plain(message.raw),
    }


def status_event(update: StatusUpdate) -> SmsStatus:
    """``sms.status``: a delivery report for a message we sent."""
    return {
        "type": "sms.status",
        "message_id": update.message_id,
        "status": update.status,
        "provider_status": update.provider_status,
        "error_code": update.error_code,
        "error_message": update.error_message,
        "to": update.to.value if update.to is not None else None,
        "segments": update.segments,
        "raw": _plain(update.raw),
    }


def send_result_event(request_id: Any, outcome: SendResult | SendError | LocalProtocolError) -> SmsSendResult:
    """``sms.send.result`` for the ``sms.send`` (or REST-sent ``sms.reply``) with ``id``."""
    if isinstance(outcome, SendResult):
        return {"type": "sms.send.result", "id": request_id, "ok": True, "message_ids": list(outcome.message_ids),
                "status": outcome.status, "provider_status": outcome.provider_status, "segments": outcome.segments,
                "error": None}
    error: SmsSendError
    if isinstance(outcome, SendError):
        error = {"http_status": outcome.http_status, "code": outcome.code, "message": outcome.message,
                 "retryable": outcome.retryable}
    else:
        error = {"http_status": None, "code": None, "message": outcome.message, "retryable": False}
    return {"type": "sms.send.result", "id": request_id, "ok": False, "message_ids": [], "status": "failed",
            "provider_status": None, "segments": None, "error": error}


def _text(message: Mapping[str, Any], what: str) -> str:
    text = message.get("text")
    if not isinstance(text, str):
        raise LocalProtocolError(f"{what} 'text' must be a str, got {type(text).__name__}")
    return text


def reply_text(message: Mapping[str, Any]) -> str:
    """The text of an ``sms.reply``.

    Raises:
        LocalProtocolError: ``text`` missing or not a string.
    """
    return _text(message, "sms.reply")


def _optional_str(message: Mapping[str, Any], key: str) -> str | None:
    value = message.get(key)
    if value is not None and not isinstance(value, str):
        raise LocalProtocolError(f"sms.send '{key}' must be a str or None, got {type(value).__name__}")
    return value or None


def outbound_message(message: Mapping[str, Any]) -> OutboundMessage:
    """The :class:`OutboundMessage` of an ``sms.send``.

    Raises:
        LocalProtocolError: a key is missing or has the wrong type.
    """
    to = message.get("to")
    if not isinstance(to, str) or not to.strip():
        raise LocalProtocolError("sms.send needs 'to', the recipient's number")
    media = message.get("media_urls", ())
    if not isinstance(media, (list, tuple)) or not all(isinstance(url, str) for url in media):
        raise LocalProtocolError("sms.send 'media_urls' must be a list of URL strings")
    return OutboundMessage(
        to=to,
        text=_text(message, "sms.send"),
        from_=_optional_str(message, "from"),
        media_urls=tuple(media),
        status_callback=_optional_str(message, "status_callback"),
    )


# -- the order of the application's messages ------------------------------------------------------


class _Ack:
    """``sms.ack`` (or the instance returned): the event is handled."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ACK"


#: The action of the first ``sms.ack``.
ACK: Final = _Ack()


class Held:
    """An ``sms.reply`` held until the event's outcome (for the webhook answer, where the
    provider has inline replies)."""

    __slots__ = ("id", "text")

    def __init__(self, request_id: Any, text: str) -> None:
        self.id = request_id
        self.text = text


class Send:
    """A text to send through the provider's REST API now: an ``sms.send``, or an ``sms.reply``
    that cannot (or can no longer) travel in the webhook answer."""

    __slots__ = ("id", "message")

    def __init__(self, request_id: Any, message: OutboundMessage) -> None:
        self.id = request_id
        self.message = message


Action = _Ack | Held | Send | None

#: The webhook was not answered yet; answered with the event's replies inline; or with the retry
#: status (replies can no longer travel in it).
_UNANSWERED, _INLINE, _RETRY = 0, 1, 2


class SmsOrder:
    """The message-order state machine of one ``sms`` scope, and its outcome::

        OPEN ──sms.ack / settle(True)──> HANDLED        sms.send: in any state
          └──settle(False)──> FAILED                    sms.reply: held while OPEN, then by REST

    :meth:`app_send` checks one message and returns the action: :data:`ACK` for the first
    ``sms.ack`` (a later one returns None), :class:`Held` for a reply kept for the outcome,
    :class:`Send` for a text to send now, None for a reply to an event that was not handled
    (dropped: the provider delivers the event again). It raises :class:`LocalProtocolError` for an unknown or
    malformed message, for a reply in a ``status`` scope or to a sender that is not a number, and
    for a reply the provider's answer could not carry (``check_inline``); then it changes nothing.

    The webhook's answer: :meth:`answer_inline` (success: the held replies travel in it) or
    :meth:`answer_retry` (the provider's retry status). The sends each step returns are what goes
    by REST at that moment.

    Args:
        event: the provider's event.
        inline: whether the provider's success answer can carry replies.
        check_inline: raises :class:`LocalProtocolError` when the answer could not carry these
            texts (the provider's ``respond``); None: no check.
    """

    __slots__ = ("answer", "check_inline", "event", "handled", "held", "inline")

    def __init__(self, event: InboundMessage | StatusUpdate, *, inline: bool,
                 check_inline: Callable[[Sequence[str]], object] | None = None) -> None:
        self.event = event
        self.inline = inline
        self.check_inline = check_inline
        #: None until the outcome; then whether the event was handled.
        self.handled: bool | None = None
        #: Replies held for the outcome: ``(id, text)``.
        self.held: list[tuple[Any, str]] = []
        self.answer = _UNANSWERED

    def app_send(self, message: Any) -> Action:
        """Check one message from the application; returns what to do with it."""
        try:
            kind = message["type"]
        except (TypeError, KeyError, IndexError):
            raise LocalProtocolError(f"an ASGI message must be a dict with a 'type', got {message!r}") from None
        if kind == "sms.ack":
            if self.handled is None:
                self.handled = True
                return ACK
            return None
        if kind == "sms.send":
            return Send(message.get("id"), outbound_message(message))
        if kind == "sms.reply":
            return self._reply(message)
        raise LocalProtocolError(f"unexpected ASGI message {kind!r} in an sms scope (expected sms.ack, sms.reply or sms.send)")

    def _reply(self, message: Mapping[str, Any]) -> Held | Send | None:
        text = reply_text(message)
        event = self.event
        if not isinstance(event, InboundMessage):
            raise LocalProtocolError("sms.reply answers a received message; use sms.send in a status scope")
        if event.from_.kind not in (PHONE, SHORT_CODE):
            raise LocalProtocolError(f"cannot reply to {event.from_.value!r}: an {event.from_.kind} sender is not a number")
        request_id = message.get("id")
        if self.handled is False:
            return None  # the event was not handled: the provider delivers it again
        if self.handled:
            return Send(request_id, OutboundMessage(to=event.from_.value, text=text, from_=event.to.value))
        if self.inline and self.check_inline is not None:
            self.check_inline([*(t for _, t in self.held), text])
        self.held.append((request_id, text))
        return Held(request_id, text)

    def settle(self, handled: bool) -> list[Send]:
        """The outcome, when the instance ends without one (it returned: handled; it failed: not).

        Returns the held replies to send by REST now: those of a handled event the webhook answer
        cannot carry. Replies to an event that was not handled are dropped.
        """
        if self.handled is not None:
            return []
        self.handled = handled
        return self.after_outcome()

    def after_outcome(self) -> list[Send]:
        """The held replies to send by REST now that the event has its outcome."""
        if not self.handled:
            self.held = []
            return []
        if self.answer == _RETRY or not self.inline:
            return self._rest()
        return []

    def answer_inline(self) -> list[str]:
        """The webhook gets its success answer: the texts of the held replies, for it."""
        self.answer = _INLINE
        held, self.held = self.held, []
        return [text for _, text in held]

    def answer_retry(self) -> list[Send]:
        """The webhook gets the retry status: held replies can no longer travel in it."""
        self.answer = _RETRY
        return self._rest() if self.handled else []

    def _rest(self) -> list[Send]:
        event = self.event
        held, self.held = self.held, []
        if not isinstance(event, InboundMessage):  # pragma: no cover - nothing is held in a status scope
            return []
        return [Send(request_id, OutboundMessage(to=event.from_.value, text=text, from_=event.to.value))
                for request_id, text in held]
