"""SMS over provider webhooks: the sans-IO part.

Pure functions and immutable values, no I/O and no clock: the HTTP adapter feeds a
:class:`WebhookRequest` to a provider's ``receive()`` and gets an :class:`InboundMessage`,
a :class:`StatusUpdate` or an :class:`OtherEvent` (or a
:class:`~gateway.protocols.errors.RemoteProtocolError` whose ``hint`` is the HTTP status to answer);
``respond()`` shapes the answer (inline replies where the provider has them), ``build_send()`` and
``parse_send_response()`` cover ``sms.send``. See :mod:`gateway.protocols.sms.providers.base`.
"""

from __future__ import annotations

from gateway.protocols.sms.encoding import BINARY, GSM7, UCS2, SegmentInfo, analyse, count_segments
from gateway.protocols.sms.model import (
    DELIVERED,
    FAILED,
    QUEUED,
    SENT,
    STATUSES,
    UNDELIVERED,
    UNKNOWN_STATUS,
    Concat,
    Event,
    InboundMessage,
    Media,
    OtherEvent,
    OutboundMessage,
    OutboundRequest,
    RetryPolicy,
    SendError,
    SendResult,
    StatusUpdate,
    WebhookResponse,
    join_parts,
)
from gateway.protocols.sms.phone import ALPHANUMERIC, PHONE, SHORT_CODE, UNKNOWN, Address, normalize
from gateway.protocols.sms.providers import PROVIDERS, Provider, create_provider
from gateway.protocols.sms.webhook import WebhookRequest

__all__ = [
    "ALPHANUMERIC", "BINARY", "DELIVERED", "FAILED", "GSM7", "PHONE", "PROVIDERS", "QUEUED",
    "SENT", "SHORT_CODE", "STATUSES", "UCS2", "UNDELIVERED", "UNKNOWN", "UNKNOWN_STATUS",
    "Address", "Concat", "Event", "InboundMessage", "Media", "OtherEvent", "OutboundMessage",
    "OutboundRequest", "Provider", "RetryPolicy", "SegmentInfo", "SendError", "SendResult",
    "StatusUpdate", "WebhookRequest", "WebhookResponse", "analyse", "count_segments",
    "create_provider", "join_parts", "normalize",
]
