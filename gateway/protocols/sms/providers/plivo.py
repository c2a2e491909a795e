"""Plivo Messaging: inbound messages, status callbacks, V3 signatures, Message XML replies, sends.

Sources: plivo.com/docs/messaging/api/message/handling-incoming (inbound fields),
/docs/messaging/api/message/message-status-callbacks (status fields and values),
/docs/voice/xml/request/validation (``X-Plivo-Signature-V3``/``-Ma-V3``), support article
"Will Plivo retry callbacks if the message_url is not reachable?" (retries); the signing algorithm
matches plivo-python's ``plivo/utils/signature_v3.py`` and plivo-node's ``v3Security.js``.

Signature V3: ``base64(HMAC-SHA256(auth_token, S + "." + nonce))`` where, with ``base`` the URL
without query (scheme, host, port, path) and ``Q`` the URL's query parameters sorted by key and
value and joined as ``k=v&k=v``:

* GET (and POST without parameters): ``S = base`` plus ``"?" + Q`` when ``Q`` is not empty;
* POST: ``S = base + "?" + Q + ("." if Q) + key1 + value1 + key2 + value2 …`` (sorted).

The header may list several signatures separated by commas; any may match.
``X-Plivo-Signature-Ma-V3`` is the same computed with the *main* account's token.
V2 signatures do not cover the body and are not accepted. Plivo signs no timestamp (the nonce is
random), so replays are caught by ``MessageUUID`` (:attr:`InboundMessage.dedup_key`).

Non-ASCII parameters: plivo-node signs their UTF-8 bytes; plivo-python (4.x) encodes them twice
(UTF-8 read back as Latin-1, encoded again). Both readings are accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.sms import core
from gateway.protocols.sms.core import (
    MAX_FORM_FIELDS,
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
from gateway.protocols.sms.phone import PHONE
from gateway.protocols.sms.providers.base import (
    Provider,
    basic_auth,
    equal,
    first_values,
    json_body,
    text_info,
    to_int,
    xml_escape,
)

__all__ = ["PlivoProvider", "signature_base_v3", "compute_signature_v3", "STATUS_MAP"]

SIGNATURE_HEADER = "x-plivo-signature-v3"
MAIN_ACCOUNT_SIGNATURE_HEADER = "x-plivo-signature-ma-v3"
NONCE_HEADER = "x-plivo-signature-v3-nonce"

#: Plivo message statuses -> the common vocabulary.
STATUS_MAP = {
    "queued": core.QUEUED,
    "sent": core.SENT,
    "delivered": core.DELIVERED,
    "read": core.DELIVERED,
    "undelivered": core.UNDELIVERED,
    "failed": core.FAILED,
    "rejected": core.FAILED,
}
_NO_ERROR = frozenset({"", "0", "000"})
_MEDIA_KEY = re.compile(r"Media([0-9]{1,3})")
_XML_PROLOG = '<?xml version="1.0" encoding="utf-8"?>'


def _grouped(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for key, value in pairs:
        groups.setdefault(key, []).append(value)
    return groups


def signature_base_v3(method: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """The string Plivo signs (before ``"." + nonce``) for a request to ``url`` with POST
    ``params`` (ignored for GET, whose parameters are in the URL)."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        reject(400, f"plivo webhook: the query string has more than {MAX_FORM_FIELDS} parameters")
    groups = _grouped(query)
    sorted_query = "&".join(f"{key}={value}" for key in sorted(groups) for value in sorted(groups[key]))
    post = _grouped(params) if method.upper() != "GET" else {}
    if not post:
        return base + ("?" + sorted_query if sorted_query else "")
    body = "".join(key + value for key in sorted(post) for value in sorted(post[key]))
    return base + "?" + sorted_query + ("." if sorted_query else "") + body


