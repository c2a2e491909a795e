# -*- test-case-name: tests.unit.mqtt -*-
"""Client-to-server flow state of one connection: packet identifiers, QoS 1/2 acknowledgement
after handling, Receive Maximum, topic aliases and subscription requests awaiting an answer.

Used by :class:`~gateway.protocols.mqtt.core.MqttServerConnection`, and (``from_server=True``)
by the connector's client core for the messages a broker sends it; the methods either
raise :class:`RemoteProtocolError` (the client broke the protocol) or
:class:`LocalProtocolError` (the upper layer misused the API), and never write bytes.
"""

from __future__ import annotations

from dataclasses import replace

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.mqtt.events import ServerOptions
from gateway.protocols.mqtt.packets import PubAck, PubComp, PubRec, Publish, Subscribe
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties
from gateway.protocols.mqtt.reasons import PUBACK_CODES, ReasonCode
from gateway.protocols.mqtt.topics import SHARED_PREFIX, is_wildcard_filter

__all__ = ["InboundFlow"]

# Inbound QoS 1/2 packet identifier states.
_QOS1 = 1  # delivered, waiting for the upper layer's ack -> PUBACK
_QOS2 = 2  # delivered, waiting for the upper layer's ack -> PUBREC
_RELEASE = 3  # PUBREC sent, waiting for the client's PUBREL -> PUBCOMP


def _error(message: str, reason: ReasonCode) -> RemoteProtocolError:
    return RemoteProtocolError(message, hint=reason)


