"""The interface every SMS provider module implements, and the helpers they share.

A provider object is configured once per account (credentials, base URL, default region) and is
then a set of pure functions: no sockets, no clock (``now`` is passed in), no shared state, so one
object serves concurrent requests. The adapter's duties, in order::

    event = provider.receive(request, now=clock())      # verify + parse; RemoteProtocolError(hint)
    ...hand ``event`` to a consumer...
    response = provider.respond(event, replies)          # the 2xx to answer with
    # or, when the consumer failed or timed out:
    response = provider.failure_response()               # a status that makes the provider retry

    outbound = provider.build_send(OutboundMessage(...)) # for sms.send
    result = provider.parse_send_response(status, headers, body)  # or raises SendError
"""

from __future__ import annotations

import abc
import base64
import hmac
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.sms import encoding as enc
from gateway.protocols.sms.core import (
    Event,
    InboundMessage,
    OutboundMessage,
    OutboundRequest,
    RetryPolicy,
    SendError,
    SendResult,
    WebhookRequest,
    WebhookResponse,
    reject,
)
from gateway.protocols.sms.phone import PHONE, SHORT_CODE, Address, check_region, normalize

__all__ = ["Provider", "DEFAULT_TIMESTAMP_TOLERANCE"]

#: The media type of form bodies.
FORM = "application/x-www-form-urlencoded"
#: Seconds a signed timestamp may differ from our clock (Telnyx's SDK uses 300 s too).
DEFAULT_TIMESTAMP_TOLERANCE = 300.0