def _sign(auth_token: str, data: bytes) -> str:
    digest = hmac.new(auth_token.encode("utf-8"), data, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def compute_signature_v3(auth_token: str, method: str, url: str, nonce: str,
                         params: Iterable[tuple[str, str]] = ()) -> str:
    """``X-Plivo-Signature-V3`` for a request (non-ASCII signed as UTF-8, as plivo-node does)."""
    data = f"{signature_base_v3(method, url, params)}.{nonce}"
    return _sign(auth_token, data.encode("utf-8", "surrogatepass"))


def _candidates(auth_token: str, data: str) -> list[str]:
    utf8 = data.encode("utf-8", "surrogatepass")
    doubled = utf8.decode("latin-1").encode("utf-8")  # plivo-python's reading of non-ASCII
    return [_sign(auth_token, utf8)] + ([_sign(auth_token, doubled)] if doubled != utf8 else [])


class PlivoProvider(Provider):
    """A Plivo account (or sub-account).

    Args:
        auth_id: the (sub)account Auth ID, needed to send.
        auth_token: the (sub)account Auth Token (verifies ``X-Plivo-Signature-V3``; sends).
        main_auth_token: the main account's Auth Token, to also accept
            ``X-Plivo-Signature-Ma-V3`` on a sub-account (defaults to ``auth_token``).
        **settings: see :class:`Provider`.
    """

    name = "plivo"
    default_base_url = "https://api.plivo.com"
    supports_inline_reply = True
    signs_timestamp = False
    webhook_bodies = frozenset({"form"})
    retry_policy = RetryPolicy(
        failure_status=503,
        retries=True,
        deadline=8.0,
        summary=("Any non-2xx answer, or none within 8 s, is retried up to 3 times: 60 s, then "
                 "120 s, then 240 s later (inbound messages and status callbacks alike)."),
    )

    def __init__(self, *, auth_id: str | None = None, auth_token: str | None = None,
                 main_auth_token: str | None = None, **settings: Any) -> None:
        super().__init__(**settings)
        if self.verify_signatures and not auth_token:
            raise ValueError("plivo: auth_token is required to verify webhook signatures")
        self.auth_id = auth_id
        self.auth_token = auth_token
        self.main_auth_token = main_auth_token or auth_token

    # -- webhooks ------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest, *, now: float) -> None:
        """Check ``X-Plivo-Signature-V3`` (or ``-Ma-V3``) with its nonce. ``now`` is unused: Plivo
        signs no timestamp."""
        nonce = request.header(NONCE_HEADER)
        signatures = request.header(SIGNATURE_HEADER)
        main_signatures = request.header(MAIN_ACCOUNT_SIGNATURE_HEADER)
        if not nonce or not (signatures or main_signatures):
            reject(403, "plivo webhook: missing X-Plivo-Signature-V3 or its nonce header")
        if self.auth_token is None or self.main_auth_token is None:
            raise LocalProtocolError("plivo: no auth_token configured to verify signatures")
        params = request.form if request.method != "GET" else ()
        data = f"{signature_base_v3(request.method, request.url, params)}.{nonce.strip()}"
        checks = ((signatures, self.auth_token), (main_signatures, self.main_auth_token))
        matched = False
        for header, token in checks:
            if not header:
                continue
            expected = _candidates(token, data)
            for given in header.split(","):
                for candidate in expected:
                    matched |= equal(candidate, given.strip())
        if not matched:
            reject(403, "plivo webhook: X-Plivo-Signature-V3 does not match (check the auth token "
                        "and that the public URL is exactly the one configured at Plivo)")

    def _fields(self, request: WebhookRequest) -> dict[str, str]:
        if request.method not in ("GET", "POST"):
            reject(405, f"plivo webhook: unexpected method {request.method}")
        return first_values(request.params())

    def parse(self, request: WebhookRequest) -> Event:
        """A status callback when ``Status`` is present, else an inbound message."""
        fields = self._fields(request)
        message_id = fields.get("MessageUUID")
        if not message_id:
            reject(400, "plivo webhook: missing MessageUUID")
        provider_status = fields.get("Status", "").strip()
        if provider_status:
            recipient = fields.get("To")
            error_code = fields.get("ErrorCode", "").strip()
            return StatusUpdate(
                provider=self.name,
                message_id=message_id,
                status=STATUS_MAP.get(provider_status.lower(), core.UNKNOWN_STATUS),
                provider_status=provider_status,
                error_code=None if error_code in _NO_ERROR else error_code,
                to=self._address(recipient, "To", assume_international=True) if recipient else None,
                segments=to_int(fields.get("Units")),
                raw=fields,
            )
        sender = self._address(fields.get("From"), "From", assume_international=True)
        ours = self._address(fields.get("To"), "To", assume_international=True)
        text = fields.get("Text")
        if text is None:
            text = fields.get("Body", "")
        encoding, segments = text_info(text, None, to_int(fields.get("Units")))
        # MMS: Media1..MediaN per the docs (Media0.. per a support article): take every MediaN.
        indexed = sorted((int(m.group(1)), value) for key, value in fields.items()
                         if (m := _MEDIA_KEY.fullmatch(key)) and value)
        return InboundMessage(
            provider=self.name, message_id=message_id, from_=sender, to=ours, text=text,
            encoding=encoding, segments=segments, media=tuple(Media(url) for _, url in indexed),
            country=sender.country, raw=fields,
        )

    @staticmethod
    def _plain(address: Any) -> str:
        return address.value.lstrip("+") if address.kind == PHONE else address.value

    def reply_body(self, message: InboundMessage, texts: Sequence[str]) -> tuple[str, bytes] | None:
        """Plivo Message XML: ``<Response><Message src="our number" dst="sender">…``."""
        src = xml_escape(self._plain(message.to), attribute=True)
        dst = xml_escape(self._plain(message.from_), attribute=True)
        inner = "".join(f'<Message src="{src}" dst="{dst}" type="sms">{xml_escape(text)}</Message>'
                        for text in texts)
        return "application/xml; charset=utf-8", f"{_XML_PROLOG}<Response>{inner}</Response>".encode()

    def _empty_response(self) -> WebhookResponse:
        return WebhookResponse(200, (("content-type", "application/xml; charset=utf-8"),),
                               f"{_XML_PROLOG}<Response></Response>".encode())

    # -- sending -------------------------------------------------------------------------------

    def build_send(self, message: OutboundMessage) -> OutboundRequest:
        """``POST /v1/Account/{auth_id}/Message/`` with JSON ``src``, ``dst`` (digits, no ``+``),
        ``text``, and ``type=mms`` + ``media_urls``, ``url`` (status callback) when given."""
        if not (self.auth_id and self.auth_token):
            raise LocalProtocolError("plivo: auth_id and auth_token are required to send")
        recipient = self._recipient(message.to)
        sender = self._sender(message)
        data: dict[str, Any] = {
            "src": sender.lstrip("+") if sender.lstrip("+").isdigit() else sender,
            "dst": self._plain(recipient),
            "text": message.text,
        }
        if message.media_urls:
            data.update(type="mms", media_urls=list(message.media_urls))
        if message.status_callback:
            data.update(url=message.status_callback, method="POST")
        headers = (
            ("authorization", basic_auth(self.auth_id, self.auth_token)),
            ("content-type", "application/json"),
            ("accept", "application/json"),
        )
        url = self._url(f"/v1/Account/{quote(self.auth_id, safe='')}/Message/")
        return OutboundRequest("POST", url, headers, json_body(data))

    def parse_send_response(self, status: int, headers: Iterable[tuple[str, str]] | Mapping[str, str],
                            body: bytes) -> SendResult:
        """202 ``{"api_id", "message", "message_uuid": [...]}``; errors ``{"api_id", "error"}``."""
        data = self._json_answer(status, body)
        if 200 <= status < 300:
            uuids = data.get("message_uuid") if isinstance(data, dict) else None
            if isinstance(uuids, str):
                uuids = [uuids]
            if isinstance(uuids, list) and uuids and all(isinstance(u, str) and u for u in uuids):
                return SendResult(provider=self.name, message_ids=tuple(uuids), status=core.QUEUED,
                                  provider_status="queued", raw=data)
            raise self._send_error(status, "unreadable answer (no message_uuid)", raw=data, retryable=False)
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):  # some endpoints nest {"error": {"message": ...}}
            error = error.get("message") or error.get("error")
        raise self._send_error(status, error if isinstance(error, str) and error else "request refused",
                               raw=data)
