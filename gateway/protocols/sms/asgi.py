"""The ASGI ``sms`` mapping, sans-IO: scopes and events from provider events, and the checks on
what applications send. ``docs/asgi-sms.md`` is the specification; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.sms.model import InboundMessage, OutboundMessage, SendError, SendResult, StatusUpdate
from gateway.protocols.sms.phone import Address, normalize

__all__ = [
    "ASGI_VERSION",
    "SPEC_VERSION",
    "MESSAGE",
    "STATUS",
    "sms_scope",
    "receive_event",
    "status_event",
    "send_result_event",
    "DISCONNECT",
    "reply_text",
    "outbound_message",
]

ASGI_VERSION = "3.0"
#: Version of the ``sms`` mapping (docs/asgi-sms.md).
SPEC_VERSION = "1.0"
#: Values of the scope's ``kind``.
MESSAGE = "message"
STATUS = "status"

DISCONNECT: Mapping[str, Any] = {"type": "sms.disconnect"}

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
) -> dict[str, Any]:
    """The ``sms`` scope of one verified webhook (see ``docs/asgi-sms.md``).

    Args:
        event: the provider module's reading of the webhook.
        account: the configured account name.
        inline_replies: whether ``sms.reply`` goes back in the webhook answer (else by REST).
        state: the lifespan state (copied).
    """
    sender: Address | None
    recipient: Address | None
    if isinstance(event, InboundMessage):
        kind, sender, recipient = MESSAGE, event.from_, event.to
        country = event.country or sender.country
    else:
        kind, sender, recipient = STATUS, _status_sender(event), event.to
        country = sender.country if sender is not None else None
    scope: dict[str, Any] = {
        "type": "sms",
        "asgi": {"version": ASGI_VERSION, "spec_version": SPEC_VERSION},
        "kind": kind,
        "provider": event.provider,
        "account": account,
        "provider_account": event.account,
        "from": sender.value if sender is not None else None,
        "from_kind": sender.kind if sender is not None else None,
        "to": recipient.value if recipient is not None else None,
        "to_kind": recipient.kind if recipient is not None else None,
        "country": country,
        "message_id": event.message_id,
        "extensions": {"sms.reply": {"inline": inline_replies}, "sms.send": {}},
    }
    if state is not None:
        scope["state"] = state.copy()
    return scope


def receive_event(message: InboundMessage) -> dict[str, Any]:
    """``sms.receive``: the text and its details."""
    return {
        "type": "sms.receive",
        "text": message.text,
        "encoding": message.encoding,
        "segments": message.segments,
        "media": [{"url": m.url, "content_type": m.content_type} for m in message.media],
        "raw": _plain(message.raw),
    }


def status_event(update: StatusUpdate) -> dict[str, Any]:
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


def send_result_event(request_id: Any, outcome: SendResult | SendError | LocalProtocolError) -> dict[str, Any]:
    """``sms.send.result`` for the ``sms.send`` (or REST-sent ``sms.reply``) with ``id``."""
    event: dict[str, Any] = {"type": "sms.send.result", "id": request_id}
    if isinstance(outcome, SendResult):
        event.update(ok=True, message_ids=list(outcome.message_ids), status=outcome.status,
                     provider_status=outcome.provider_status, segments=outcome.segments, error=None)
        return event
    if isinstance(outcome, SendError):
        error = {"http_status": outcome.http_status, "code": outcome.code, "message": outcome.message,
                 "retryable": outcome.retryable}
    else:
        error = {"http_status": None, "code": None, "message": outcome.message, "retryable": False}
    event.update(ok=False, message_ids=[], status="failed", provider_status=None, segments=None, error=error)
    return event


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