class InboundFlow:
    """The client-to-server half of a session (see the module documentation)."""

    def __init__(self, options: ServerOptions, *, from_server: bool = False) -> None:
        self._options = options
        #: The peer is a server: its PUBLISH may carry Subscription Identifiers, and one beyond
        #: our Receive Maximum is tolerated (Mosquitto 2.0 sends one more after acknowledgements;
        #: the adapter stops reading at the maximum, which bounds what a server makes us hold).
        self._from_server = from_server
        self.level = 4
        self._states: dict[int, int] = {}  # packet id -> _QOS1 / _QOS2 / _RELEASE
        #: QoS 1/2 publishes delivered and not yet acknowledged by the upper layer.
        self.awaiting_app = 0
        self._subscribes: dict[int, int] = {}  # packet id -> number of filters
        self._unsubscribes: dict[int, int] = {}
        self._aliases: dict[int, str] = {}

    # -- session ------------------------------------------------------------------------------

    def restore(self, released: frozenset[int]) -> None:
        """Resume the QoS 2 identifiers PUBREC'd in an earlier connection."""
        for packet_id in released:
            self._states[packet_id] = _RELEASE

    def released(self) -> frozenset[int]:
        """The QoS 2 identifiers PUBREC'd and awaiting PUBREL (for the session state)."""
        return frozenset(pid for pid, state in self._states.items() if state == _RELEASE)

    # -- PUBLISH / PUBREL ---------------------------------------------------------------------

    def on_publish(self, packet: Publish) -> tuple[Publish | None, PubAck | PubRec | None]:
        """Check a client PUBLISH; return (message to deliver or None, packet to answer or None).

        Raises:
            RemoteProtocolError: a 5.0 limit broken, an alias unknown, an identifier in use.
        """
        if self.level == 5:
            packet = self._check_v5(packet)
        qos = packet.qos
        packet_id = packet.packet_id
        if not qos or packet_id is None:
            return packet, None
        state = self._states.get(packet_id)
        if state is None:
            if packet_id in self._subscribes or packet_id in self._unsubscribes:
                raise _error(f"packet id {packet_id} is in use", ReasonCode.PROTOCOL_ERROR)
            if self.level == 5 and len(self._states) >= self._options.receive_maximum and not self._from_server:
                # §3.3.4 [MQTT-3.3.4-9]: more unacknowledged QoS > 0 than our Receive Maximum.
                raise _error("receive maximum exceeded", ReasonCode.RECEIVE_MAXIMUM_EXCEEDED)
            self._states[packet_id] = _QOS1 if qos == 1 else _QOS2
            self.awaiting_app += 1
            return packet, None
        if state == _RELEASE:
            if qos == 2:
                # §4.3.3 method B: delivered already; answer again, never deliver twice.
                return None, PubRec(packet_id)
            if self.level == 5:
                return None, PubAck(packet_id, ReasonCode.PACKET_IDENTIFIER_IN_USE)
            raise _error(f"packet id {packet_id} is in use", ReasonCode.PROTOCOL_ERROR)
        # A re-send of a message the upper layer is still handling: its ack will answer it.
        return None, None

    def _check_v5(self, packet: Publish) -> Publish:
        options = self._options
        if packet.qos > options.maximum_qos:
            # [MQTT-3.2.2-11]: above the Maximum QoS we advertised -> 0x9B.
            raise _error(f"QoS {packet.qos} not supported", ReasonCode.QOS_NOT_SUPPORTED)
        if packet.retain and not options.retain_available:
            raise _error("retain not supported", ReasonCode.RETAIN_NOT_SUPPORTED)  # [-3.2.2-14]
        props = packet.properties
        if props is EMPTY_PROPERTIES:
            return packet
        if props.subscription_identifiers and not self._from_server:
            # [MQTT-3.3.4-6]: a client's PUBLISH carries no Subscription Identifier.
            raise _error("subscription identifier from a client", ReasonCode.PROTOCOL_ERROR)
        alias = props.topic_alias
        if alias is None:
            return packet
        if alias > options.topic_alias_maximum:
            # §3.3.2.3.4: above our Topic Alias Maximum -> 0x94 Topic Alias invalid.
            raise _error(f"topic alias {alias} above the maximum", ReasonCode.TOPIC_ALIAS_INVALID)
        topic = packet.topic
        if topic:
            self._aliases[alias] = topic  # set or replace the mapping
        else:
            known = self._aliases.get(alias)
            if known is None:
                # §3.3.2.3.4: an empty topic with an alias that has no mapping.
                raise _error(f"unknown topic alias {alias}", ReasonCode.PROTOCOL_ERROR)
            topic = known
        # The upper layer sees the full topic; aliases are a wire matter.
        props = replace(props, topic_alias=None)
        return replace(packet, topic=topic, properties=props or EMPTY_PROPERTIES)

    def ack(
        self, packet_id: int, reason_code: int, properties: Properties
    ) -> PubAck | PubRec | bytes:
        """Build the PUBACK/PUBREC for ``ack_publish()``, without changing any state yet.

        Returns the packet, or directly its bytes for the common two-byte form (success,
        no properties), which spares an object and an encode on the hot path.

        Raises:
            LocalProtocolError: nothing awaits an ack under that id, or a bad reason code.
        """
        state = self._states.get(packet_id)
        if state != _QOS1 and state != _QOS2:
            raise LocalProtocolError(f"no publish with packet id {packet_id} awaits an ack")
        if self.level == 4 or (not reason_code and properties is EMPTY_PROPERTIES):
            # 3.1.1 acks carry no reason; 5.0 omits a success reason without properties.
            header = b"\x40\x02" if state == _QOS1 else b"\x50\x02"
            return header + packet_id.to_bytes(2, "big")
        if reason_code not in PUBACK_CODES:
            raise LocalProtocolError(f"0x{reason_code:02X} is not a PUBACK/PUBREC reason")
        if state == _QOS1:
            return PubAck(packet_id, reason_code, properties)
        return PubRec(packet_id, reason_code, properties)

    def ack_success(self, packet_id: int) -> bytes:
        """:meth:`ack` and :meth:`acked` in one for a success without properties: the
        two-byte PUBACK/PUBREC (the hot path of acknowledging).

        Raises:
            LocalProtocolError: nothing awaits an ack under that id.
        """
        states = self._states
        state = states.get(packet_id)
        if state == _QOS1:
            del states[packet_id]
            header = b"\x40\x02"
        elif state == _QOS2:
            states[packet_id] = _RELEASE
            header = b"\x50\x02"
        else:
            raise LocalProtocolError(f"no publish with packet id {packet_id} awaits an ack")
        self.awaiting_app -= 1
        return header + packet_id.to_bytes(2, "big")

    def acked(self, packet_id: int, reason_code: int) -> None:
        """Record that the answer built by :meth:`ack` went out."""
        if self._states[packet_id] == _QOS2 and (reason_code < 0x80 or self.level == 4):
            self._states[packet_id] = _RELEASE
        else:
            # A PUBACK ends QoS 1; a failed PUBREC ends QoS 2 (§4.3.3).
            del self._states[packet_id]
        self.awaiting_app -= 1

    def on_pubrel(self, packet_id: int) -> PubComp:
        """Complete an inbound QoS 2 exchange; return the PUBCOMP to send."""
        state = self._states.get(packet_id)
        if state == _RELEASE:
            del self._states[packet_id]
            return PubComp(packet_id)
        if state is None:
            # §4.3.3: "Packet Identifier not found" (5.0); 3.1.1 just completes the exchange.
            reason = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND if self.level == 5 else 0
            return PubComp(packet_id, reason)
        raise _error(f"PUBREL before PUBREC for packet id {packet_id}", ReasonCode.PROTOCOL_ERROR)

    # -- SUBSCRIBE / UNSUBSCRIBE --------------------------------------------------------------

    def _check_id_free(self, packet_id: int) -> None:
        if packet_id in self._states or packet_id in self._subscribes:
            raise _error(f"packet id {packet_id} is in use", ReasonCode.PROTOCOL_ERROR)
        if packet_id in self._unsubscribes:
            raise _error(f"packet id {packet_id} is in use", ReasonCode.PROTOCOL_ERROR)

    def on_subscribe(self, packet: Subscribe) -> None:
        """Check a SUBSCRIBE against the advertised capabilities and remember it."""
        self._check_id_free(packet.packet_id)
        if self.level == 5:
            options = self._options
            if packet.properties.subscription_identifiers:
                if not options.subscription_identifier_available:
                    raise _error(
                        "subscription identifiers are not supported",
                        ReasonCode.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                    )
            for sub in packet.subscriptions:
                shared = sub.topic_filter.startswith(SHARED_PREFIX)
                if shared and not options.shared_subscription_available:
                    raise _error(
                        "shared subscriptions are not supported",
                        ReasonCode.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
                    )
                wildcard = is_wildcard_filter(sub.topic_filter)
                if wildcard and not options.wildcard_subscription_available:
                    raise _error(
                        "wildcard subscriptions are not supported",
                        ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
                    )
        self._subscribes[packet.packet_id] = len(packet.subscriptions)

    def on_unsubscribe(self, packet_id: int, count: int) -> None:
        """Remember an UNSUBSCRIBE of ``count`` filters."""
        self._check_id_free(packet_id)
        self._unsubscribes[packet_id] = count

    def subscribe_count(self, packet_id: int, unsubscribe: bool = False) -> int:
        """How many filters the pending (UN)SUBSCRIBE has.

        Raises:
            LocalProtocolError: no such request awaits an answer.
        """
        pending = self._unsubscribes if unsubscribe else self._subscribes
        count = pending.get(packet_id)
        if count is None:
            what = "UNSUBSCRIBE" if unsubscribe else "SUBSCRIBE"
            raise LocalProtocolError(f"no {what} with packet id {packet_id} awaits an answer")
        return count

    def answered(self, packet_id: int, unsubscribe: bool = False) -> None:
        """Forget a (UN)SUBSCRIBE once its SUBACK/UNSUBACK went out."""
        del (self._unsubscribes if unsubscribe else self._subscribes)[packet_id]
