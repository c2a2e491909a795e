"""Small, hot helpers for the common WebSocket frames (RFC 6455 5.2), and autobahn's lean defaults.

The adapter parses complete, unfragmented, masked text/binary frames itself and builds the
frames it sends; everything else (control frames, fragments, compressed frames, partial frames,
anything invalid) goes through autobahn's own frame parser. Both paths end in the same place.
"""

from __future__ import annotations

from typing import Any

from autobahn.wamp.types import TransportDetails
from autobahn.websocket.protocol import TrafficStats
from autobahn.websocket.xormasker import create_xor_masker

#: First byte of an unfragmented (FIN) text / binary frame without RSV bits (RFC 6455 5.2).
TEXT = 0x81
BINARY = 0x82
#: RSV1 marks a compressed message (RFC 7692 6).
RSV1 = 0x40

_SMALL_HEADERS = {opcode: [bytes((opcode, n)) for n in range(126)] for opcode in (TEXT, BINARY, TEXT | RSV1, BINARY | RSV1)}
_from_bytes = int.from_bytes

#: Up to this size a Python big-integer XOR unmasks faster than autobahn's native masker (whose
#: per-call setup costs tens of microseconds); above it the native one wins.
_INT_UNMASK_LIMIT = 1024


def unmask(payload: bytes, mask: bytes) -> bytes:
    """Apply the client's 4-byte masking key (RFC 6455 5.3)."""
    n = len(payload)
    if n <= _INT_UNMASK_LIMIT:
        key = mask * ((n >> 2) + 1)
        return (_from_bytes(payload, "little") ^ _from_bytes(key[:n], "little")).to_bytes(n, "little")
    return create_xor_masker(mask, n).process(payload)


def frame(first: int, payload: bytes) -> bytes:
    """One unmasked server frame (RFC 6455 5.2: servers never mask) with ``first`` as its first byte."""
    n = len(payload)
    if n < 126:
        return _SMALL_HEADERS[first][n] + payload
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


class _NullFuture:
    """Stands in for autobahn's ``is_open``/``is_closed`` futures, which nothing here awaits."""

    __slots__ = ()

    def callback(self, result: Any = None) -> None:
        """``txaio.resolve`` calls this; there is nobody to tell."""


#: Per-connection state that autobahn's ``_connectionMade`` would allocate for every connection
#: (about 7 KB: ~80 instance attributes, traffic statistics, a timing tracker, a send queue and two
#: Deferreds). As class attributes they cost nothing; a connection gets its own value the first
#: time autobahn assigns one.
AUTOBAHN_DEFAULTS: dict[str, Any] = {
    "send_state": 0,  # SEND_STATE_GROUND
    # Chopped/synchronous writes are never used here; a tuple makes any such use fail loudly
    # instead of sharing a queue between connections.
    "send_queue": (),
    "triggered": False,
    "wasMaxFramePayloadSizeExceeded": False,
    "wasMaxMessagePayloadSizeExceeded": False,
    "closedByMe": False,
    "failedByMe": False,
    "droppedByMe": False,
    "wasClean": False,
    "wasNotCleanReason": None,
    "wasServerConnectionDropTimeout": False,
    "wasOpenHandshakeTimeout": False,
    "wasCloseHandshakeTimeout": False,
    "wasServingFlashSocketPolicyFile": False,
    "localCloseCode": None,
    "localCloseReason": None,
    "remoteCloseCode": None,
    "remoteCloseReason": None,
    "openHandshakeTimeoutCall": None,
    "closeHandshakeTimeoutCall": None,
    "autoPingTimeoutCall": None,
    "autoPingPending": None,
    "autoPingPendingCall": None,
    "autoPingPendingSeq": 0,
    "autoPingPendingSent": None,
    "_perMessageCompress": None,
    "trackedTimings": None,
    # autobahn counts traffic on every frame it parses or builds; one shared object takes the
    # counts of all connections (nothing reads them).
    "trafficStats": TrafficStats(),
    "is_open": _NullFuture(),
    "is_closed": _NullFuture(),
    "_transport_details": TransportDetails(),
}
