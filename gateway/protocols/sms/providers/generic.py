"""A generic JSON webhook for any SMS source without a module of its own (an in-house SMSC
bridge, a modem, a provider not covered here). The format is ours, documented here.

Inbound message (``POST``, ``Content-Type: application/json``)::

    {"type": "message", "id": "m-1", "from": "+447400123456", "to": "+441134960000",
     "text": "hello", "media": [{"url": "https://…", "content_type": "image/png"}],
     "encoding": "GSM-7", "segments": 1, "account": "optional"}

``encoding`` and ``segments`` are optional (computed from ``text``); ``media`` is optional.

Delivery status::

    {"type": "status", "id": "m-1", "status": "delivered", "error_code": null,
     "error_message": null, "to": "+447400123456"}

``status`` is one of ``queued sent delivered undelivered failed unknown`` (others map to
``unknown``).

Signature (replay-protected): headers ``X-SMS-Timestamp: <unix seconds>`` and
``X-SMS-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>``. Several
comma-separated ``v1=`` entries may be sent while rotating secrets; any may match.

Inline replies: the webhook answer is ``{"replies": [{"to": "<sender>", "text": "…"}, …]}`` with
``Content-Type: application/json``. Retries: the sender should retry on any 5xx or no answer.

Sending (``build_send``): ``POST <base_url>`` with JSON ``{"to", "from", "text", "media_urls",
"status_callback"}`` and ``Authorization: Bearer <send_token>`` when configured; the answer is 2xx
``{"id": "…", "status": "queued"}`` (or ``{"ids": [...]}``), errors any non-2xx with
``{"error": "…", "code": "…"}``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.sms import core
from gateway.protocols.sms.core import (
    Event,
    InboundMessage,
    Media,
    OutboundMessage,
    OutboundRequest,
    RetryPolicy,
    SendResult,
    StatusUpdate,
    WebhookRequest,
    reject,
)
from gateway.protocols.sms.providers.base import (
    Provider,
    check_timestamp,
    equal,
    json_body,
    text_info,
    to_int,
)

__all__ = ["GenericProvider", "compute_signature", "SIGNATURE_HEADER", "TIMESTAMP_HEADER"]

SIGNATURE_HEADER = "x-sms-signature"
TIMESTAMP_HEADER = "x-sms-timestamp"


def compute_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-SMS-Signature`` value: ``v1=`` + hex HMAC-SHA256 of ``timestamp.body``."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "v1=" + digest.hexdigest()


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class GenericProvider(Provider):
    """A source speaking the generic JSON format (module docstring).

    Args:
        secret: the shared HMAC secret (to verify).
        send_token: a bearer token for the send endpoint, if it wants one.
        base_url: the full URL ``build_send`` posts to (no default).
        **settings: see :class:`Provider`.
    """

    name = "generic"
    default_base_url = ""
    supports_inline_reply = True
    signs_timestamp = True
    webhook_bodies = frozenset({"json"})
    retry_policy = RetryPolicy(
        failure_status=503,
        retries=True,
        deadline=None,
        summary="Defined by this format: the sender retries on any 5xx answer or none.",
    )

    def __init__(self, *, secret: str | None = None, send_token: str | None = None,
                 **settings: Any) -> None:
        super().__init__(**settings)
        if self.verify_signatures and not secret:
            raise ValueError("generic: secret is required to verify webhook signatures")
        self.secret = secret
        self.send_token = send_token

    def verify(self, request: WebhookRequest, *, now: float) -> None:
        """Check ``X-SMS-Signature`` over ``timestamp.body`` and the timestamp's age."""
        signature = request.header(SIGNATURE_HEADER)
        timestamp = request.header(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            reject(403, "generic webhook: missing X-SMS-Signature or X-SMS-Timestamp header")
        if self.secret is None:
            raise LocalProtocolError("generic: no secret configured to verify signatures")
        check_timestamp(timestamp, now=now, tolerance=self.timestamp_tolerance, provider=self.name)
        expected = compute_signature(self.secret, timestamp.strip(), request.body)
        matched = False
        for given in signature.split(","):
            matched |= equal(expected, given.strip().lower())
        if not matched:
            reject(403, "generic webhook: X-SMS-Signature does not match")

    def parse(self, request: WebhookRequest) -> Event:
        """``type: message`` -> :class:`InboundMessage`; ``type: status`` -> :class:`StatusUpdate`."""
        if request.method != "POST":
            reject(405, f"generic webhook: unexpected method {request.method}")
        data = request.json_object()
        kind = data.get("type")
        message_id = _str(data.get("id"))
        if kind not in ("message", "status"):
            reject(400, "generic webhook: 'type' must be 'message' or 'status'")
        if not message_id:
            reject(400, "generic webhook: missing 'id'")
        if kind == "status":
            status = _str(data.get("status"))
            if not status:
                reject(400, "generic webhook: missing 'status'")
            code = data.get("error_code")
            return StatusUpdate(
                provider=self.name, message_id=message_id,
                status=status.lower() if status.lower() in core.STATUSES else core.UNKNOWN_STATUS,
                provider_status=status,
                error_code=str(code) if isinstance(code, (str, int)) and not isinstance(code, bool)
                and code != "" else None,
                error_message=_str(data.get("error_message")),
                to=self._address(data["to"], "to") if _str(data.get("to")) else None,
                account=_str(data.get("account")), raw=data,
            )
        sender = self._address(data.get("from"), "from")
        recipient = self._address(data.get("to"), "to")
        text = data.get("text", "")
        if not isinstance(text, str):
            reject(400, "generic webhook: 'text' must be a string")
        encoding = _str(data.get("encoding"))
        if encoding not in (None, "GSM-7", "UCS-2", "binary"):
            reject(400, "generic webhook: 'encoding' must be GSM-7, UCS-2 or binary")
        encoding, segments = text_info(text, encoding, to_int(data.get("segments")))
        media_items = data.get("media") or []
        if not isinstance(media_items, list):
            reject(400, "generic webhook: 'media' must be a list")
        media = []
        for item in media_items:
            if not isinstance(item, dict) or not _str(item.get("url")):
                reject(400, "generic webhook: each media item needs a 'url'")
            media.append(Media(item["url"], _str(item.get("content_type"))))
        return InboundMessage(
            provider=self.name, message_id=message_id, from_=sender, to=recipient, text=text,
            encoding=encoding, segments=segments, media=tuple(media),
            account=_str(data.get("account")), country=sender.country, raw=data,
        )

    def reply_body(self, message: InboundMessage, texts: Sequence[str]) -> tuple[str, bytes] | None:
        """``{"replies": [{"to": sender, "text": …}, …]}``."""
        replies = [{"to": message.from_.value, "text": text} for text in texts]
        return "application/json", json_body({"replies": replies})

    def build_send(self, message: OutboundMessage) -> OutboundRequest:
        """``POST <base_url>`` with the JSON described in the module docstring."""
        data: dict[str, Any] = {"to": self._recipient(message.to).value, "from": self._sender(message),
                                "text": message.text}
        if message.media_urls:
            data["media_urls"] = list(message.media_urls)
        if message.status_callback:
            data["status_callback"] = message.status_callback
        headers = [("content-type", "application/json"), ("accept", "application/json")]
        if self.send_token:
            headers.insert(0, ("authorization", f"Bearer {self.send_token}"))
        return OutboundRequest("POST", self._url(""), tuple(headers), json_body(data))

    def parse_send_response(self, status: int, headers: Iterable[tuple[str, str]] | Mapping[str, str],
                            body: bytes) -> SendResult:
        """2xx ``{"id"}``/``{"ids"}`` with an optional ``status``; otherwise ``{"error", "code"}``."""
        data = self._json_answer(status, body)
        if 200 <= status < 300:
            if isinstance(data, dict):
                given = data.get("ids")
                ids: list[Any] = given if isinstance(given, list) else [data.get("id")]
                if ids and all(isinstance(i, str) and i for i in ids):
                    provider_status = _str(data.get("status"))
                    normal = (provider_status or core.QUEUED).lower()
                    return SendResult(
                        provider=self.name, message_ids=tuple(ids),
                        status=normal if normal in core.STATUSES else core.UNKNOWN_STATUS,
                        provider_status=provider_status, segments=to_int(data.get("segments")),
                        raw=data,
                    )
            raise self._send_error(status, "unreadable answer (no id)", raw=data, retryable=False)
        error = data.get("error") if isinstance(data, dict) else None
        code = data.get("code") if isinstance(data, dict) else None
        raise self._send_error(status, error if isinstance(error, str) and error else "request refused",
                               code=code if isinstance(code, (str, int)) and not isinstance(code, bool)
                               else None, raw=data)
