# -*- test-case-name: tests.unit.mqtt -*-
"""Server-to-client flow state of one connection: packet identifier allocation, QoS 1/2
exchanges, the client's Receive Maximum (send quota, §4.9), queueing, outbound topic aliases,
the client's Maximum Packet Size, and re-sending on session resume (§4.4).

Used by :class:`~gateway.protocols.mqtt.core.MqttServerConnection`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.mqtt.codec import MAX_PACKET_SIZE, encode
from gateway.protocols.mqtt.events import (
    OutboundMessage,
    PubAckReceived,
    PubCompReceived,
    PublishStatus,
    PubRecReceived,
    ServerOptions,
)
from gateway.protocols.mqtt.packets import (
    PubAck,
    PubComp,
    PubRec,
    PubRel,
    Publish,
    new_publish,
)
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties
from gateway.protocols.mqtt.reasons import ReasonCode

__all__ = ["OutboundFlow"]


#: An outbound message's PUBLISH fields: topic, payload, qos, retain, properties.
_Fields = tuple[str, bytes, int, bool, Properties]


def _protocol_error(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, hint=ReasonCode.PROTOCOL_ERROR)


class OutboundFlow:
    """The server-to-client half of a session.

    Args:
        options: the server options (queue and in-flight caps).
        out: the connection's output list; encoded packets (PUBLISH, PUBREL) are appended to it.
    """

    def __init__(self, options: ServerOptions, out: list[bytes]) -> None:
        self._options = options
        self._out = out
        self._report = options.acknowledgement_events
        self.level = 4
        #: The send quota: min(client's Receive Maximum, our max_outbound_inflight).
        self.window = options.max_outbound_inflight
        #: The client's Maximum Packet Size (5.0), else the protocol's maximum.
        self.max_packet_size = MAX_PACKET_SIZE
        #: The client's Topic Alias Maximum when outbound aliases are enabled, else 0.
        self.alias_maximum = 0
        self._aliases: dict[str, int] = {}
        # Every unacknowledged QoS 1/2 message by packet identifier, as the fields of its
        # PUBLISH (topic, payload, qos, retain, properties): packets and OutboundMessages are
        # made only for re-sends and snapshots.
        self._messages: dict[int, _Fields] = {}
        self._released: set[int] = set()  # QoS 2 messages whose PUBREL went out (§4.3.3)
        self._resend: dict[int, None] = {}  # ordered: resumed messages not re-sent yet
        # Messages waiting for the send quota, with the shared encoding when there is one:
        # (topic, payload, qos, retain, properties, wire).
        self._queue: deque[tuple[str, bytes, int, bool, Properties, tuple[bytes, bytes] | None]] = deque()
        self._inflight = 0  # messages sent on this connection and not completed
        self._next_id = 1
        #: Identifiers taken by other packets (a client's SUBSCRIBE/UNSUBSCRIBE, §2.2.1).
        self._reserved: set[int] = set()

    # -- sending ------------------------------------------------------------------------------

    def publish(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties,
        wire: tuple[bytes, bytes] | None = None,
    ) -> PublishStatus:
        """Send, queue or drop one message (see ``MqttServerConnection.publish``)."""
        if not qos:
            packet = new_publish(topic, payload, 0, retain, False, None, properties)
            return PublishStatus.SENT if self.transmit(packet) else PublishStatus.DROPPED
        if self._queue or self._resend or self._inflight >= self.window:
            limit = self._options.max_queued_messages
            if limit is not None and len(self._queue) >= limit:
                return PublishStatus.DROPPED
            self._queue.append((topic, payload, qos, retain, properties, wire))
            return PublishStatus.QUEUED
        if self._send_new(topic, payload, qos, retain, properties, wire):
            return PublishStatus.SENT
        return PublishStatus.DROPPED

    def _send_new(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties,
        wire: tuple[bytes, bytes] | None,
    ) -> bool:
        """Send a QoS 1/2 message under a new packet identifier and track it; False (the
        identifier handed out again) when it is too large for the client."""
        messages = self._messages
        packet_id = self._next_id
        if packet_id in messages or self._reserved:
            packet_id = self._allocate_id()
        else:
            self._next_id = packet_id % 65535 + 1
        if wire is not None and not self.alias_maximum:  # transmit()'s shared-bytes case, inline
            data = wire[0] + packet_id.to_bytes(2, "big") + wire[1]
            if len(data) > self.max_packet_size:
                self._next_id = packet_id
                return False
            self._out.append(data)
        elif not self.transmit(new_publish(topic, payload, qos, retain, False, packet_id, properties)):
            self._next_id = packet_id  # the identifier was never used: hand it out again
            return False
        messages[packet_id] = (topic, payload, qos, retain, properties)
        self._inflight += 1
        return True

    def transmit(self, packet: Publish, wire: tuple[bytes, bytes] | None = None) -> bool:
        """Encode and queue a PUBLISH for this client; False if too large to send at all.

        ``wire`` is the packet already encoded for this connection's level, split around the
        packet identifier (see ``MqttServerConnection.publish``); used unless topic aliases are.
        """
        if wire is not None and not self.alias_maximum:
            packet_id = packet.packet_id  # None exactly for QoS 0
            data = wire[0] + wire[1] if packet_id is None else wire[0] + packet_id.to_bytes(2, "big") + wire[1]
        elif self.level == 4:
            if packet.properties is not EMPTY_PROPERTIES:
                packet = replace(packet, properties=EMPTY_PROPERTIES)  # 3.1.1 has none
            data = encode(packet, 4)
        elif self.alias_maximum:
            return self._transmit_aliased(packet)
        else:
            data = encode(packet, 5)
        if len(data) > self.max_packet_size:
            # [MQTT-3.1.2-25]: "discard it without sending it and then behave as if it had
            # completed sending that Application Message".
            return False
        self._out.append(data)
        return True

    def _transmit_aliased(self, packet: Publish) -> bool:
        """:meth:`transmit` with an outbound topic alias (§3.3.2.3.4): a topic seen before goes
        as an empty topic name and its alias; a new one with its name and a new alias, or the
        alias of the least recently used topic once all are taken. The mapping changes only
        when the packet is really sent (the client learns it from that packet)."""
        aliases = self._aliases
        topic = packet.topic
        alias = aliases.get(topic)
        evicted = None
        if alias is not None:
            sent = replace(packet, topic="", properties=replace(packet.properties, topic_alias=alias))
        else:
            if len(aliases) < self.alias_maximum:
                alias = len(aliases) + 1
            else:
                evicted = next(iter(aliases))  # dicts keep insertion order: the oldest use first
                alias = aliases[evicted]
            sent = replace(packet, properties=replace(packet.properties, topic_alias=alias))
        data = encode(sent, 5)
        if len(data) > self.max_packet_size:
            return False  # [MQTT-3.1.2-25], as in transmit()
        if evicted is not None:
            del aliases[evicted]
        else:
            aliases.pop(topic, None)
        aliases[topic] = alias  # (re)inserted last: the most recently used
        self._out.append(data)
        return True

    def _allocate_id(self) -> int:
        packet_id = self._next_id
        reserved = self._reserved
        for _ in range(65535):
            if packet_id not in self._messages and (not reserved or packet_id not in reserved):
                self._next_id = packet_id % 65535 + 1
                return packet_id
            packet_id = packet_id % 65535 + 1
        raise LocalProtocolError("all 65535 packet identifiers are in use")  # pragma: no cover

    def reserve_id(self) -> int:
        """Take a packet identifier for a packet other than PUBLISH (a client's SUBSCRIBE or
        UNSUBSCRIBE): unused by any message in flight, and not handed out until
        :meth:`release_id` (§2.2.1: identifiers are unique across the three)."""
        packet_id = self._allocate_id()
        self._reserved.add(packet_id)
        return packet_id

    def release_id(self, packet_id: int) -> bool:
        """Give back an identifier from :meth:`reserve_id` (its answer arrived); False if it
        was not reserved."""
        if packet_id in self._reserved:
            self._reserved.discard(packet_id)
            return True
        return False

    def pump(self) -> None:
        """Send re-sends, then queued messages, while the send quota allows (§4.9)."""
        while self._resend and self._inflight < self.window:
            packet_id = next(iter(self._resend))
            del self._resend[packet_id]
            self._inflight += 1
            # §4.4: re-sent with the original packet identifier and DUP set [MQTT-3.3.1-1].
            topic, payload, qos, retain, properties = self._messages[packet_id]
            if not self.transmit(new_publish(topic, payload, qos, retain, True, packet_id, properties)):
                del self._messages[packet_id]
                self._inflight -= 1
        queue = self._queue
        while queue and self._inflight < self.window:
            self._send_new(*queue.popleft())  # with the shared encoding: no re-encode

    # -- acknowledgements from the client -----------------------------------------------------

    def _complete(self, packet_id: int) -> None:
        del self._messages[packet_id]
        if self._released:
            self._released.discard(packet_id)
        if packet_id in self._resend:
            del self._resend[packet_id]  # never re-sent on this connection: not in flight
        else:
            self._inflight -= 1

    def on_puback(self, packet: PubAck) -> PubAckReceived | None:
        """Complete a QoS 1 exchange; None for an unknown (stale) identifier."""
        return self.puback(packet.packet_id, packet.reason_code, packet.properties)

    def puback(
        self, packet_id: int, reason_code: int = 0, properties: Properties = EMPTY_PROPERTIES
    ) -> PubAckReceived | None:
        """:meth:`on_puback` from the fields (the connection's fast path for the two-byte
        PUBACK decodes no packet)."""
        entry = self._messages.get(packet_id)
        if entry is None:
            return None
        if entry[2] != 1:
            raise _protocol_error("PUBACK for a QoS 2 message")
        del self._messages[packet_id]
        if packet_id in self._resend:
            del self._resend[packet_id]  # never re-sent on this connection: not in flight
        else:
            self._inflight -= 1
        if self._queue or self._resend:
            self.pump()
        if not self._report:
            return None
        if not reason_code and properties is EMPTY_PROPERTIES:
            return _puback_received(packet_id)
        return PubAckReceived(packet_id, ReasonCode(reason_code), properties)

    def on_pubrec(self, packet: PubRec) -> PubRecReceived | None:
        """Answer PUBREC with PUBREL (or end the exchange on a failure reason)."""
        packet_id = packet.packet_id
        entry = self._messages.get(packet_id)
        if entry is None:
            # §4.3.3: PUBREL "Packet Identifier not found" (5.0); plain PUBREL in 3.1.1.
            reason = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND if self.level == 5 else 0
            self._out.append(encode(PubRel(packet_id, reason), self.level))
            return None
        if entry[2] != 2:
            raise _protocol_error("PUBREC for a QoS 1 message")
        if packet.reason_code >= 0x80:
            # §4.3.3: a PUBREC with a failure reason ends the exchange; no PUBREL.
            self._complete(packet_id)
            self.pump()
        else:
            if packet_id in self._resend:  # resumed and answered before we re-sent it
                del self._resend[packet_id]
                self._inflight += 1
            self._released.add(packet_id)
            self._out.append(encode(PubRel(packet_id), self.level))
        if not self._report:
            return None
        return PubRecReceived(packet_id, ReasonCode(packet.reason_code), packet.properties)

    def on_pubcomp(self, packet: PubComp) -> PubCompReceived | None:
        """Complete a QoS 2 exchange; None for an unknown (stale) identifier."""
        packet_id = packet.packet_id
        if packet_id not in self._messages:
            return None
        if packet_id not in self._released:
            raise _protocol_error("PUBCOMP before PUBREL")
        self._complete(packet_id)
        self.pump()
        if not self._report:
            return None
        return PubCompReceived(packet_id, ReasonCode(packet.reason_code), packet.properties)

    # -- session ------------------------------------------------------------------------------

    def restore(
        self, outbound: tuple[OutboundMessage, ...], queued: tuple[Publish, ...], next_id: int
    ) -> None:
        """Resume a session: PUBRELs go out now, PUBLISHes on the next :meth:`pump`."""
        for message in outbound:
            packet_id = message.publish.packet_id
            if packet_id is None or message.publish.qos == 0:
                raise LocalProtocolError("session messages need a QoS > 0 and a packet id")
            packet = message.publish
            self._messages[packet_id] = (packet.topic, packet.payload, packet.qos, packet.retain, packet.properties)
            if message.released:
                # §4.4: re-send PUBREL. §4.9 lets PUBREL go out whatever the quota; it still
                # counts as in flight until PUBCOMP.
                self._released.add(packet_id)
                self._inflight += 1
                self._out.append(encode(PubRel(packet_id), self.level))
            else:
                self._resend[packet_id] = None
        self._queue.extend((p.topic, p.payload, p.qos, p.retain, p.properties, None) for p in queued)
        if not 1 <= next_id <= 65535:
            raise LocalProtocolError(f"next packet id {next_id} is not in 1..65535")
        self._next_id = next_id

    def snapshot(self) -> tuple[tuple[OutboundMessage, ...], tuple[Publish, ...], int]:
        """(unacknowledged messages, queued messages, next packet id) for the session state."""
        released = self._released
        outbound = tuple(
            OutboundMessage(new_publish(topic, payload, qos, retain, False, pid, properties), pid in released)
            for pid, (topic, payload, qos, retain, properties) in self._messages.items()
        )
        queued = tuple(
            new_publish(topic, payload, qos, retain, False, None, properties)
            for topic, payload, qos, retain, properties, _wire in self._queue
        )
        return outbound, queued, self._next_id


_new_event = object.__new__
_set_ack_fields = [PubAckReceived.__dict__[name].__set__ for name in ("packet_id", "reason_code", "properties")]


def _puback_received(packet_id: int) -> PubAckReceived:
    """``PubAckReceived(packet_id, ReasonCode.SUCCESS, EMPTY_PROPERTIES)``, only faster (a
    frozen dataclass's ``__init__`` goes through ``object.__setattr__`` for every field)."""
    event: PubAckReceived = _new_event(PubAckReceived)
    set_id, set_reason, set_props = _set_ack_fields
    set_id(event, packet_id)
    set_reason(event, ReasonCode.SUCCESS)
    set_props(event, EMPTY_PROPERTIES)
    return event
