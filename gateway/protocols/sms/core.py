"""The SMS wire core, sans-IO: the webhook request as received, what it means, what to answer,
what to send.

Every type here is immutable. The HTTP side hands a provider module a :class:`WebhookRequest`;
the provider produces :class:`InboundMessage`, :class:`StatusUpdate` or :class:`OtherEvent` from
it once verified (or raises :class:`~gateway.protocols.errors.RemoteProtocolError`, whose ``hint``
is the HTTP status to answer), shapes the :class:`WebhookResponse`, and turns an
:class:`OutboundMessage` into an :class:`OutboundRequest` for the HTTP client; the provider's
answer becomes a :class:`SendResult` or raises :class:`SendError`.

The webhook request (:class:`WebhookRequest`): the HTTP side supplies four things and nothing else:

* ``method``: the HTTP method (``"POST"``, ``"GET"``).
* ``url``: the **full public URL the provider called**, scheme, host, port (if any), path and the
  raw query string exactly as received. Providers sign this URL, so behind a TLS terminator or a
  proxy it must be rebuilt from a configured public base URL (or trusted proxy headers) plus the
  request target: never from an untrusted ``Host`` header.
* ``headers``: the request headers, either a mapping or (name, value) pairs, ``str`` or ``bytes``
  (bytes are decoded as Latin-1). Names are matched case-insensitively.
* ``body``: the raw body bytes, unmodified (signatures cover the exact bytes).

Form and JSON bodies and the query string are parsed here, lazily and strictly: a body that does not
parse raises :class:`~gateway.protocols.errors.RemoteProtocolError` with ``hint=400``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any, NoReturn, Union
from urllib.parse import parse_qsl, urlsplit

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.sms.encoding import UCS2
from gateway.protocols.sms.phone import Address

__all__ = [
    "QUEUED",
    "SENT",
    "DELIVERED",
    "UNDELIVERED",
    "FAILED",
    "UNKNOWN_STATUS",
    "STATUSES",
    "Media",
    "Concat",
    "InboundMessage",
    "join_parts",
    "StatusUpdate",
    "OtherEvent",
    "Event",
    "WebhookResponse",
    "RetryPolicy",
    "OutboundMessage",
    "OutboundRequest",
    "SendResult",
    "SendError",
    "WebhookRequest",
    "HeadersLike",
    "reject",
    "MAX_FORM_FIELDS",
]

# The common delivery-status vocabulary. Every provider's own status is mapped onto one of these
# (and kept verbatim in ``provider_status``).
#: Accepted by the provider, not yet handed to a carrier.
QUEUED = "queued"
#: Handed to the carrier; no delivery receipt yet.
SENT = "sent"
#: The carrier or handset confirmed delivery.
DELIVERED = "delivered"
#: The carrier reported that it could not deliver (unreachable handset, expired, filtered).
UNDELIVERED = "undelivered"
#: The provider could not send it at all (bad number, rejected, blocked).
FAILED = "failed"
#: The provider does not know, or sent a status this package does not know.
UNKNOWN_STATUS = "unknown"
STATUSES = frozenset({QUEUED, SENT, DELIVERED, UNDELIVERED, FAILED, UNKNOWN_STATUS})


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return value if isinstance(value, MappingProxyType) else MappingProxyType(dict(value))


@dataclass(frozen=True)
class Media:
    """One media attachment (MMS) of an inbound message: a URL at the provider."""

    url: str
    content_type: str | None = None


@dataclass(frozen=True)
class Concat:
    """One part of a concatenated message the provider did not reassemble (Vonage).

    Parts sharing ``reference`` (and sender) form one text: join them in ``part`` order
    (1-based) once all ``total`` have arrived.
    """

    reference: str
    total: int
    part: int


@dataclass(frozen=True)
class InboundMessage:
    """A text message someone sent to one of our numbers.

    Attributes:
        provider: provider name (``"twilio"``).
        message_id: the provider's id of this message (of this *part*, with ``concat``).
        from_: the sender.
        to: our number (or short code) it was sent to.
        text: the text ('' for a binary or media-only message).
        encoding: ``"GSM-7"``, ``"UCS-2"`` or ``"binary"`` (from the provider, else computed).
        segments: SMS parts it took (from the provider, else computed from ``text``).
        media: MMS attachments.
        account: the provider-side account the webhook names (Twilio ``AccountSid``, Vonage
            ``api-key``, Telnyx messaging profile), or ``None``.
        country: ISO region of the sender when known.
        concat: set when this is one part of a longer message still to be reassembled.
        raw: every field as the provider sent it (form fields, or the JSON object).
    """

    provider: str
    message_id: str
    from_: Address
    to: Address
    text: str
    encoding: str
    segments: int
    media: tuple[Media, ...] = ()
    account: str | None = None
    country: str | None = None
    concat: Concat | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", _frozen_mapping(self.raw))
        object.__setattr__(self, "media", tuple(self.media))

    @property
    def dedup_key(self) -> str:
        """Identifies this delivery: a provider's retry of the same message has the same key."""
        return f"{self.provider}:message:{self.message_id}"


