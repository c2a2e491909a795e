"""Vonage (Nexmo) SMS API: inbound messages, delivery receipts, signed requests, sends.

Sources: developer.vonage.com/messaging/sms/guides/inbound-sms (fields, "answer 200 or 204 or we
resend for 24 hours"), /messaging/sms/guides/delivery-receipts (DLR fields and statuses),
/getting-started/concepts/signing-messages (``sig``), the Messages API signed-webhooks concept page
(JWT). Test vectors: vonage-node-sdk ``packages/sms/__tests__/__dataSets__/signature.ts``.

Signed requests (``signature_method``):

* ``md5hash`` (the dashboard default): ``md5(base + signature_secret)``, lower-case hex;
* ``md5``, ``sha1``, ``sha256``, ``sha512``: ``HMAC(signature_secret, base)``, upper-case hex;

where ``base`` is ``"&key=value"`` for every parameter except ``sig``, sorted by key, with ``&``
and ``=`` in values replaced by ``_``. Comparison ignores case. The signed ``timestamp`` parameter
must be within ``timestamp_tolerance`` of ``now`` (replay protection).

* ``jwt`` (Messages API signed webhooks): ``Authorization: Bearer <JWT>``, HS256 with the
  signature secret; claims ``iat`` (checked against the tolerance), ``api_key`` (checked when
  configured) and ``payload_hash`` (hex SHA-256 of the body, required when there is a body).

Vonage has no inline replies: answer 204 and send with :meth:`VonageProvider.build_send`.
Concatenated inbound messages arrive part by part (:attr:`InboundMessage.concat`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.sms import core
from gateway.protocols.sms import encoding as enc
from gateway.protocols.sms.core import (
    Concat,
    Event,
    InboundMessage,
    OutboundMessage,
    OutboundRequest,
    RetryPolicy,
    SendResult,
    StatusUpdate,
    WebhookRequest,
    WebhookResponse,
    reject,
)
from gateway.protocols.sms.providers.base import (
    Provider,
    check_timestamp,
    equal,
    first_values,
    text_info,
    to_int,
)

__all__ = ["VonageProvider", "signature_base", "compute_signature", "SIGNATURE_METHODS", "STATUS_MAP"]

SIGNATURE_METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512", "jwt")
_HMAC_DIGESTS = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256,
                 "sha512": hashlib.sha512}

#: SMS API DLR statuses and Messages API statuses -> the common vocabulary.
STATUS_MAP = {
    "accepted": core.SENT,
    "buffered": core.SENT,
    "submitted": core.SENT,
    "delivered": core.DELIVERED,
    "read": core.DELIVERED,
    "expired": core.UNDELIVERED,
    "undeliverable": core.UNDELIVERED,
    "failed": core.FAILED,
    "rejected": core.FAILED,
    "unknown": core.UNKNOWN_STATUS,
}
_TYPE_ENCODING = {"text": enc.GSM7, "unicode": enc.UCS2, "binary": enc.BINARY}
# SMS API send statuses worth retrying: 1 Throttled, 5 Internal Error.
_RETRYABLE_SEND_STATUSES = frozenset({"1", "5"})


def _stringify(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    try:
        return json.dumps(value, separators=(",", ":"))
    except (ValueError, RecursionError):
        reject(400, "vonage webhook: a JSON value is nested too deeply")


def signature_base(params: Mapping[str, str]) -> str:
    """The string Vonage signs: ``&key=value`` per parameter but ``sig``, keys sorted, ``&`` and
    ``=`` in values replaced by ``_``."""
    return "".join(
        "&{}={}".format(key, params[key].replace("&", "_").replace("=", "_"))
        for key in sorted(params) if key != "sig"
    )


def compute_signature(signature_secret: str, params: Mapping[str, str], method: str = "md5hash") -> str:
    """The ``sig`` value for ``params`` (lower-case hex for ``md5hash``, upper-case for HMACs)."""
    base = signature_base(params).encode("utf-8", "surrogatepass")
    secret = signature_secret.encode("utf-8")
    if method == "md5hash":
        return hashlib.md5(base + secret).hexdigest()
    if method in _HMAC_DIGESTS:
        return hmac.new(secret, base, _HMAC_DIGESTS[method]).hexdigest().upper()
    raise ValueError(f"unknown Vonage signature method {method!r}; expected one of {SIGNATURE_METHODS}")


def _b64url(segment: str) -> bytes:
    if not segment.isascii():
        raise ValueError("non-ASCII JWT segment")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class VonageProvider(Provider):
    """A Vonage SMS API account.

    Args:
        api_key, api_secret: the account's API key and secret (to send).
        signature_secret: the signature secret from the dashboard (to verify webhooks).
        signature_method: ``md5hash`` (default), ``md5``, ``sha1``, ``sha256``, ``sha512`` or
            ``jwt``, as set in the dashboard.
        **settings: see :class:`Provider`.
    """

    name = "vonage"
    default_base_url = "https://rest.nexmo.com"
    supports_inline_reply = False
    signs_timestamp = True
    webhook_bodies = frozenset({"form", "json"})
    retry_policy = RetryPolicy(
        failure_status=503,
        retries=True,
        deadline=None,
        summary=("Any answer but 200 OK or 204 No Content, or none, makes Vonage resend the "
                 "webhook, for up to 24 hours."),
    )

    def __init__(
        self,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        signature_secret: str | None = None,
        signature_method: str = "md5hash",
        **settings: Any,
    ) -> None:
        super().__init__(**settings)
        method = signature_method.lower().replace("-", "").replace("_", "")
        method = method[:-4] if method.endswith("hmac") else method
        if method not in SIGNATURE_METHODS:
            raise ValueError(f"vonage: signature_method must be one of {', '.join(SIGNATURE_METHODS)}")
        if self.verify_signatures and not signature_secret:
            raise ValueError("vonage: signature_secret is required to verify webhook signatures")
        self.api_key = api_key
        self.api_secret = api_secret
        self.signature_secret = signature_secret
        self.signature_method = method

    # -- webhooks ------------------------------------------------------------------------------

    def _fields(self, request: WebhookRequest) -> dict[str, str]:
        if request.method not in ("GET", "POST"):
            reject(405, f"vonage webhook: unexpected method {request.method}")
        if request.method == "GET":
            return first_values(request.query)
        if request.is_json:
            return {key: _stringify(value) for key, value in request.json_object().items()}
        return first_values(request.form)

    def verify(self, request: WebhookRequest, *, now: float) -> None:
        """Check the ``sig`` parameter and signed ``timestamp``, or the JWT (module docstring)."""
        if self.signature_secret is None:
            raise LocalProtocolError("vonage: no signature_secret configured to verify signatures")
        if self.signature_method == "jwt":
            self._verify_jwt(request, self.signature_secret, now=now)
            return
        fields = self._fields(request)
        signature = fields.get("sig")
        if not signature:
            reject(403, "vonage webhook: missing 'sig' parameter (is signing enabled?)")
        expected = compute_signature(self.signature_secret, fields, self.signature_method)
        if not equal(expected.lower(), signature.strip().lower()):
            reject(403, f"vonage webhook: 'sig' does not match ({self.signature_method}; check the "
                        "signature secret and method in the dashboard)")
        check_timestamp(fields.get("timestamp"), now=now, tolerance=self.timestamp_tolerance,
                        provider=self.name)

    def _verify_jwt(self, request: WebhookRequest, secret: str, *, now: float) -> None:
        authorization = request.header("authorization") or ""
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or token.count(".") != 2:
            reject(403, "vonage webhook: missing 'Authorization: Bearer <JWT>'")
        header_b64, claims_b64, signature_b64 = token.strip().split(".")
        try:
            header = json.loads(_b64url(header_b64))
            claims = json.loads(_b64url(claims_b64))
            signature = _b64url(signature_b64)
        except (ValueError, binascii.Error, RecursionError):
            reject(403, "vonage webhook: malformed JWT")
        if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
            reject(403, "vonage webhook: JWT is not an HS256 token with a claims object")
        expected = hmac.new(secret.encode("utf-8"),
                            f"{header_b64}.{claims_b64}".encode("ascii"), hashlib.sha256).digest()
        if not equal(expected, signature):
            reject(403, "vonage webhook: JWT signature does not match the signature secret")
        issued = claims.get("iat")
        if not isinstance(issued, (int, float)) or isinstance(issued, bool):
            reject(403, "vonage webhook: JWT has no 'iat' claim")
        if abs(now - issued) > self.timestamp_tolerance:
            reject(403, "vonage webhook: JWT 'iat' is outside the tolerance: stale or replayed")
        expires = claims.get("exp")
        if isinstance(expires, (int, float)) and not isinstance(expires, bool) and now > expires:
            reject(403, "vonage webhook: JWT has expired")
        if self.api_key and claims.get("api_key") not in (None, self.api_key):
            reject(403, "vonage webhook: JWT is for another api_key")
        payload_hash = claims.get("payload_hash")
        if payload_hash is None and request.body:
            reject(403, "vonage webhook: JWT has no payload_hash, so the body is not signed")
        if payload_hash is not None and not (
            isinstance(payload_hash, str)
            and equal(hashlib.sha256(request.body).hexdigest(), payload_hash.lower())
        ):
            reject(403, "vonage webhook: body does not match the JWT payload_hash")

    def parse(self, request: WebhookRequest) -> Event:
        """An inbound SMS or a delivery receipt (SMS API), or the Messages API equivalents."""
        fields = self._fields(request)
        if "message_uuid" in fields:
            return self._parse_messages_api(request.json_object() if request.is_json else fields)
        message_id = fields.get("messageId")
        if not message_id:
            reject(400, "vonage webhook: missing 'messageId'")
        account = fields.get("api-key") or None
        if "status" in fields and "text" not in fields and fields.get("type") not in _TYPE_ENCODING:
            provider_status = fields["status"]
            error_code = fields.get("err-code") or None
            recipient = fields.get("msisdn")
            return StatusUpdate(
                provider=self.name,
                message_id=message_id,
                status=STATUS_MAP.get(provider_status.lower(), core.UNKNOWN_STATUS),
                provider_status=provider_status,
                error_code=None if error_code in (None, "0") else error_code,
                to=self._address(recipient, "msisdn", assume_international=True) if recipient else None,
                account=account,
                raw=fields,
            )
        sender = self._address(fields.get("msisdn"), "msisdn", assume_international=True)
        ours = self._address(fields.get("to"), "to", assume_international=True)
        encoding = _TYPE_ENCODING.get(fields.get("type", "text"), None)
        text = "" if encoding == enc.BINARY else fields.get("text", "")
        encoding, segments = text_info(text, encoding, None)
        concat = None
        if fields.get("concat") == "true":
            total, part = to_int(fields.get("concat-total")), to_int(fields.get("concat-part"))
            reference = fields.get("concat-ref")
            if not reference or not total or not part or part > total:
                reject(400, "vonage webhook: malformed concat-ref/concat-total/concat-part")
            concat = Concat(reference, total, part)
        return InboundMessage(
            provider=self.name, message_id=message_id, from_=sender, to=ours, text=text,
            encoding=encoding, segments=segments, account=account, country=sender.country,
            concat=concat, raw=fields,
        )

    def _parse_messages_api(self, data: Mapping[str, Any]) -> Event:
        message_id = data.get("message_uuid")
        if not isinstance(message_id, str) or not message_id:
            reject(400, "vonage webhook: bad 'message_uuid'")
        status = data.get("status")
        if isinstance(status, str) and status:
            given_error = data.get("error")
            error = given_error if isinstance(given_error, dict) else {}
            recipient = data.get("to")
            return StatusUpdate(
                provider=self.name, message_id=message_id,
                status=STATUS_MAP.get(status.lower(), core.UNKNOWN_STATUS), provider_status=status,
                error_code=_stringify(error.get("title")) or None,
                error_message=_stringify(error.get("detail")) or None,
                to=self._address(recipient, "to", assume_international=True)
                if isinstance(recipient, str) and recipient else None,
                raw=data,
            )
        if data.get("channel", "sms") != "sms":
            return core.OtherEvent(self.name, f"messages:{_stringify(data.get('channel'))}", data)
        sender = self._address(data.get("from"), "from", assume_international=True)
        recipient = self._address(data.get("to"), "to", assume_international=True)
        given_text, given_sms = data.get("text"), data.get("sms")
        text = given_text if isinstance(given_text, str) else ""
        sms = given_sms if isinstance(given_sms, dict) else {}
        encoding, segments = text_info(text, None, to_int(sms.get("num_messages")))
        return InboundMessage(
            provider=self.name, message_id=message_id, from_=sender, to=recipient, text=text,
            encoding=encoding, segments=segments, country=sender.country, raw=data,
        )

    def _empty_response(self) -> WebhookResponse:
        return WebhookResponse(204)

    # -- sending -------------------------------------------------------------------------------

    def build_send(self, message: OutboundMessage) -> OutboundRequest:
        """``POST /sms/json`` (SMS API) with form fields ``api_key``, ``api_secret``, ``from``,
        ``to`` (international digits, no ``+``), ``text``, ``type=unicode`` when needed, and
        ``callback`` for a per-message delivery-receipt URL."""
        if not (self.api_key and self.api_secret):
            raise LocalProtocolError("vonage: api_key and api_secret are required to send")
        if message.media_urls:
            raise LocalProtocolError("vonage: the SMS API cannot send media")
        recipient = self._recipient(message.to)
        fields = [
            ("api_key", self.api_key),
            ("api_secret", self.api_secret),
            ("from", self._sender(message).lstrip("+")),
            ("to", recipient.value.lstrip("+")),
            ("text", message.text),
        ]
        if enc.detect_encoding(message.text) == enc.UCS2:
            fields.append(("type", "unicode"))
        if message.status_callback:
            fields.extend([("callback", message.status_callback), ("status-report-req", "1")])
        headers = (("content-type", "application/x-www-form-urlencoded"), ("accept", "application/json"))
        return OutboundRequest("POST", self._url("/sms/json"), headers, urlencode(fields).encode("ascii"))

    def parse_send_response(self, status: int, headers: Iterable[tuple[str, str]] | Mapping[str, str],
                            body: bytes) -> SendResult:
        """``{"message-count", "messages": [{"message-id", "status", "error-text"}, …]}``; a
        ``status`` other than ``"0"`` is an error, even with HTTP 200."""
        data = self._json_answer(status, body)
        messages = data.get("messages") if isinstance(data, dict) else None
        if not (200 <= status < 300) or not isinstance(messages, list) or not messages:
            raise self._send_error(status, "request refused" if status >= 300 else "unreadable answer",
                                   raw=data, retryable=None if status >= 300 else False)
        ids = []
        for item in messages:
            if not isinstance(item, dict):
                raise self._send_error(status, "unreadable answer", raw=data, retryable=False)
            code = _stringify(item.get("status"))
            if code != "0":
                given = item.get("error-text")
                text = given if isinstance(given, str) else "refused"
                raise self._send_error(status, text, code=code, raw=data,
                                       retryable=code in _RETRYABLE_SEND_STATUSES)
            if isinstance(item.get("message-id"), str) and item["message-id"]:
                ids.append(item["message-id"])
        if not ids:
            raise self._send_error(status, "unreadable answer (no message-id)", raw=data, retryable=False)
        return SendResult(provider=self.name, message_ids=tuple(ids), status=core.QUEUED,
                          provider_status="0", segments=to_int(data.get("message-count")), raw=data)
