# -*- test-case-name: tests.unit.mqtt -*-
"""MQTT 3.1.1 and 5.0. This package exports the sans-IO wire core; the other layers are
:mod:`.asgi` (the ASGI ``mqtt`` mapping), :mod:`.adapter` (the Twisted adapter),
:mod:`.listener` and :mod:`.config` (configuration → listener), :mod:`.websocket` (MQTT over
WebSocket) and :mod:`.broker` (the built-in broker and its driver).

* :mod:`.codec` - ``decode(buf, protocol_level=..., max_packet_size=...)`` and
  ``encode(packet, protocol_level)`` for every control packet of both versions, with
  :mod:`.datatypes` (the data representation of §1.5);
* :mod:`.packets`, :mod:`.properties`, :mod:`.reasons` - the packet dataclasses, the typed
  5.0 properties and the reason codes;
* :mod:`.topics` - topic name/filter validation, wildcard matching, shared subscriptions;
* :mod:`.core` - :class:`MqttServerConnection`, the server-side state machine
  (``receive_data`` / ``events_received`` / decision methods / ``data_to_send`` /
  ``next_deadline``), with its two flows (:mod:`.inbound`, :mod:`.outbound`), events and
  session state (:mod:`.events`).

Peer errors surface as :class:`~gateway.protocols.errors.RemoteProtocolError` whose ``hint`` is
the :class:`ReasonCode`; misuse of the API as
:class:`~gateway.protocols.errors.LocalProtocolError`.
"""

from __future__ import annotations

from gateway.protocols.mqtt.codec import MAX_PACKET_SIZE, decode, encode, peek_connect_level
from gateway.protocols.mqtt.core import MqttServerConnection
from gateway.protocols.mqtt.events import (
    AuthReceived,
    ConnectionClosed,
    ConnectionState,
    ConnectReceived,
    DisconnectReceived,
    Event,
    OutboundMessage,
    PubAckReceived,
    PubCompReceived,
    PublishReceived,
    PublishStatus,
    PubRecReceived,
    ServerOptions,
    SessionState,
    SubscribeReceived,
    UnsubscribeReceived,
)
from gateway.protocols.mqtt.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    PubRec,
    PubRel,
    Publish,
    RetainHandling,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties, PropertyId
from gateway.protocols.mqtt.reasons import (
    ConnectReturnCode,
    PacketType,
    ReasonCode,
    to_connect_return_code,
)
from gateway.protocols.mqtt.topics import (
    InvalidTopicError,
    is_wildcard_filter,
    parse_shared_subscription,
    topic_matches,
    validate_topic_filter,
    validate_topic_name,
)

__all__ = [
    "EMPTY_PROPERTIES",
    "MAX_PACKET_SIZE",
    "Auth",
    "AuthReceived",
    "ConnAck",
    "Connect",
    "ConnectReceived",
    "ConnectReturnCode",
    "ConnectionClosed",
    "ConnectionState",
    "Disconnect",
    "DisconnectReceived",
    "Event",
    "InvalidTopicError",
    "MqttServerConnection",
    "OutboundMessage",
    "Packet",
    "PacketType",
    "PingReq",
    "PingResp",
    "Properties",
    "PropertyId",
    "PubAck",
    "PubAckReceived",
    "PubComp",
    "PubCompReceived",
    "PubRec",
    "PubRecReceived",
    "PubRel",
    "Publish",
    "PublishReceived",
    "PublishStatus",
    "ReasonCode",
    "RetainHandling",
    "ServerOptions",
    "SessionState",
    "SubAck",
    "Subscribe",
    "SubscribeReceived",
    "Subscription",
    "UnsubAck",
    "Unsubscribe",
    "UnsubscribeReceived",
    "Will",
    "decode",
    "encode",
    "is_wildcard_filter",
    "parse_shared_subscription",
    "peek_connect_level",
    "to_connect_return_code",
    "topic_matches",
    "validate_topic_filter",
    "validate_topic_name",
]
