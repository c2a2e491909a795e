# -*- test-case-name: tests.unit.mqtt.test_broker -*-
"""The broker's data: application messages, subscriptions, shared groups and sessions.

Everything here can be serialised to bytes (messages) or JSON (sessions), so that the store
(:mod:`.store`) and other processes (:mod:`.cluster`) can hold and move it. Messages are
serialised with the MQTT codec itself: a 5.0 PUBLISH packet after a small header.
"""

from __future__ import annotations

import base64
import json
import struct
from collections import deque
from dataclasses import replace
from typing import Any, Protocol, cast

from gateway.protocols.mqtt.codec import decode, encode, publish_parts
from gateway.protocols.mqtt.events import OutboundMessage, SessionState
from gateway.protocols.mqtt.packets import Publish, Will
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties

__all__ = [
    "NEVER_EXPIRES", "BrokerConnection", "Message", "Session", "ShareGroup", "Sub", "dump_message", "load_message",
]

#: Session Expiry Interval meaning "never" (§3.1.2.11.2).
NEVER_EXPIRES = 0xFFFFFFFF
_HEADER = struct.Struct(">ddH")  # received_at, expires_at (0 = never), origin length


class Message:
    """An application message inside the broker.

    Attributes:
        topic, payload, qos, retain, properties: as published (aliases resolved).
        expires_at: wall-clock time (``time.time()``) after which it must not be delivered
            (from the Message Expiry Interval, §3.3.2.3.3), or None.
        origin: client id of the publisher (for No Local), None for the broker or the app.
        received_at: wall-clock time of arrival (the expiry interval is counted from it).
    """

    __slots__ = (
        "topic", "payload", "qos", "retain", "properties", "expires_at", "origin", "received_at", "_wire",
        "_key", "_parts",
    )

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties = EMPTY_PROPERTIES,
        expires_at: float | None = None,
        origin: str | None = None,
        received_at: float = 0.0,
    ) -> None:  # (positional for speed on the hot path; keywords elsewhere)
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.expires_at = expires_at
        self.origin = origin
        self.received_at = received_at
        self._wire: dict[tuple[Any, ...], Any] | None = None
        self._key = -1  # the first (level, qos, retain) encoded, as an int; its parts:
        self._parts: tuple[bytes, bytes] | None = None

    @classmethod
    def from_publish(
        cls, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties,
        origin: str | None, now: float,
    ) -> Message:
        """A message as published now, with its expiry computed from the properties."""
        if properties is EMPTY_PROPERTIES or properties.message_expiry_interval is None:
            return cls(topic, payload, qos, retain, properties, None, origin, now)
        expires = now + properties.message_expiry_interval
        return cls(topic, payload, qos, retain, properties, expires_at=expires, origin=origin, received_at=now)

    def parts(self, level: int, qos: int, retain: bool) -> tuple[bytes, bytes]:
        """This message as a PUBLISH for a connection at ``level`` (4: no properties), split
        where the packet identifier goes: ``(fixed header + topic, properties + payload)``.

        Encoded once per (level, QoS, RETAIN) and shared by every subscriber: the broker's
        fan-out path. The topic and properties were validated when the message arrived.
        """
        key = level << 3 | qos << 1 | retain
        if key == self._key:
            return self._parts  # type: ignore[return-value]  # set with _key
        if self._parts is None:  # the first encoding (1 -> 1 needs no more): no dictionary
            parts = self._parts = publish_parts(self.topic, self.payload, qos, retain, self.properties, level)
            self._key = key
            return parts
        wire = self._wire
        if wire is None:
            wire = self._wire = {}
        found = wire.get((level, qos, retain))
        if found is None:
            found = wire[(level, qos, retain)] = publish_parts(
                self.topic, self.payload, qos, retain, self.properties, level
            )
        return found

    def wire(self, level: int, retain: bool) -> bytes:
        """This message as one QoS 0 PUBLISH for a connection at ``level`` (see :meth:`parts`)."""
        wire = self._wire
        key = (level, retain)
        data = wire.get(key) if wire is not None else None
        if data is None:
            head, tail = self.parts(level, 0, retain)
            data = head + tail
            if self._wire is None:
                self._wire = {}
            cast(dict, self._wire)[key] = data
        return data

    def properties_at(self, now: float) -> Properties | None:
        """The properties to forward at ``now``: the expiry interval counts down (§3.3.2.3.3).

        None when the message has expired and must be dropped.
        """
        expires = self.expires_at
        if expires is None:
            return self.properties
        remaining = expires - now
        if remaining <= 0:
            return None
        if now - self.received_at < 1.0:
            return self.properties  # same second: unchanged (and no copy on the hot path)
        return replace(self.properties, message_expiry_interval=max(1, int(remaining + 0.999)))

    def __repr__(self) -> str:
        return f"Message({self.topic!r}, {self.payload[:32]!r}, qos={self.qos}, retain={self.retain})"


