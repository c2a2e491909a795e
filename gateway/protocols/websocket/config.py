"""Configuration of WebSocket upgrades on an HTTP listener (the ``websocket:`` key).

Kept free of autobahn and Twisted imports: reading the configuration must stay cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.config.errors import InvalidValue
from gateway.config.schema import positive
from gateway.config.units import Duration, Size, parse_duration


def parse_optional_duration(value: object) -> Duration | None:
    """A duration, or ``off``/``false``/``null`` for none."""
    if value is None or value is False:
        return None
    if isinstance(value, str) and value.strip().lower() in ("", "off", "false", "none", "null"):
        return None
    duration = parse_duration(value)
    if duration <= 0:
        raise InvalidValue(f"must be greater than zero (or off), got {value!r}")
    return duration


def check_window_bits(value: int) -> None:
    """RFC 7692 7.1.2: window sizes are 2^8 to 2^15; zlib cannot use 8 for raw deflate, so 9..15."""
    if not 9 <= value <= 15:
        raise InvalidValue(f"must be from 9 to 15, got {value}")


def check_memory_level(value: int) -> None:
    """zlib's memLevel is 1 (least memory, slowest) to 9."""
    if not 1 <= value <= 9:
        raise InvalidValue(f"must be from 1 to 9, got {value}")


def check_origins(values: tuple[str, ...]) -> None:
    """Each entry is ``*``, ``null`` or an origin: ``https://example.com``, ``https://*.example.com:8443``."""
    for value in values:
        if value in ("*", "null"):
            continue
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or parts.fragment:
            raise InvalidValue(
                f"{value!r} is not an origin like https://example.com or https://*.example.com (no path), '*' or 'null'"
            )
        if "*" in parts.hostname and not (parts.hostname.startswith("*.") and "*" not in parts.hostname[2:]):
            raise InvalidValue(f"{value!r}: a wildcard may only stand for subdomains, as in https://*.example.com")


@dataclass(frozen=True, kw_only=True)
class PerMessageDeflateConfig:
    """permessage-deflate (RFC 7692): negotiated only with clients that offer it."""

    enabled: bool = field(default=True, metadata={"doc": "Accept permessage-deflate when a client offers it."})
    window_bits: int = field(
        default=15,
        metadata={"doc": "LZ77 window of our compressor, 2^N bytes (9..15); below 15 we also ask the client for it. Smaller saves memory per connection.", "check": check_window_bits},
    )
    memory_level: int = field(
        default=8, metadata={"doc": "zlib memory level of our compressor (1..9); lower saves memory, compresses less.", "check": check_memory_level}
    )


@dataclass(frozen=True, kw_only=True)
class WebSocketConfig:
    """WebSocket upgrades (RFC 6455) on an HTTP listener, served to the ASGI application as ``websocket`` scopes."""

    enabled: bool = field(default=True, metadata={"doc": "Serve Upgrade: websocket requests; off answers them as plain HTTP."})
    per_message_deflate: PerMessageDeflateConfig = field(
        default_factory=PerMessageDeflateConfig, metadata={"doc": "Compression (RFC 7692)."}
    )
    max_frame_size: Size = field(
        default=Size(1024 * 1024), metadata={"doc": "Largest frame payload a client may send; larger closes with 1009. 0: no limit."}
    )
    max_message_size: Size = field(
        default=Size(1024 * 1024),
        metadata={"doc": "Largest message (all fragments, after decompression) a client may send; larger closes with 1009. 0: no limit."},
    )
    handshake_timeout: Duration = field(
        default=Duration(20.0),
        metadata={"doc": "Time from the upgrade request to the end of the opening handshake (101, or a denial response sent); then the connection closes.", "check": positive},
    )
    accept_timeout: Duration = field(
        default=Duration(10.0),
        metadata={"doc": "Time the application has to answer websocket.connect (accept, close or a denial response); then 503.", "check": positive},
    )
    close_timeout: Duration = field(
        default=Duration(5.0), metadata={"doc": "Time the client has to answer our close frame before the connection is dropped.", "check": positive}
    )
    ping_interval: Duration | None = field(
        default=Duration(20.0),
        metadata={"doc": "Send a ping after this long without receiving anything; off to never ping.", "parse": parse_optional_duration},
    )
    ping_timeout: Duration = field(
        default=Duration(20.0),
        metadata={"doc": "Time the client has to answer a ping (with a pong or any data); then close 1011.", "check": positive},
    )
    max_lifetime: Duration | None = field(
        default=None, metadata={"doc": "Close connections older than this with 1001; off by default.", "parse": parse_optional_duration}
    )
    allowed_origins: tuple[str, ...] = field(
        default=(),
        metadata={"doc": "Origins allowed to open WebSockets (https://example.com, https://*.example.com, null, *); others (and no Origin) get 403 before the application is called. Empty: any.", "check": check_origins},
    )
    max_connections: int = field(
        default=10000, metadata={"doc": "Open WebSockets on this listener; beyond it, handshakes get 503.", "check": positive}
    )
    read_high_water: Size = field(
        default=Size(256 * 1024),
        metadata={"doc": "Received message bytes waiting for the application's receive() before reading from the socket pauses."},
    )
    write_high_water: Size = field(
        default=Size(64 * 1024),
        metadata={"doc": "Bytes buffered for a slow client before the application's send() waits."},
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if self.read_high_water <= 0:
            yield "read_high_water", "must be greater than zero"
        if self.write_high_water <= 0:
            yield "write_high_water", "must be greater than zero"
