"""SMS over provider webhooks.

The layers, named as in every protocol package (``docs/architecture.md``):

* :mod:`~gateway.protocols.sms.core`: the wire core, pure: the :class:`WebhookRequest` the HTTP side
  hands a provider module, and the events, answers and sends it reads and builds
  (:class:`InboundMessage`, :class:`StatusUpdate`, :class:`OtherEvent`, :class:`WebhookResponse`,
  :class:`OutboundMessage`...); provider modules (:mod:`gateway.protocols.sms.providers`) verify and
  parse each provider's webhooks (``receive()``, or a
  :class:`~gateway.protocols.errors.RemoteProtocolError` whose ``hint`` is the HTTP status to
  answer), shape answers (``respond()``, with inline replies where the provider has them) and
  build REST sends (``build_send()``, ``parse_send_response()``);
* :mod:`~gateway.protocols.sms.asgi`: the ``sms`` scope and events and the order of the
  application's messages (:class:`~gateway.protocols.sms.asgi.SmsOrder`), pure;
* :mod:`~gateway.protocols.sms.adapter`: the webhook bridge (the ASGI application the HTTP
  listener serves) and the application instance of each event;
* :mod:`~gateway.protocols.sms.listener` and :mod:`~gateway.protocols.sms.config`;
* by collaborator: :mod:`~gateway.protocols.sms.sender` (REST sends), :mod:`~gateway.protocols.sms.dedup`
  (handled deliveries, split messages), :mod:`~gateway.protocols.sms.phone`,
  :mod:`~gateway.protocols.sms.encoding`, :mod:`~gateway.protocols.sms.testhook` (signed test webhooks).

Re-exported here: the wire core's values and the provider registry.
"""

from __future__ import annotations

from gateway.protocols.sms.core import (
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
    WebhookRequest,
    WebhookResponse,
    join_parts,
)
from gateway.protocols.sms.encoding import BINARY, GSM7, UCS2, SegmentInfo, analyse, count_segments
from gateway.protocols.sms.phone import ALPHANUMERIC, PHONE, SHORT_CODE, UNKNOWN, Address, normalize
from gateway.protocols.sms.providers import PROVIDERS, Provider, create_provider

__all__ = [
    "ALPHANUMERIC", "BINARY", "DELIVERED", "FAILED", "GSM7", "PHONE", "PROVIDERS", "QUEUED",
    "SENT", "SHORT_CODE", "STATUSES", "UCS2", "UNDELIVERED", "UNKNOWN", "UNKNOWN_STATUS",
    "Address", "Concat", "Event", "InboundMessage", "Media", "OtherEvent", "OutboundMessage",
    "OutboundRequest", "Provider", "RetryPolicy", "SegmentInfo", "SendError", "SendResult",
    "StatusUpdate", "WebhookRequest", "WebhookResponse", "analyse", "count_segments",
    "create_provider", "join_parts", "normalize",
]