class Provider(abc.ABC):
    """One SMS provider account: verify and parse its webhooks, shape replies, build sends.

    Args:
        base_url: the provider's API base URL (tests point it at a local server).
        default_from: our sender (number, short code or alphanumeric ID) for ``sms.send``.
        default_region: ISO region for national-format numbers and short codes (``"GB"``).
        verify_signatures: ``False`` turns verification off (the adapter must warn at start-up);
            otherwise the credentials verification needs are required.
        timestamp_tolerance: seconds a signed timestamp may be off our clock (replay window).

    Raises:
        ValueError: a setting is invalid or a credential verification needs is missing.
    """

    #: Provider name, as used in configuration and in the ``sms`` scope.
    name: ClassVar[str]
    #: The production API base URL.
    default_base_url: ClassVar[str]
    #: What the provider does when the webhook fails (documented per provider).
    retry_policy: ClassVar[RetryPolicy]
    #: Whether replies can be sent inline in the webhook response.
    supports_inline_reply: ClassVar[bool] = False
    #: Whether the signature covers a timestamp, so that stale requests (replays) are rejected.
    signs_timestamp: ClassVar[bool] = False
    #: The bodies the provider's webhooks come with: ``"form"`` (``application/x-www-form-urlencoded``)
    #: and/or ``"json"`` (``application/json`` or ``+json``); any other declared type gets 415.
    webhook_bodies: ClassVar[frozenset[str]] = frozenset({"form"})

    def __init__(
        self,
        *,
        base_url: str | None = None,
        default_from: str | None = None,
        default_region: str | None = None,
        verify_signatures: bool = True,
        timestamp_tolerance: float = DEFAULT_TIMESTAMP_TOLERANCE,
    ) -> None:
        self.base_url = (base_url if base_url is not None else self.default_base_url).rstrip("/")
        if self.base_url and not self.base_url.startswith(("https://", "http://")):
            raise ValueError(f"{self.name}: base_url must be an http(s) URL, got {base_url!r}")
        check_region(default_region)
        if not (isinstance(timestamp_tolerance, (int, float)) and math.isfinite(timestamp_tolerance)
                and timestamp_tolerance > 0):
            raise ValueError(f"{self.name}: timestamp_tolerance must be a positive number of seconds")
        self.default_from = default_from
        self.default_region = default_region.upper() if default_region else None
        self.verify_signatures = verify_signatures
        self.timestamp_tolerance = float(timestamp_tolerance)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} base_url={self.base_url!r}>"

    # -- webhooks ------------------------------------------------------------------------------

    @abc.abstractmethod
    def verify(self, request: WebhookRequest, *, now: float) -> None:
        """Check the provider's signature (and timestamp, where it signs one).

        Args:
            request: the webhook request.
            now: the current Unix time in seconds.

        Raises:
            RemoteProtocolError: hint 403 for a missing, wrong or stale signature; hint 400 when the
                body cannot be read to check it.
        """

    @abc.abstractmethod
    def parse(self, request: WebhookRequest) -> Event:
        """Read an (already verified) webhook.

        Returns:
            An :class:`InboundMessage`, a :class:`StatusUpdate`, or an :class:`OtherEvent` to
            acknowledge and drop.

        Raises:
            RemoteProtocolError: hint 400 for a malformed body or missing fields, 405 for a method
                the provider never uses.
        """

    def receive(self, request: WebhookRequest, *, now: float) -> Event:
        """:meth:`check_body_type`, :meth:`verify` (unless verification is off for this account),
        then :meth:`parse`."""
        self.check_body_type(request)
        if self.verify_signatures:
            self.verify(request, now=now)
        return self.parse(request)

    def check_body_type(self, request: WebhookRequest) -> None:
        """Refuse a body declared as a type the provider never sends (a ``Content-Type`` not in
        :attr:`webhook_bodies`). A request without ``Content-Type`` passes (a GET; a body is then
        read as the provider's parser reads it, and must still parse).

        Raises:
            RemoteProtocolError: hint 415.
        """
        media = request.media_type
        if not media:
            return
        kind = "json" if request.is_json else "form" if media == FORM else None
        if kind not in self.webhook_bodies:
            expected = " or ".join(sorted(FORM if body == "form" else "application/json" for body in self.webhook_bodies))
            reject(415, f"{self.name} webhook: Content-Type {media} is not {expected}")

    def reply_body(self, message: InboundMessage, texts: Sequence[str]) -> tuple[str, bytes] | None:
        """The webhook response body that sends ``texts`` back to the sender of ``message``.

        Returns:
            ``(content_type, body)``, or ``None`` when the provider has no inline replies (then use
            :meth:`build_send`).

        Raises:
            LocalProtocolError: a text cannot be carried (characters XML forbids).
        """
        return None

    def respond(self, event: Event | None = None, texts: Sequence[str] = ()) -> WebhookResponse:
        """The success answer to a webhook, carrying inline replies where supported.

        Raises:
            LocalProtocolError: ``texts`` given for a status update, for a provider without
                inline replies, or for a sender that is not a number (an alphanumeric sender ID).
        """
        texts = list(texts)
        if isinstance(event, InboundMessage):
            if texts and event.from_.kind not in (PHONE, SHORT_CODE):
                raise LocalProtocolError(
                    f"cannot reply to {event.from_.value!r}: an {event.from_.kind} sender is not a number"
                )
            body = self.reply_body(event, texts)
            if body is not None:
                return WebhookResponse(200, (("content-type", body[0]),), body[1])
        if texts:
            raise LocalProtocolError(
                f"{self.name} cannot reply inline to this webhook; send the reply with sms.send"
            )
        return self._empty_response()

    def _empty_response(self) -> WebhookResponse:
        return WebhookResponse(200, (("content-type", "text/plain; charset=utf-8"),), b"")

    def failure_response(self) -> WebhookResponse:
        """The answer when the consumer failed or timed out: a status the provider retries on
        (see :attr:`retry_policy`)."""
        return WebhookResponse(
            self.retry_policy.failure_status,
            (("content-type", "text/plain; charset=utf-8"), ("retry-after", "60")),
            b"message not accepted, try again later\n",
        )

    @staticmethod
    def error_response(error: RemoteProtocolError) -> WebhookResponse:
        """The answer to a webhook that :meth:`receive` rejected (its ``hint`` as the status)."""
        status = error.hint if isinstance(error.hint, int) and 400 <= error.hint < 600 else 400
        return WebhookResponse(status, (("content-type", "text/plain; charset=utf-8"),),
                               error.message.encode("utf-8", "replace") + b"\n")

    # -- sending -------------------------------------------------------------------------------

    @abc.abstractmethod
    def build_send(self, message: OutboundMessage) -> OutboundRequest:
        """The HTTP request that sends ``message`` through the provider's REST API.

        Raises:
            LocalProtocolError: no sender, a recipient that is not a number, missing credentials.
        """

    @abc.abstractmethod
    def parse_send_response(self, status: int, headers: Iterable[tuple[str, str]] | Mapping[str, str],
                            body: bytes) -> SendResult:
        """Read the provider's answer to :meth:`build_send`'s request.

        Raises:
            SendError: the provider refused the message or answered something unreadable.
        """

    # -- helpers for subclasses ----------------------------------------------------------------

    def _address(self, raw: Any, what: str, *, assume_international: bool = False,
                 country_hint: str | None = None) -> Address:
        if not isinstance(raw, str) or not raw.strip():
            reject(400, f"{self.name} webhook: missing or empty {what!r}")
        return normalize(raw, default_region=self.default_region,
                         assume_international=assume_international, country_hint=country_hint)

    def _recipient(self, to: str) -> Address:
        address = normalize(to, default_region=self.default_region)
        if address.kind not in (PHONE, SHORT_CODE):
            raise LocalProtocolError(f"{self.name}: cannot send to {to!r}: not a phone number or short code")
        return address

    def _sender(self, message: OutboundMessage) -> str:
        sender = message.from_ or self.default_from
        if not sender:
            raise LocalProtocolError(f"{self.name}: no sender: set 'from' or the account's default_from")
        return sender

    def _url(self, path: str) -> str:
        if not self.base_url:
            raise LocalProtocolError(f"{self.name}: no base_url configured to send to")
        return self.base_url + path

    def _send_error(self, status: int, message: str, *, code: Any = None, raw: Any = None,
                    retryable: bool | None = None) -> SendError:
        if retryable is None:
            retryable = status == 429 or status >= 500
        return SendError(self.name, status, message, code=None if code is None else str(code),
                         retryable=retryable, raw=raw)

    def _json_answer(self, status: int, body: bytes) -> Any:
        """The decoded JSON answer, or ``None`` when the body is not JSON."""
        try:
            return json.loads(body) if body.strip() else None
        except (ValueError, RecursionError):
            return None


