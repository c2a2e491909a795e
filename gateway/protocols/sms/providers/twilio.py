"""Twilio Programmable Messaging: inbound webhooks, status callbacks, TwiML replies, sends.

Sources: twilio.com/docs/usage/webhooks/webhooks-security (``X-Twilio-Signature``),
/docs/messaging/guides/webhook-request (fields), /docs/usage/webhooks/webhooks-connection-overrides
(retries), /docs/messaging/api/message-resource (send, statuses); the signing algorithm matches
twilio-python's ``twilio/request_validator.py`` (9.x), whose unit-test vectors are in our tests.

Signature: ``base64(HMAC-SHA1(auth_token, url + key1 + value1 + key2 + value2 ...))`` over the full
URL and the POST parameters sorted by key (repeated keys: each distinct value, sorted). Twilio is
inconsistent about the default port, so the URL is tried without and with ``:443``/``:80``. For a
JSON body the URL carries ``bodySHA256=<hex sha256 of the body>`` and the HMAC covers the URL only.
Twilio signs no timestamp: there is no replay window to check; duplicates are caught by
``MessageSid`` (:attr:`InboundMessage.dedup_key`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

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
    WebhookResponse,
    reject,
)
from gateway.protocols.sms.providers.base import (
    Provider,
    basic_auth,
    equal,
    first_values,
    text_info,
    to_int,
    xml_escape,
)

__all__ = ["TwilioProvider", "compute_signature", "body_sha256", "url_variants", "STATUS_MAP"]

SIGNATURE_HEADER = "x-twilio-signature"

#: Twilio message statuses (MessageEnumStatus) -> the common vocabulary.
STATUS_MAP = {
    "accepted": core.QUEUED,
    "scheduled": core.QUEUED,
    "queued": core.QUEUED,
    "sending": core.QUEUED,
    "sent": core.SENT,
    "delivered": core.DELIVERED,
    "read": core.DELIVERED,
    "undelivered": core.UNDELIVERED,
    "partially_delivered": core.UNDELIVERED,
    "failed": core.FAILED,
    "canceled": core.FAILED,
}
_INBOUND_STATUSES = frozenset({"received", "receiving"})
_XML_PROLOG = '<?xml version="1.0" encoding="UTF-8"?>'


def compute_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """Twilio's ``X-Twilio-Signature`` for ``url`` and POST ``params`` (as twilio-python computes
    it: keys sorted, each key's distinct values sorted)."""
    values: dict[str, set[str]] = {}
    for key, value in params:
        values.setdefault(key, set()).add(value)
    data = url + "".join(key + value for key in sorted(values) for value in sorted(values[key]))
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8", "surrogatepass"), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode("ascii")


def body_sha256(body: bytes) -> str:
    """The ``bodySHA256`` query value Twilio adds for JSON bodies: hex SHA-256 of the raw body."""
    return hashlib.sha256(body).hexdigest()