def join_parts(parts: Sequence[InboundMessage]) -> InboundMessage:
    """Reassemble the parts of a concatenated message (see :class:`Concat`) into one message.

    The adapter buffers parts by ``(provider, from_, concat.reference)`` until ``concat.total``
    distinct parts are in, then calls this. The result has the first part's id, the texts joined
    in ``part`` order, ``segments == total`` and no ``concat``.

    Raises:
        LocalProtocolError: the parts are not one complete message (our misuse).
    """
    tagged = [(part.concat, part) for part in parts if part.concat is not None]
    if not tagged or len(tagged) != len(parts):
        raise LocalProtocolError("join_parts needs the parts of one concatenated message")
    concat, first = min(tagged, key=lambda item: item[0].part)
    by_part = {info.part: part for info, part in tagged}
    consistent = all((info.reference, info.total, part.from_) == (concat.reference, concat.total, first.from_)
                     for info, part in tagged)
    if not consistent or sorted(by_part) != list(range(1, concat.total + 1)) or len(tagged) != concat.total:
        raise LocalProtocolError(f"parts do not make up message {concat.reference!r} of {concat.total} parts")
    ordered = [by_part[index] for index in range(1, concat.total + 1)]
    text = "".join(p.text for p in ordered)
    encoding = UCS2 if any(p.encoding == UCS2 for p in ordered) else first.encoding
    return replace(first, text=text, encoding=encoding, segments=concat.total, concat=None,
                   media=tuple(m for p in ordered for m in p.media))


@dataclass(frozen=True)
class StatusUpdate:
    """A delivery-status callback for a message we sent.

    Attributes:
        provider: provider name.
        message_id: the id the provider gave the message when we sent it.
        status: one of :data:`STATUSES`.
        provider_status: the provider's own status word or code, verbatim.
        error_code: the provider's error code when delivery failed, else ``None``.
        error_message: the provider's error text, when it sends one.
        to: the recipient, when the callback names it.
        account: the provider-side account, when the callback names it.
        segments: parts the message took, when the callback says.
        raw: every field as the provider sent it.
    """

    provider: str
    message_id: str
    status: str
    provider_status: str
    error_code: str | None = None
    error_message: str | None = None
    to: Address | None = None
    account: str | None = None
    segments: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", _frozen_mapping(self.raw))

    @property
    def dedup_key(self) -> str:
        """Identifies this status report: a retry of the same report has the same key."""
        return f"{self.provider}:status:{self.message_id}:{self.provider_status}"


@dataclass(frozen=True)
class OtherEvent:
    """A genuine, well-formed webhook that is neither a message nor a status (a Telnyx event type
    this package does not handle, for instance). Acknowledge it (2xx) and drop it, so the provider
    does not retry it."""

    provider: str
    event_type: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", _frozen_mapping(self.raw))


Event = Union[InboundMessage, StatusUpdate, OtherEvent]


