"""Telnyx Messaging (API v2): inbound messages, delivery events, Ed25519 signatures, sends.

Sources: developers.telnyx.com/docs/messaging/messages/receiving-webhooks (events, signature,
"respond 2xx within 2 seconds", retries), /api-reference/callbacks/inbound-message and
/api-reference/callbacks/delivery-update (payloads), the Messages API reference (send).

Signature: header ``telnyx-signature-ed25519`` is the base64 Ed25519 signature, by Telnyx's key,
of ``f"{telnyx-timestamp}|"`` followed by the raw body; verify it with the account's public key
(base64, from the portal). The signed timestamp must be within ``timestamp_tolerance`` (300 s, as
Telnyx's SDK) of ``now``: replay protection.

Telnyx has no inline replies: answer 200 and send with :meth:`TelnyxProvider.build_send`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.sms import core
from gateway.protocols.sms.core import (
    Event,
    InboundMessage,
    Media,
    OtherEvent,
    OutboundMessage,
    OutboundRequest,
    RetryPolicy,
    SendResult,
    StatusUpdate,
    WebhookRequest,
    reject,
)
from gateway.protocols.sms.providers.base import Provider, check_timestamp, json_body, text_info, to_int

__all__ = ["TelnyxProvider", "signed_payload", "STATUS_MAP"]

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"

#: Per-recipient ``to[].status`` values -> the common vocabulary.
STATUS_MAP = {
    "queued": core.QUEUED,
    "sending": core.QUEUED,
    "sent": core.SENT,
    "delivered": core.DELIVERED,
    "sending_failed": core.FAILED,
    "delivery_failed": core.UNDELIVERED,
    "expired": core.UNDELIVERED,
    "delivery_unconfirmed": core.UNKNOWN_STATUS,
}
_STATUS_EVENTS = frozenset({"message.sent", "message.finalized"})


def signed_payload(timestamp: str, body: bytes) -> bytes:
    """The bytes Telnyx signs: ``timestamp|body``."""
    return f"{timestamp}|".encode("ascii") + body


def _load_public_key(key: str | bytes) -> Ed25519PublicKey:
    raw: bytes
    if isinstance(key, bytes):
        raw = key
    else:
        text = key.strip()
        try:
            raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            raise ValueError(
                "telnyx: public_key must be the base64 (or hex) Ed25519 key from the portal"
            ) from None
    if len(raw) != 32:
        raise ValueError("telnyx: public_key must decode to 32 bytes (an Ed25519 public key)")
    return Ed25519PublicKey.from_public_bytes(raw)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class TelnyxProvider(Provider):
    """A Telnyx messaging profile.

    Args:
        api_key: the API v2 key (to send).
        public_key: the account's Ed25519 public key, base64 as the portal shows it (to verify).
        messaging_profile_id: send through this profile (number pool) when no sender is given.
        **settings: see :class:`Provider`.
    """

    name = "telnyx"
    default_base_url = "https://api.telnyx.com"
    supports_inline_reply = False
    signs_timestamp = True
    webhook_bodies = frozenset({"json"})
    retry_policy = RetryPolicy(
        failure_status=503,
        retries=True,
        deadline=2.0,
        summary=("Any non-2xx answer, or none within 2 s, is retried: up to 3 attempts per URL, "
                 "then the failover URL (per-message or messaging-profile) if one is configured."),
    )

    def __init__(self, *, api_key: str | None = None, public_key: str | bytes | None = None,
                 messaging_profile_id: str | None = None, **settings: Any) -> None:
        super().__init__(**settings)
        if self.verify_signatures and not public_key:
            raise ValueError("telnyx: public_key is required to verify webhook signatures")
        self.public_key = _load_public_key(public_key) if public_key else None
        self.api_key = api_key
        self.messaging_profile_id = messaging_profile_id

    # -- webhooks ------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest, *, now: float) -> None:
        """Check ``telnyx-signature-ed25519`` over ``timestamp|body`` and the timestamp's age."""
        signature = request.header(SIGNATURE_HEADER)
        timestamp = request.header(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            reject(403, "telnyx webhook: missing telnyx-signature-ed25519 or telnyx-timestamp header")
        if self.public_key is None:
            raise LocalProtocolError("telnyx: no public_key configured to verify signatures")
        check_timestamp(timestamp, now=now, tolerance=self.timestamp_tolerance, provider=self.name)
        try:
            raw_signature = base64.b64decode(signature.strip(), validate=True)
        except (ValueError, binascii.Error):
            reject(403, "telnyx webhook: signature is not base64")
        if len(raw_signature) != 64:
            reject(403, "telnyx webhook: signature is not 64 bytes")
        try:
            self.public_key.verify(raw_signature, signed_payload(timestamp.strip(), request.body))
        except InvalidSignature:
            reject(403, "telnyx webhook: signature does not match (check the public key)")

    def parse(self, request: WebhookRequest) -> Event:
        """``message.received`` -> message; ``message.sent``/``message.finalized`` -> status;
        other event types -> :class:`OtherEvent`."""
        if request.method != "POST":
            reject(405, f"telnyx webhook: unexpected method {request.method}")
        document = request.json_object()
        data = document.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("event_type"), str):
            reject(400, "telnyx webhook: no data.event_type")
        event_type = data["event_type"]
        payload = data.get("payload")
        if event_type != "message.received" and event_type not in _STATUS_EVENTS:
            return OtherEvent(self.name, event_type, document)
        if not isinstance(payload, dict) or not _str(payload.get("id")):
            reject(400, f"telnyx webhook: {event_type} without payload.id")
        message_id = payload["id"]
        recipients = payload.get("to")
        if isinstance(recipients, dict):
            recipients = [recipients]
        first_to = recipients[0] if isinstance(recipients, list) and recipients else None
        first_to = first_to if isinstance(first_to, dict) else {}
        account = _str(payload.get("messaging_profile_id"))
        if event_type in _STATUS_EVENTS:
            provider_status = _str(first_to.get("status")) or event_type
            errors = payload.get("errors")
            error = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
            code = error.get("code")
            return StatusUpdate(
                provider=self.name,
                message_id=message_id,
                status=STATUS_MAP.get(provider_status.lower(), core.UNKNOWN_STATUS),
                provider_status=provider_status,
                error_code=str(code) if isinstance(code, (str, int)) and not isinstance(code, bool)
                and code != "" else None,
                error_message=_str(error.get("detail")) or _str(error.get("title")),
                to=self._address(first_to["phone_number"], "to.phone_number")
                if _str(first_to.get("phone_number")) else None,
                account=account,
                segments=to_int(payload.get("parts")),
                raw=document,
            )
        sender_info = payload.get("from")
        sender_raw = sender_info.get("phone_number") if isinstance(sender_info, dict) else sender_info
        sender = self._address(sender_raw, "from.phone_number")
        recipient = self._address(first_to.get("phone_number"), "to.phone_number")
        given_text = payload.get("text")
        text = given_text if isinstance(given_text, str) else ""
        media = []
        items = payload.get("media")
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and _str(item.get("url")):
                media.append(Media(item["url"], _str(item.get("content_type"))))
        encoding, segments = text_info(text, _str(payload.get("encoding")), to_int(payload.get("parts")))
        return InboundMessage(
            provider=self.name, message_id=message_id, from_=sender, to=recipient, text=text,
            encoding=encoding, segments=segments, media=tuple(media), account=account,
            country=sender.country, raw=document,
        )

    # -- sending -------------------------------------------------------------------------------

    def build_send(self, message: OutboundMessage) -> OutboundRequest:
        """``POST /v2/messages`` with JSON ``from`` (or ``messaging_profile_id``), ``to``,
        ``text``, ``media_urls`` and ``webhook_url``; ``Authorization: Bearer <api_key>``."""
        if not self.api_key:
            raise LocalProtocolError("telnyx: api_key is required to send")
        data: dict[str, Any] = {"to": self._recipient(message.to).value}
        if message.from_ or self.default_from or not self.messaging_profile_id:
            data["from"] = self._sender(message)
        if self.messaging_profile_id:
            data["messaging_profile_id"] = self.messaging_profile_id
        data["text"] = message.text
        if message.media_urls:
            data["media_urls"] = list(message.media_urls)
        if message.status_callback:
            data["webhook_url"] = message.status_callback
        headers = (
            ("authorization", f"Bearer {self.api_key}"),
            ("content-type", "application/json"),
            ("accept", "application/json"),
        )
        return OutboundRequest("POST", self._url("/v2/messages"), headers, json_body(data))

    def parse_send_response(self, status: int, headers: Iterable[tuple[str, str]] | Mapping[str, str],
                            body: bytes) -> SendResult:
        """200 ``{"data": {"id", "to": [{"status"}], "parts"}}``; errors
        ``{"errors": [{"code", "title", "detail"}]}``."""
        answer = self._json_answer(status, body)
        if 200 <= status < 300:
            data = answer.get("data") if isinstance(answer, dict) else None
            if isinstance(data, dict) and _str(data.get("id")):
                recipients = data.get("to")
                first = recipients[0] if isinstance(recipients, list) and recipients else {}
                provider_status = _str(first.get("status")) if isinstance(first, dict) else None
                return SendResult(
                    provider=self.name, message_ids=(data["id"],),
                    status=STATUS_MAP.get((provider_status or "queued").lower(), core.UNKNOWN_STATUS),
                    provider_status=provider_status, segments=to_int(data.get("parts")), raw=answer,
                )
            raise self._send_error(status, "unreadable answer (no data.id)", raw=answer, retryable=False)
        errors = answer.get("errors") if isinstance(answer, dict) else None
        error = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
        message = _str(error.get("detail")) or _str(error.get("title")) or "request refused"
        code = error.get("code")
        if not isinstance(code, (str, int)) or isinstance(code, bool):
            code = None
        raise self._send_error(status, message, code=code, raw=answer)