def dump_message(message: Message) -> bytes:
    """Serialise a message (for the store and the cluster)."""
    origin = (message.origin or "").encode("utf-8")
    packet = Publish(
        message.topic, message.payload, message.qos, message.retain, False,
        1 if message.qos else None, message.properties,
    )
    head = _HEADER.pack(message.received_at, message.expires_at or 0.0, len(origin))
    return head + origin + encode(packet, 5)


def load_message(data: bytes) -> Message:
    """The inverse of :func:`dump_message`."""
    received, expires, size = _HEADER.unpack_from(data)
    start = _HEADER.size
    origin = data[start : start + size].decode("utf-8") or None
    packet, _ = decode(memoryview(data)[start + size :], protocol_level=5)
    if not isinstance(packet, Publish):  # pragma: no cover - only our own bytes come here
        raise ValueError("not a serialised message")
    return Message(
        packet.topic, packet.payload, packet.qos, packet.retain, packet.properties,
        expires_at=expires or None, origin=origin, received_at=received,
    )


class BrokerConnection(Protocol):
    """What the broker needs of a client connection attached to a session (the adapter's
    ``MqttConnection``, the test communicator's stand-in)."""

    #: The connection's protocol level (4 or 5): which encoding of a message it takes.
    level: int

    def deliver(self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties,
                wire: tuple[bytes, bytes] | None = None) -> bool:
        """Queue a message for the client; False if the connection cannot take it."""

    def deliver_qos0(self, message: Message, retain: bool) -> bool:
        """Queue a QoS 0 message (encoded once per level for all subscribers)."""

    def flush_output(self) -> None:
        """Write what deliveries queued (once per batch)."""

    def take_over(self) -> None:
        """Another connection took the session: close this one (§3.1.4)."""


class Sub:
    """One subscription of a session (§3.8.3.1 Subscription Options)."""

    __slots__ = ("session", "filter", "inner", "share", "qos", "no_local", "rap", "rh", "sub_id", "deny")

    def __init__(
        self, session: Session, topic_filter: str, inner: str, share: str | None, qos: int,
        no_local: bool = False, rap: bool = False, rh: int = 0, sub_id: int | None = None,
        deny: tuple[str, ...] | None = None,
    ) -> None:
        self.session = session
        self.filter = topic_filter  #: as subscribed, ``$share/...`` included
        self.inner = inner  #: the filter matched against topics
        self.share = share  #: the share name of a shared subscription, else None
        self.qos = qos
        self.no_local = no_local
        self.rap = rap  #: Retain As Published
        self.rh = rh  #: Retain Handling
        self.sub_id = sub_id  #: Subscription Identifier
        #: Denied filters overlapping this one (access rules): matching topics are not
        #: delivered to it. None (the common case): nothing to check.
        self.deny = deny

    def dump(self) -> list[Any]:
        return [self.filter, self.qos, self.no_local, self.rap, self.rh, self.sub_id]


