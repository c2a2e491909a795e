# -*- test-case-name: tests.unit.websocket.test_core -*-
"""The server side of RFC 6455 framing on any byte stream, sans-IO (WebSocket over HTTP/2).

Over HTTP/1.1 autobahn frames the connection after validating the upgrade handshake it reads
itself. Over HTTP/2 (RFC 8441) there is no such handshake: the frames ride in one stream's DATA
frames, unchanged (masked by the client, fragmented, with permessage-deflate if agreed). This
codec reads and writes them with the same rules and limits as the HTTP/1.1 path: close 1002 for
a protocol violation, 1007 for text that is not UTF-8, 1009 for a frame or message over its
limit; compression is autobahn's :class:`~autobahn.websocket.compress.PerMessageDeflate`
(negotiated with the same options), and server frames are built by
:func:`gateway.protocols.websocket.frames.frame`.

Bytes go in with :meth:`WebSocketCodec.receive_data`; :meth:`WebSocketCodec.next_event` returns
one event at a time, so the caller decides how far to read ahead (decompressed messages can be
much larger than what arrived)::

    codec.receive_data(data)
    while (event := codec.next_event()) is not None:
        ...   # Message, Ping, Pong, CloseReceived
"""

from __future__ import annotations

import codecs
from typing import Any

from gateway.protocols.websocket import frames

__all__ = ["CloseReceived", "Message", "Ping", "Pong", "WebSocketCodec", "WebSocketError"]

# Opcodes (RFC 6455 5.2).
CONTINUATION = 0x0
TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA

#: Close codes a client may send (RFC 6455 7.4) besides 3000-4999.
RECEIVABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


class WebSocketError(Exception):
    """The client broke RFC 6455 or a limit: close with ``code`` (1002, 1007, 1009)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class Message:
    """A whole data message: ``str`` for text, ``bytes`` for binary."""

    __slots__ = ("data",)

    def __init__(self, data: str | bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and other.data == self.data

    def __repr__(self) -> str:
        return f"Message({self.data!r})"


class Ping:
    """A ping with its payload (answer with :meth:`WebSocketCodec.pong`)."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ping) and other.payload == self.payload


class Pong:
    """A pong."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pong) and other.payload == self.payload


class CloseReceived:
    """The client's close frame: ``code`` (1005 when it gave none, RFC 6455 7.1.5) and ``reason``."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CloseReceived) and (other.code, other.reason) == (self.code, self.reason)

    def __repr__(self) -> str:
        return f"CloseReceived({self.code}, {self.reason!r})"


Event = Message | Ping | Pong | CloseReceived


