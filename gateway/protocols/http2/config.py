"""Configuration of HTTP/2 on an HTTP listener (the ``http2:`` key).

Kept free of ``h2`` and Twisted imports: reading the configuration must stay cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.config.errors import InvalidValue
from gateway.config.schema import positive
from gateway.config.units import Duration, Size
from gateway.protocols.websocket.config import parse_optional_duration

#: RFC 9113 6.5.2: SETTINGS_MAX_FRAME_SIZE is 2^14 to 2^24-1; 6.9.1: windows are at most 2^31-1.
MIN_FRAME_SIZE = 1 << 14
MAX_FRAME_SIZE = (1 << 24) - 1
MAX_WINDOW = (1 << 31) - 1


def check_frame_size(value: int) -> None:
    """RFC 9113 6.5.2: from 16384 to 16777215."""
    if not MIN_FRAME_SIZE <= value <= MAX_FRAME_SIZE:
        raise InvalidValue(f"must be from 16KiB (16384) to 16777215 bytes, got {value}")


def check_window(value: int) -> None:
    """RFC 9113 6.9.1: a flow-control window holds 65535 bytes (the protocol's initial size) to 2^31-1."""
    if not 65535 <= value <= MAX_WINDOW:
        raise InvalidValue(f"must be from 65535 to 2147483647 bytes, got {value}")


@dataclass(frozen=True, kw_only=True)
class Http2Config:
    """HTTP/2 (RFC 9113) on this listener; every stream is an ASGI http scope with http_version "2"."""

    enabled: bool = field(
        default=True, metadata={"doc": "Serve HTTP/2: offered first over TLS (ALPN h2), and over cleartext when h2c is on."}
    )
    h2c: bool = field(
        default=True,
        metadata={"doc": "Cleartext HTTP/2 on non-TLS endpoints: by prior knowledge (the connection preface) and by Upgrade: h2c."},
    )
    websocket: bool = field(
        default=True,
        metadata={"doc": "WebSocket over HTTP/2 (RFC 8441 extended CONNECT), with the websocket: settings; needs websocket.enabled."},
    )
    max_concurrent_streams: int = field(
        default=100,
        metadata={"doc": "Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS); a stream counts until its application has ended.", "check": positive},
    )
    max_header_list_size: Size = field(
        default=Size(64 * 1024),
        metadata={"doc": "Largest request header list, decoded (SETTINGS_MAX_HEADER_LIST_SIZE) and as sent in HEADERS and CONTINUATION frames; larger closes the connection."},
    )
    max_frame_size: Size = field(
        default=Size(16 * 1024),
        metadata={"doc": "Largest frame payload a client may send (SETTINGS_MAX_FRAME_SIZE, 16KiB to 16MiB-1).", "check": check_frame_size},
    )
    stream_window: Size = field(
        default=Size(256 * 1024),
        metadata={"doc": "Request body bytes a client may send on one stream ahead of the application's receive() (the stream's flow-control window).", "check": check_window},
    )
    connection_window: Size = field(
        default=Size(1024 * 1024),
        metadata={"doc": "Request body bytes a client may send on the whole connection ahead of the applications (the connection's flow-control window).", "check": check_window},
    )
    max_streams_per_second: int = field(
        default=5000,
        metadata={"doc": "New streams one connection may open per second (a burst of as many is allowed); faster closes it with ENHANCE_YOUR_CALM.", "check": positive},
    )
    max_control_frames_per_second: int = field(
        default=200,
        metadata={"doc": "Frames that ask for work but carry no request (SETTINGS, PING, PRIORITY, RST_STREAM, empty DATA/CONTINUATION, unknown types, frames that make us reset a stream) one connection may send per second, in a burst of as many; more closes it with ENHANCE_YOUR_CALM.", "check": positive},
    )
    idle_timeout: Duration = field(
        default=Duration(60.0),
        metadata={"doc": "Time a connection may stay without open streams before it is closed with GOAWAY.", "check": positive},
    )
    ping_interval: Duration | None = field(
        default=Duration(20.0),
        metadata={"doc": "Send a PING after this long without receiving anything while streams are open; off to never ping.", "parse": parse_optional_duration},
    )
    ping_timeout: Duration = field(
        default=Duration(20.0),
        metadata={"doc": "Time the client has to answer a PING (with anything); then the connection is closed.", "check": positive},
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if self.max_header_list_size < 1024:
            yield "max_header_list_size", "must be at least 1KiB"