class ShareGroup:
    """The local members of one shared subscription ``$share/{name}/{filter}`` (§4.8.2).

    Each message goes to one member, round robin, online members first.
    """

    __slots__ = ("name", "filter", "members", "_next")

    def __init__(self, name: str, topic_filter: str) -> None:
        self.name = name
        self.filter = topic_filter
        self.members: dict[str, Sub] = {}  # client id -> subscription
        self._next = 0

    def pick(self) -> Sub | None:
        """The member that gets the next message, or None when there is none."""
        members = list(self.members.values())
        if not members:
            return None
        count = len(members)
        start = self._next % count
        fallback = None
        for step in range(count):
            sub = members[(start + step) % count]
            if sub.session.online:
                self._next = start + step + 1
                return sub
            if fallback is None and sub.session.expiry:
                fallback = sub
        self._next = start + 1
        return fallback


class Session:
    """A client's session on this broker node (§4.1): subscriptions and undelivered messages.

    ``conn`` is the connection attached to it (None while the client is away); ``online``
    becomes True once that connection's CONNACK went out. While not online, QoS 1/2 messages
    are kept in ``queue``; ``state`` holds the protocol state of the last connection (messages
    sent but not acknowledged) for the next one to resume.
    """

    __slots__ = (
        "client_id", "subscriptions", "expiry", "conn", "online", "present", "state", "queue",
        "will", "will_timer", "expiry_timer", "level", "username", "dropped",
    )

    def __init__(self, client_id: str, expiry: int = 0, level: int = 5) -> None:
        self.client_id = client_id
        self.subscriptions: dict[str, Sub] = {}
        self.expiry = expiry  #: Session Expiry Interval in seconds; 0 ends it with the connection
        self.conn: BrokerConnection | None = None
        self.online = False
        self.present = False  #: whether it existed before the current connection
        self.state: SessionState | None = None
        self.queue: deque[tuple[Message, int, bool, tuple[int, ...]]] = deque()
        self.will: Will | None = None
        self.will_timer: Any = None
        self.expiry_timer: Any = None
        self.level = level
        self.username: str | None = None
        self.dropped = 0  #: messages dropped because the queue was full

    # -- serialisation ------------------------------------------------------------------------

    def dump(self, now: float) -> bytes:
        """JSON bytes of everything another node needs to resume this session."""
        state = self.state or SessionState()
        data = {
            "v": 1,
            "client_id": self.client_id,
            "expiry": self.expiry,
            "level": self.level,
            "saved_at": now,
            "subs": [sub.dump() for sub in self.subscriptions.values()],
            "outbound": [[_b64(encode(m.publish, 5)), m.released] for m in state.outbound],
            "queued": [_b64(encode(_with_id(p), 5)) for p in state.queued],
            "inbound_qos2": sorted(state.inbound_qos2),
            "next_id": state.next_packet_id,
            "pending": [
                [_b64(dump_message(m)), qos, retain, list(ids)] for m, qos, retain, ids in self.queue
            ],
        }
        return json.dumps(data, separators=(",", ":")).encode("utf-8")

    @classmethod
    def load(cls, blob: bytes) -> tuple[Session, list[list[Any]], float]:
        """Rebuild a session from :meth:`dump`; return it, its subscriptions and when it was
        saved. The broker re-creates the subscriptions (they belong in its index)."""
        data = json.loads(blob)
        session = cls(data["client_id"], int(data["expiry"]), int(data["level"]))
        outbound = tuple(OutboundMessage(_publish(raw), bool(released)) for raw, released in data["outbound"])
        queued = tuple(replace(_publish(raw), packet_id=None) for raw in data["queued"])
        session.state = SessionState(outbound, queued, frozenset(data["inbound_qos2"]), int(data["next_id"]))
        for raw, qos, retain, ids in data["pending"]:
            session.queue.append((load_message(base64.b64decode(raw)), int(qos), bool(retain), tuple(ids)))
        return session, data["subs"], float(data["saved_at"])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _with_id(packet: Publish) -> Publish:
    # A queued message has no packet identifier yet; the codec needs one for QoS > 0.
    return packet if packet.packet_id is not None or not packet.qos else replace(packet, packet_id=1)


def _publish(raw: str) -> Publish:
    packet, _ = decode(memoryview(base64.b64decode(raw)), protocol_level=5)
    if not isinstance(packet, Publish):  # pragma: no cover - only our own bytes come here
        raise ValueError("not a serialised PUBLISH")
    return packet
