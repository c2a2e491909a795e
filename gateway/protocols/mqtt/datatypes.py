# -*- test-case-name: tests.unit.mqtt.test_codec -*-
"""MQTT data representation (§1.5): integers, Variable Byte Integers, strings, binary data.

Readers take ``(buf, pos, end)`` and return ``(value, new_pos)``; they never read past ``end``
(the end of the current packet or property block) and raise :class:`RemoteProtocolError` with
hint 0x81 (Malformed Packet) when the data does not fit or is not valid. Writers return bytes
and raise :class:`LocalProtocolError` for values that cannot be encoded.
"""

from __future__ import annotations

from typing import Union

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.mqtt.reasons import ReasonCode

#: What the readers accept: a memoryview over bytes, or bytes/bytearray themselves.
Buffer = Union[memoryview, bytes, bytearray]

#: The largest value of a Variable Byte Integer (four bytes, §1.5.5).
MAX_VBI = 268_435_455
MAX_U16 = 0xFFFF
MAX_U32 = 0xFFFF_FFFF

# One-byte Variable Byte Integer encodings, precomputed: most property lengths and the remaining
# length of small packets are below 128.
_VBI_ONE: tuple[bytes, ...] = tuple(bytes((n,)) for n in range(128))


def malformed(message: str) -> RemoteProtocolError:
    """A peer error with hint 0x81 (Malformed Packet: it cannot be parsed, §1.2)."""
    return RemoteProtocolError(message, hint=ReasonCode.MALFORMED_PACKET)


def protocol_error(message: str) -> RemoteProtocolError:
    """A peer error with hint 0x82 (Protocol Error: parsed, but not allowed, §1.2)."""
    return RemoteProtocolError(message, hint=ReasonCode.PROTOCOL_ERROR)


def read_u8(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Read a Byte."""
    if pos >= end:
        raise malformed("packet ends inside a one-byte field")
    return buf[pos], pos + 1


def read_u16(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Read a Two Byte Integer (big-endian, §1.5.2)."""
    if pos + 2 > end:
        raise malformed("packet ends inside a two-byte integer")
    return (buf[pos] << 8) | buf[pos + 1], pos + 2


def read_u32(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Read a Four Byte Integer (big-endian, §1.5.3)."""
    if pos + 4 > end:
        raise malformed("packet ends inside a four-byte integer")
    return int.from_bytes(buf[pos : pos + 4], "big"), pos + 4


def read_vbi(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Read a Variable Byte Integer (§1.5.5): at most four bytes, minimally encoded."""
    if pos >= end:
        raise malformed("packet ends inside a variable byte integer")
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    value = byte & 0x7F
    shift = 7
    for index in range(pos + 1, pos + 4):
        if index >= end:
            raise malformed("packet ends inside a variable byte integer")
        byte = buf[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0:
                # §1.5.5: "MUST use the minimum number of bytes necessary".
                raise malformed("variable byte integer is not minimally encoded")
            return value, index + 1
        shift += 7
    raise malformed("variable byte integer longer than four bytes")


def read_str(buf: Buffer, pos: int, end: int) -> tuple[str, int]:
    """Read a UTF-8 Encoded String (§1.5.4).

    Ill-formed UTF-8 (including encoded surrogates U+D800..U+DFFF and overlong forms) and
    U+0000 make the packet malformed [MQTT-1.5.4-1], [MQTT-1.5.4-2]. A leading U+FEFF is kept,
    never stripped [MQTT-1.5.4-3].
    """
    if pos + 2 > end:
        raise malformed("packet ends inside a string length")
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise malformed("string runs past the end of the packet")
    try:
        # Python's strict UTF-8 codec rejects surrogates, overlongs and code points > U+10FFFF.
        value = str(buf[pos + 2 : stop], "utf-8")
    except UnicodeDecodeError as exc:
        raise malformed(f"string is not valid UTF-8 ({exc.reason})") from None
    if "\x00" in value:
        raise malformed("string contains U+0000")
    return value, stop


def read_bin(buf: Buffer, pos: int, end: int) -> tuple[bytes, int]:
    """Read Binary Data (§1.5.6): a Two Byte Integer length then that many bytes."""
    if pos + 2 > end:
        raise malformed("packet ends inside a binary data length")
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise malformed("binary data runs past the end of the packet")
    return bytes(buf[pos + 2 : stop]), stop


def encode_vbi(value: int) -> bytes:
    """Encode a Variable Byte Integer (§1.5.5).

    Raises:
        LocalProtocolError: ``value`` is negative or above 268,435,455.
    """
    if 0 <= value < 128:
        return _VBI_ONE[value]
    if 0 <= value < 16384:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    if not 0 <= value <= MAX_VBI:
        raise LocalProtocolError(f"{value} does not fit in a variable byte integer")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_u16(value: int, what: str) -> bytes:
    """Encode a Two Byte Integer, naming ``what`` in the error for out-of-range values."""
    if not 0 <= value <= MAX_U16:
        raise LocalProtocolError(f"{what} {value} does not fit in two bytes")
    return value.to_bytes(2, "big")


def encode_u32(value: int, what: str) -> bytes:
    """Encode a Four Byte Integer, naming ``what`` in the error for out-of-range values."""
    if not 0 <= value <= MAX_U32:
        raise LocalProtocolError(f"{what} {value} does not fit in four bytes")
    return value.to_bytes(4, "big")


def encode_str(value: str, what: str) -> bytes:
    """Encode a UTF-8 Encoded String with its length prefix.

    Raises:
        LocalProtocolError: the string has a lone surrogate or U+0000, or is over 65535 bytes.
    """
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} is not encodable as UTF-8 (lone surrogate)") from None
    if "\x00" in value:
        raise LocalProtocolError(f"{what} contains U+0000")
    if len(data) > MAX_U16:
        raise LocalProtocolError(f"{what} is longer than 65535 bytes")
    return len(data).to_bytes(2, "big") + data


def encode_bin(value: bytes, what: str) -> bytes:
    """Encode Binary Data with its length prefix (at most 65535 bytes)."""
    if len(value) > MAX_U16:
        raise LocalProtocolError(f"{what} is longer than 65535 bytes")
    return len(value).to_bytes(2, "big") + bytes(value)