@dataclass(frozen=True)
class WebhookResponse:
    """What to answer a webhook with: status, headers (name, value), body."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True)
class RetryPolicy:
    """What a provider does when the webhook does not get the answer it wants (documented per
    provider; the adapter answers ``failure_status`` when the consumer fails or times out).

    Attributes:
        failure_status: the HTTP status to answer when the message could not be handed over.
        retries: whether the provider retries by default after ``failure_status`` or a timeout.
        deadline: seconds the provider waits for the answer before it gives up on the attempt,
            or ``None`` when it does not document one.
        summary: which statuses the provider retries, how often, and what else it does.
    """

    failure_status: int
    retries: bool
    deadline: float | None
    summary: str


@dataclass(frozen=True)
class OutboundMessage:
    """An ``sms.send`` request from a consumer.

    Attributes:
        to: the recipient, E.164 preferred (national numbers need the provider's default region).
        text: the text.
        from_: our number, short code or alphanumeric ID; the provider's ``default_from`` if unset.
        media_urls: MMS media (Twilio, Plivo, Telnyx).
        status_callback: a URL for this message's delivery-status callbacks, if wanted.
    """

    to: str
    text: str
    from_: str | None = None
    media_urls: tuple[str, ...] = ()
    status_callback: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "media_urls", tuple(self.media_urls))


@dataclass(frozen=True)
class OutboundRequest:
    """An HTTP request for the outbound client to make (TLS verified) and hand the answer to
    ``Provider.parse_send_response``."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class SendResult:
    """The provider accepted an outbound message.

    Attributes:
        provider: provider name.
        message_ids: the provider's ids; more than one where it splits long texts (Vonage).
        status: one of :data:`STATUSES` (usually ``queued``).
        provider_status: the provider's status, verbatim, if it sent one.
        segments: parts the message will take, if the provider said.
        raw: the decoded response body.
    """

    provider: str
    message_ids: tuple[str, ...]
    status: str
    provider_status: str | None = None
    segments: int | None = None
    raw: Any = field(default=None, repr=False, compare=False)

    @property
    def message_id(self) -> str:
        """The first (usually the only) message id."""
        return self.message_ids[0]


class SendError(Exception):
    """The provider refused an outbound message, or answered something unreadable.

    Attributes:
        provider: provider name.
        http_status: the HTTP status of the answer.
        code: the provider's error code, as a string, when it sent one.
        message: the provider's explanation (or ours).
        retryable: whether sending again later may succeed (rate limits, provider faults).
        raw: the decoded response body, if it could be decoded.
    """

    def __init__(
        self,
        provider: str,
        http_status: int,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = False,
        raw: Any = None,
    ) -> None:
        super().__init__(f"{provider}: {message} (HTTP {http_status}" + (f", code {code})" if code else ")"))
        self.provider = provider
        self.http_status = http_status
        self.code = code
        self.message = message
        self.retryable = retryable
        self.raw = raw

    def __repr__(self) -> str:
        return (f"SendError({self.provider!r}, {self.http_status!r}, {self.message!r}, "
                f"code={self.code!r}, retryable={self.retryable!r})")


# -- the webhook request -------------------------------------------------------------------------

HeadersLike = Union[
    Mapping[Union[str, bytes], Union[str, bytes]],
    Iterable[tuple[Union[str, bytes], Union[str, bytes]]],
]

#: Upper bound on form fields and query parameters (a DoS guard; real webhooks have < 60).
MAX_FORM_FIELDS = 1000


def reject(status: int, message: str) -> NoReturn:
    """Raise the package's one remote error: ``RemoteProtocolError(message, hint=status)``."""
    raise RemoteProtocolError(message, hint=status)


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


def _normalize_headers(headers: HeadersLike) -> tuple[tuple[str, str], ...]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((_text(name).strip().lower(), _text(value).strip()) for name, value in items)


@dataclass(frozen=True, init=False)
class WebhookRequest:
    """One webhook request, as received (see the module docstring for what the adapter supplies).

    Attributes:
        method: upper-case HTTP method.
        url: the full public URL the provider called, including the query string.
        headers: (lower-case name, value) pairs in arrival order.
        body: the raw body.
    """

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def __init__(self, method: str, url: str, headers: HeadersLike = (), body: bytes = b"") -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise LocalProtocolError(
                f"the webhook URL must be the absolute public URL the provider called, got {url!r}"
            )
        object.__setattr__(self, "method", method.upper())
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "headers", _normalize_headers(headers))
        object.__setattr__(self, "body", bytes(body))

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case); repeated headers are joined with ``","``."""
        wanted = name.lower()
        values = [value for key, value in self.headers if key == wanted]
        return ",".join(values) if values else None

    @property
    def media_type(self) -> str:
        """The body's media type, lower-case, without parameters (``""`` when absent)."""
        return (self.header("content-type") or "").split(";", 1)[0].strip().lower()

    @property
    def is_json(self) -> bool:
        """Whether the body is declared as JSON (``application/json`` or ``+json``)."""
        media = self.media_type
        return media == "application/json" or media.endswith("+json")

    @cached_property
    def query(self) -> tuple[tuple[str, str], ...]:
        """The URL's query parameters, decoded, blanks kept, in order.

        Parsed leniently, as the providers' SDKs do (``urllib.parse.parse_qs`` defaults), because
        the signatures are computed over that reading.
        """
        try:
            return tuple(
                parse_qsl(urlsplit(self.url).query, keep_blank_values=True,
                          max_num_fields=MAX_FORM_FIELDS)
            )
        except ValueError:
            reject(400, f"the query string has more than {MAX_FORM_FIELDS} parameters")

    @cached_property
    def form(self) -> tuple[tuple[str, str], ...]:
        """The body parsed as ``application/x-www-form-urlencoded`` (strict UTF-8), in order.

        Raises:
            RemoteProtocolError: hint 400, the body is not valid form encoding.
        """
        try:
            text = self.body.decode("utf-8")
            return tuple(
                parse_qsl(text, keep_blank_values=True, strict_parsing=True,
                          errors="strict", max_num_fields=MAX_FORM_FIELDS)
            )
        except UnicodeDecodeError:
            reject(400, "the form body is not valid UTF-8 (or has bad percent-encoding)")
        except ValueError as exc:
            reject(400, f"the body is not valid form encoding: {exc}")

    @cached_property
    def json_body(self) -> Any:
        """The body parsed as JSON.

        Raises:
            RemoteProtocolError: hint 400, the body is not valid JSON.
        """
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError) as exc:
            reject(400, f"the body is not valid JSON: {type(exc).__name__}")

    def json_object(self) -> dict[str, Any]:
        """The body parsed as a JSON *object*.

        Raises:
            RemoteProtocolError: hint 400, invalid JSON or not an object.
        """
        data = self.json_body
        if not isinstance(data, dict):
            reject(400, "the JSON body is not an object")
        return data

    def params(self) -> tuple[tuple[str, str], ...]:
        """The webhook's parameters: the query for GET, the form body for other methods."""
        if self.method == "GET":
            return self.query
        return self.form