# -- module-level helpers ----------------------------------------------------------------------


def first_values(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """A dict of the first value of each key (as web frameworks' ``to_dict()`` do)."""
    result: dict[str, str] = {}
    for key, value in pairs:
        result.setdefault(key, value)
    return result


def equal(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time comparison of two strings or byte strings (any characters)."""
    a_bytes = a.encode("utf-8", "surrogatepass") if isinstance(a, str) else a
    b_bytes = b.encode("utf-8", "surrogatepass") if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` header value for HTTP Basic authentication (RFC 7617, UTF-8)."""
    token = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
    return f"Basic {token}"


def check_timestamp(value: str | None, *, now: float, tolerance: float, provider: str) -> int:
    """Parse a signed Unix timestamp and reject it (403) when missing or outside ``tolerance``."""
    if value is None or not value.strip().isascii() or not value.strip().isdigit():
        reject(403, f"{provider} webhook: missing or malformed signed timestamp")
    stamp = int(value.strip())
    if abs(now - stamp) > tolerance:
        reject(403, f"{provider} webhook: signed timestamp is {now - stamp:+.0f} s off our clock "
                    f"(tolerance {tolerance:.0f} s): stale or replayed request")
    return stamp


def to_int(value: Any) -> int | None:
    """A non-negative int from a provider field (``"2"``, ``2``), or ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def text_info(text: str, encoding: str | None, segments: int | None) -> tuple[str, int]:
    """The encoding and segment count of an inbound text: the provider's when given, else computed
    (under the provider's encoding when it names one)."""
    if encoding not in (enc.GSM7, enc.UCS2, enc.BINARY):
        encoding = None  # absent, or a name this package does not know: compute it
    if encoding is not None and segments:
        return encoding, segments
    try:
        info = enc.analyse(text, encoding if encoding in (enc.GSM7, enc.UCS2) else None)
    except ValueError:  # the provider says GSM-7 but the text is not: count what it is
        info = enc.analyse(text)
    return encoding or info.encoding, segments or info.segments


_XML_FORBIDDEN = frozenset(chr(c) for c in range(0x20) if chr(c) not in "\t\n\r") | {"\ufffe", "\uffff"}


def xml_escape(text: str, *, attribute: bool = False) -> str:
    """Escape ``text`` for XML character data (or a double-quoted attribute).

    Raises:
        LocalProtocolError: ``text`` has characters XML 1.0 cannot carry (controls, surrogates).
    """
    for ch in text:
        if ch in _XML_FORBIDDEN or "\ud800" <= ch <= "\udfff":
            raise LocalProtocolError(f"reply text has a character XML cannot carry: U+{ord(ch):04X}")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if attribute:
        text = text.replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    return text


def json_body(data: Any) -> bytes:
    """Compact UTF-8 JSON for outbound requests."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
