# -*- test-case-name: tests.unit.mqtt.test_codec -*-
"""The MQTT 3.1.1 / 5.0 codec: ``decode`` bytes into packets and ``encode`` packets into bytes.

``decode(buf, protocol_level=..., max_packet_size=...)`` looks at the start of ``buf`` and
returns ``(packet, consumed)``, or ``(None, 0)`` when ``buf`` does not yet hold a whole packet
("need more data": keep the bytes, append more, call again). It raises
:class:`~gateway.protocols.errors.RemoteProtocolError` whose ``hint`` is the
:class:`~.reasons.ReasonCode` the specification prescribes, and nothing else, whatever the bytes:

====================================================  =====================================
what was received                                     hint
====================================================  =====================================
reserved packet type or fixed-header flags (§2.1.3),  0x81 Malformed Packet
bad lengths, remaining length over 4 bytes or not
minimal, ill-formed UTF-8 or U+0000 (§1.5.4), an
unknown property or one not valid for the packet,
reserved bits set, a reason code outside the table
a packet identifier of 0, a repeated property, an     0x82 Protocol Error
out-of-range property value, an empty SUBSCRIBE,
the first packet not a CONNECT (``protocol_level``
``None``), Retain Handling 3, No Local on $share
a packet larger than ``max_packet_size`` (checked     0x95 Packet too large
as soon as the fixed header is in, §3.1.2.11.4)
wildcards in, or an empty, topic name                 0x90 Topic Name invalid
invalid topic filter (§4.7.1, §4.8.2)                 0x8F Topic Filter invalid
Topic Alias 0                                         0x94 Topic Alias invalid
a CONNECT for another protocol or level (§3.1.2.2)    0x84 Unsupported Protocol Version
====================================================  =====================================

A CONNECT is always decoded with the level it announces; every other packet with
``protocol_level`` (4 or 5, the level of the connection). Encoding is in :mod:`._encode`.
"""

from __future__ import annotations

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.mqtt._decode import DECODERS
from gateway.protocols.mqtt._encode import encode
from gateway.protocols.mqtt._wire import Buffer, malformed
from gateway.protocols.mqtt.packets import Packet
from gateway.protocols.mqtt.reasons import PacketType, ReasonCode

__all__ = ["MAX_PACKET_SIZE", "decode", "encode", "peek_connect_level"]

#: The largest packet MQTT can express: 1 type byte + 4 length bytes + 268,435,455 (§2.1.4).
MAX_PACKET_SIZE = 268_435_460


# Required flags (low nibble of byte 1) of every packet type but PUBLISH (§2.1.3, Table 2-2).
_FIXED_FLAGS = {
    PacketType.CONNECT: 0, PacketType.CONNACK: 0, PacketType.PUBACK: 0, PacketType.PUBREC: 0,
    PacketType.PUBREL: 2, PacketType.PUBCOMP: 0, PacketType.SUBSCRIBE: 2, PacketType.SUBACK: 0,
    PacketType.UNSUBSCRIBE: 2, PacketType.UNSUBACK: 0, PacketType.PINGREQ: 0,
    PacketType.PINGRESP: 0, PacketType.DISCONNECT: 0, PacketType.AUTH: 0,
}


def _first_byte_problem(byte: int, level: int | None) -> tuple[str, ReasonCode] | None:
    kind, flags = byte >> 4, byte & 0x0F
    if kind == 0 or (kind == PacketType.AUTH and level == 4):
        # Type 0 is reserved in both versions; 15 is reserved in 3.1.1 and AUTH in 5.0.
        return f"reserved packet type {kind}", ReasonCode.MALFORMED_PACKET
    if kind == PacketType.PUBLISH:
        if flags & 0x06 == 0x06:
            return "PUBLISH with QoS 3", ReasonCode.MALFORMED_PACKET  # §3.3.1.2
        if flags & 0x08 and not flags & 0x06:
            return "PUBLISH with DUP set at QoS 0", ReasonCode.MALFORMED_PACKET  # [MQTT-3.3.1-2]
    elif flags != _FIXED_FLAGS[PacketType(kind)]:
        return f"invalid fixed header flags for packet type {kind}", ReasonCode.MALFORMED_PACKET
    if level is None and kind != PacketType.CONNECT:
        # [MQTT-3.1.0-1]: "the first packet sent from the Client to the Server MUST be a CONNECT".
        return "the first packet must be CONNECT", ReasonCode.PROTOCOL_ERROR
    return None


_FIRST_BYTE: dict[int | None, tuple[tuple[str, ReasonCode] | None, ...]] = {
    level: tuple(_first_byte_problem(byte, level) for byte in range(256))
    for level in (None, 4, 5)
}


def decode(
    buf: Buffer, *, protocol_level: int | None, max_packet_size: int = MAX_PACKET_SIZE
) -> tuple[Packet | None, int]:
    """Decode one packet from the start of ``buf``.

    Args:
        buf: received bytes, ideally a ``memoryview`` (no copies are made of the header).
        protocol_level: 4 or 5, the level negotiated by the connection's CONNECT; ``None``
            before the CONNECT, when only a CONNECT is acceptable.
        max_packet_size: the largest whole packet (fixed header included) we accept.

    Returns:
        ``(packet, consumed)``, or ``(None, 0)`` if ``buf`` holds only part of a packet.

    Raises:
        RemoteProtocolError: the bytes break the protocol or a limit; ``hint`` is the reason
            code to send (see the module documentation).
        LocalProtocolError: ``protocol_level`` is not 4, 5 or None.
    """
    table = _FIRST_BYTE.get(protocol_level)
    if table is None:
        raise LocalProtocolError(f"unsupported protocol level {protocol_level!r}")
    size = len(buf)
    if size == 0:
        return None, 0
    first = buf[0]
    problem = table[first]
    if problem is not None:
        raise RemoteProtocolError(problem[0], hint=problem[1])
    if size < 2:
        return None, 0
    byte = buf[1]
    pos = 2
    length = byte & 0x7F
    shift = 7
    while byte >= 0x80:  # Remaining Length: a Variable Byte Integer (§2.1.4)
        if pos == 5:
            raise malformed("remaining length longer than four bytes")
        if pos >= size:
            return None, 0
        byte = buf[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte == 0:
            raise malformed("remaining length is not minimally encoded")  # [MQTT-1.5.5-1]
    end = pos + length
    if end > max_packet_size:
        # Checked before the body arrives, so an oversized packet is refused without buffering.
        raise RemoteProtocolError(
            f"packet of {end} bytes exceeds the maximum packet size {max_packet_size}",
            hint=ReasonCode.PACKET_TOO_LARGE,
        )
    if end > size:
        return None, 0
    level = protocol_level if protocol_level is not None else 5
    return DECODERS[first >> 4](buf, pos, end, first, level), end


def peek_connect_level(buf: Buffer) -> int | None:
    """The protocol level a (possibly invalid or incomplete) CONNECT at ``buf`` announces.

    Used to pick the CONNACK format when a CONNECT cannot be decoded. ``None`` if ``buf`` does
    not start with a CONNECT or is too short to tell.
    """
    if len(buf) < 2 or buf[0] != 0x10:
        return None
    pos = 1
    while pos < min(len(buf), 5) and buf[pos] & 0x80:
        pos += 1
    pos += 1  # past the last remaining length byte
    if pos + 2 > len(buf):
        return None
    level_at = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    return buf[level_at] if level_at < len(buf) else None