class WebSocketCodec:
    """RFC 6455 frames of one WebSocket, server side.

    Args:
        max_frame_size: largest frame payload accepted (0: no limit); larger is 1009.
        max_message_size: largest message, after decompression (0: no limit); larger is 1009.
        deflate: autobahn's ``PerMessageDeflate`` when permessage-deflate was agreed, else None.
    """

    __slots__ = (
        "max_frame", "max_message", "deflate", "_buffer", "consumed", "_opcode", "_parts", "_size",
        "_compressed", "_text", "closed",
    )

    def __init__(self, max_frame_size: int = 0, max_message_size: int = 0, deflate: Any = None) -> None:
        self.max_frame = max_frame_size or 1 << 62
        self.max_message = max_message_size or 1 << 62
        self.deflate = deflate
        self._buffer = b""
        #: Bytes read off the buffer so far (whole frames).
        self.consumed = 0
        # The message being received (fragments), if any.
        self._opcode: int | None = None
        self._parts: list[Any] = []
        self._size = 0
        self._compressed = False
        self._text: Any = None
        #: A close frame was received (nothing after it is read).
        self.closed = False

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read into events."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client (call :meth:`next_event` to read them)."""
        if not self.closed:
            self._buffer += data

    def next_event(self) -> Event | None:
        """The next event, or None until more bytes arrive.

        Raises:
            WebSocketError: the client broke the protocol or a limit (close with its code).
        """
        while True:
            buffer = self._buffer
            n = len(buffer)
            if n < 2 or self.closed:
                return None
            first = buffer[0]
            second = buffer[1]
            fin = first & 0x80
            rsv = first & 0x70
            opcode = first & 0x0F
            if not second & 0x80:
                raise WebSocketError(1002, "client frames must be masked")
            length = second & 0x7F
            pos = 2
            if length == 126:
                if n < 4:
                    return None
                length = (buffer[2] << 8) | buffer[3]
                if length < 126:
                    raise WebSocketError(1002, "frame length not minimally encoded")
                pos = 4
            elif length == 127:
                if n < 10:
                    return None
                length = int.from_bytes(buffer[2:10], "big")
                if length < 65536 or length >> 63:
                    raise WebSocketError(1002, "frame length not minimally encoded")
                pos = 10
            control = opcode >= CLOSE
            if control:
                if opcode > PONG:
                    raise WebSocketError(1002, f"reserved opcode {opcode}")
                if not fin or length > 125:
                    raise WebSocketError(1002, "control frames must be whole and at most 125 bytes")
                if rsv:
                    raise WebSocketError(1002, "reserved bits set on a control frame")
            else:
                if opcode > BINARY:
                    raise WebSocketError(1002, f"reserved opcode {opcode}")
                if rsv & 0x30 or (rsv and (self.deflate is None or opcode == CONTINUATION)):
                    raise WebSocketError(1002, "reserved bits set without an extension that defines them")
                if length > self.max_frame:
                    raise WebSocketError(1009, f"frame of {length} bytes is over the limit")
                if opcode == CONTINUATION:
                    if self._opcode is None:
                        raise WebSocketError(1002, "continuation frame without a message")
                elif self._opcode is not None:
                    raise WebSocketError(1002, "new message before the previous one ended")
            end = pos + 4 + length
            if n < end:
                return None
            payload = frames.unmask(buffer[pos + 4:end], buffer[pos:pos + 4]) if length else b""
            self._buffer = buffer[end:]
            self.consumed += end
            if control:
                return self._control(opcode, payload)
            if opcode != CONTINUATION:
                self._opcode = opcode
                self._compressed = bool(rsv)
                self._size = 0
                self._parts = []
                self._text = codecs.getincrementaldecoder("utf-8")() if opcode == TEXT else None
                if self._compressed:
                    self.deflate.start_decompress_message()
            message = self._data(payload, bool(fin))
            if message is not None:
                return message

    def _data(self, payload: bytes, fin: bool) -> Message | None:
        if self._compressed:
            budget = self.max_message - self._size
            try:
                payload = self.deflate.decompress_message_data(payload, budget if budget < 1 << 62 else None)
                if fin:
                    self.deflate.end_decompress_message()
            except Exception as exc:  # autobahn's PayloadExceededError / PayloadCorruptError
                if "exceeds" in str(exc):
                    raise WebSocketError(1009, "message over the limit") from None
                raise WebSocketError(1002, "invalid compressed data") from None
        self._size += len(payload)
        if self._size > self.max_message:
            raise WebSocketError(1009, f"message over {self.max_message} bytes")
        text = self._text
        if text is not None:
            try:
                self._parts.append(text.decode(payload, fin))
            except UnicodeDecodeError:
                raise WebSocketError(1007, "invalid UTF-8 in a text message") from None
        else:
            self._parts.append(payload)
        if not fin:
            return None
        parts = self._parts
        self._parts = []
        self._opcode = None
        self._text = None
        if text is not None:
            return Message(parts[0] if len(parts) == 1 else "".join(parts))
        return Message(parts[0] if len(parts) == 1 else b"".join(parts))

    def _control(self, opcode: int, payload: bytes) -> Event:
        if opcode == PING:
            return Ping(payload)
        if opcode == PONG:
            return Pong(payload)
        self.closed = True
        if not payload:
            return CloseReceived(1005, "")
        if len(payload) == 1:
            raise WebSocketError(1002, "close frame with a one-byte payload")
        code = (payload[0] << 8) | payload[1]
        if code not in RECEIVABLE_CLOSE_CODES and not 3000 <= code <= 4999:
            raise WebSocketError(1002, f"close code {code} is not allowed")
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise WebSocketError(1007, "close reason is not UTF-8") from None
        return CloseReceived(code, reason)

    # -- sending -----------------------------------------------------------------------------

    def message(self, data: str | bytes) -> bytes:
        """One frame holding a whole message (compressed when permessage-deflate was agreed)."""
        if data.__class__ is str:
            payload = data.encode("utf-8")
            first = frames.TEXT
        else:
            payload = data  # type: ignore[assignment]
            first = frames.BINARY
        deflate = self.deflate
        if deflate is not None:
            deflate.start_compress_message()
            payload = deflate.compress_message_data(payload) + deflate.end_compress_message()
            first |= frames.RSV1
        return frames.frame(first, payload)

    @staticmethod
    def pong(payload: bytes) -> bytes:
        """The answer to a ping (RFC 6455 5.5.3)."""
        return bytes((0x8A, len(payload))) + payload

    @staticmethod
    def close(code: int | None, reason: str = "") -> bytes:
        """A close frame (no code: an empty payload)."""
        if code is None:
            return b"\x88\x00"
        payload = code.to_bytes(2, "big") + reason.encode("utf-8")
        return bytes((0x88, len(payload))) + payload


def parse_extensions(value: str) -> list[tuple[str, dict[str, list[Any]]]]:
    """A ``Sec-WebSocket-Extensions`` value as ``[(name, {param: [values]})]`` (RFC 6455 9.1),
    the form autobahn's offer parsers take (a parameter without a value is ``True``)."""
    result: list[tuple[str, dict[str, list[Any]]]] = []
    for extension in value.split(","):
        parts = [part.strip() for part in extension.split(";")]
        if not parts[0]:
            continue
        params: dict[str, list[Any]] = {}
        for part in parts[1:]:
            if not part:
                continue
            key, sep, raw = part.partition("=")
            params.setdefault(key.strip(), []).append(raw.strip().strip('"') if sep else True)
        result.append((parts[0], params))
    return result