def url_variants(url: str) -> list[str]:
    """``url`` as given, without its port, and with its (default) port: Twilio signs either."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host, port = hostport, ""
    if not hostport.endswith("]") and ":" in hostport:
        host, port = hostport.rsplit(":", 1)
    if not port:
        port = "443" if parts.scheme == "https" else "80"
    without = urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}"))
    with_port = urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}:{port}"))
    return list(dict.fromkeys([url, without, with_port]))


class TwilioProvider(Provider):
    """A Twilio account.

    Args:
        auth_token: the account's Auth Token (verifies webhooks; sends unless an API key is set).
        account_sid: the account SID (``AC…``), needed to send.
        api_key_sid, api_key_secret: an API key to send with instead of the Auth Token.
        messaging_service_sid: send through this Messaging Service when no sender is given.
        **settings: see :class:`Provider`.
    """

    name = "twilio"
    default_base_url = "https://api.twilio.com"
    supports_inline_reply = True
    signs_timestamp = False
    webhook_bodies = frozenset({"form", "json"})
    retry_policy = RetryPolicy(
        failure_status=503,
        retries=False,
        deadline=15.0,
        summary=(
            "No retry by default: a 4xx/5xx answer, or none within 15 s (10 s to connect), is logged "
            "as error 11200/11205 and Twilio calls the Fallback URL once, if one is configured. "
            "Connection overrides in the webhook URL's fragment add retries, e.g. '#rc=3&rp=5xx' "
            "(rc: retry count, max 5; rp: 4xx, 5xx, ct, rt or all)."
        ),
    )

    def __init__(
        self,
        *,
        auth_token: str | None = None,
        account_sid: str | None = None,
        api_key_sid: str | None = None,
        api_key_secret: str | None = None,
        messaging_service_sid: str | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(**settings)
        if self.verify_signatures and not auth_token:
            raise ValueError("twilio: auth_token is required to verify webhook signatures")
        if bool(api_key_sid) != bool(api_key_secret):
            raise ValueError("twilio: api_key_sid and api_key_secret go together")
        self.auth_token = auth_token
        self.account_sid = account_sid
        self.api_key_sid = api_key_sid
        self.api_key_secret = api_key_secret
        self.messaging_service_sid = messaging_service_sid

    # -- webhooks ------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest, *, now: float) -> None:
        """Check ``X-Twilio-Signature`` (see the module docstring). ``now`` is unused: Twilio signs
        no timestamp."""
        signature = request.header(SIGNATURE_HEADER)
        if not signature:
            reject(403, "twilio webhook: missing X-Twilio-Signature header")
        if self.auth_token is None:
            raise LocalProtocolError("twilio: no auth_token configured to verify signatures")
        declared_hash = first_values(request.query).get("bodySHA256")
        params: Sequence[tuple[str, str]] = ()
        if declared_hash is not None:
            if not equal(body_sha256(request.body), declared_hash.lower()):
                reject(403, "twilio webhook: body does not match its bodySHA256")
        elif request.method != "GET" and request.is_json:
            reject(403, "twilio webhook: JSON body without bodySHA256 is not covered by the signature")
        elif request.method != "GET":
            params = request.form
        for candidate in url_variants(request.url):
            if equal(compute_signature(self.auth_token, candidate, params), signature.strip()):
                return
        reject(403, "twilio webhook: X-Twilio-Signature does not match (check the auth token "
                    "and that the public URL is exactly the one configured at Twilio)")

    def _fields(self, request: WebhookRequest) -> dict[str, Any]:
        if request.method not in ("GET", "POST"):
            reject(405, f"twilio webhook: unexpected method {request.method}")
        if request.method == "GET":
            return first_values(request.query)
        if request.is_json:
            return {k: v for k, v in request.json_object().items() if isinstance(v, str)}
        return first_values(request.form)

    def parse(self, request: WebhookRequest) -> Event:
        """An inbound message, or a status callback when ``MessageStatus`` is not ``received``."""
        fields = self._fields(request)
        message_id = fields.get("MessageSid") or fields.get("SmsMessageSid") or fields.get("SmsSid")
        if not message_id:
            reject(400, "twilio webhook: missing MessageSid")
        provider_status = (fields.get("MessageStatus") or fields.get("SmsStatus") or "").strip()
        account = fields.get("AccountSid") or None
        if provider_status and provider_status.lower() not in _INBOUND_STATUSES:
            to = fields.get("To")
            return StatusUpdate(
                provider=self.name,
                message_id=message_id,
                status=STATUS_MAP.get(provider_status.lower(), core.UNKNOWN_STATUS),
                provider_status=provider_status,
                error_code=fields.get("ErrorCode") or None,
                error_message=fields.get("ErrorMessage") or None,
                to=self._address(to, "To", country_hint=fields.get("ToCountry")) if to else None,
                account=account,
                segments=to_int(fields.get("NumSegments")),
                raw=fields,
            )
        sender = self._address(fields.get("From"), "From", country_hint=fields.get("FromCountry"))
        recipient = self._address(fields.get("To"), "To", country_hint=fields.get("ToCountry"))
        text = fields.get("Body", "")
        encoding, segments = text_info(text, None, to_int(fields.get("NumSegments")))
        media = []
        for index in range(min(to_int(fields.get("NumMedia")) or 0, 100)):
            url = fields.get(f"MediaUrl{index}")
            if url:
                media.append(Media(url, fields.get(f"MediaContentType{index}") or None))
        return InboundMessage(
            provider=self.name,
            message_id=message_id,
            from_=sender,
            to=recipient,
            text=text,
            encoding=encoding,
            segments=segments,
            media=tuple(media),
            account=account,
            country=sender.country or (fields.get("FromCountry") or None),
            raw=fields,
        )

    @staticmethod
    def twiml(texts: Sequence[str]) -> bytes:
        """A TwiML messaging response with one ``<Message>`` per text (``<Response />`` if none),
        as twilio-python's ``MessagingResponse`` writes it."""
        if not texts:
            return (_XML_PROLOG + "<Response />").encode("utf-8")
        inner = "".join(f"<Message>{xml_escape(text)}</Message>" for text in texts)
        return (_XML_PROLOG + f"<Response>{inner}</Response>").encode("utf-8")

    def reply_body(self, message: InboundMessage, texts: Sequence[str]) -> tuple[str, bytes] | None:
        """TwiML ``<Response><Message>…</Message></Response>``; Twilio sends each to the sender."""
        return "text/xml; charset=utf-8", self.twiml(texts)

    def _empty_response(self) -> WebhookResponse:
        # An empty TwiML document: Twilio logs a warning (12300) for a non-XML answer.
        return WebhookResponse(200, (("content-type", "text/xml; charset=utf-8"),), self.twiml(()))

    # -- sending -------------------------------------------------------------------------------

    def build_send(self, message: OutboundMessage) -> OutboundRequest:
        """``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with form fields ``To``,
        ``From`` (or ``MessagingServiceSid``), ``Body``, ``MediaUrl``…, ``StatusCallback``."""
        if not self.account_sid:
            raise LocalProtocolError("twilio: account_sid is required to send")
        if self.api_key_sid and self.api_key_secret:
            auth = basic_auth(self.api_key_sid, self.api_key_secret)
        elif self.auth_token:
            auth = basic_auth(self.account_sid, self.auth_token)
        else:
            raise LocalProtocolError("twilio: auth_token or an API key is required to send")
        fields = [("To", self._recipient(message.to).value)]
        if message.from_ or self.default_from or not self.messaging_service_sid:
            fields.append(("From", self._sender(message)))
        else:
            fields.append(("MessagingServiceSid", self.messaging_service_sid))
        fields.append(("Body", message.text))
        fields.extend(("MediaUrl", url) for url in message.media_urls)
        if message.status_callback:
            fields.append(("StatusCallback", message.status_callback))
        url = self._url(f"/2010-04-01/Accounts/{quote(self.account_sid, safe='')}/Messages.json")
        headers = (
            ("authorization", auth),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        )
        return OutboundRequest("POST", url, headers, urlencode(fields).encode("ascii"))

    def parse_send_response(self, status: int, headers: Iterable[tuple[str, str]] | Mapping[str, str],
                            body: bytes) -> SendResult:
        """201 with the Message resource (``sid``, ``status``, ``num_segments``); errors are
        ``{"code", "message", "more_info", "status"}``."""
        data = self._json_answer(status, body)
        if 200 <= status < 300:
            if isinstance(data, dict) and isinstance(data.get("sid"), str) and data["sid"]:
                provider_status = data.get("status") if isinstance(data.get("status"), str) else None
                return SendResult(
                    provider=self.name,
                    message_ids=(data["sid"],),
                    status=STATUS_MAP.get((provider_status or "queued").lower(), core.UNKNOWN_STATUS),
                    provider_status=provider_status,
                    segments=to_int(data.get("num_segments")),
                    raw=data,
                )
            raise self._send_error(status, "unreadable answer (no message sid)", raw=data, retryable=False)
        if isinstance(data, dict):
            given = data.get("message")
            message = given if isinstance(given, str) else "request refused"
            raise self._send_error(status, message, code=data.get("code"), raw=data)
        raise self._send_error(status, "request refused", raw=data)
