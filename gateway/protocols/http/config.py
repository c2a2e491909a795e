"""Configuration of HTTP listeners (``protocol: http``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.config.errors import InvalidValue
from gateway.config.schema import ListenerConfig, positive
from gateway.config.units import Duration, Size
from gateway.protocols.http.core import HTTPLimits
from gateway.protocols.http2.config import Http2Config
from gateway.protocols.websocket.config import WebSocketConfig


def parse_switch_or_text(value: object) -> str | None:
    """``off``/``false``/``null``/empty turn a feature off; any other text is kept."""
    if value is None or value is False:
        return None
    if isinstance(value, str):
        return None if value.strip().lower() in ("", "off", "false", "none") else value
    raise InvalidValue(f"expected text or off, got {value!r}")


def check_networks(values: tuple[str, ...]) -> None:
    """Each entry is an IP address, a network (``10.0.0.0/8``), ``unix`` or ``*``."""
    for value in values:
        if value in ("*", "unix"):
            continue
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise InvalidValue(f"{value!r} is not an IP address or network (like 10.0.0.0/8), 'unix' or '*'") from None


@dataclass(frozen=True, kw_only=True)
class HttpLimitsConfig:
    """Sizes and counts a client controls, with safe defaults."""

    max_request_line: Size = field(default=Size(8 * 1024), metadata={"doc": "Longest request target; longer gets 414."})
    max_header_size: Size = field(default=Size(64 * 1024), metadata={"doc": "Largest request head; larger gets 431."})
    max_headers: int = field(default=100, metadata={"doc": "Most header fields in a request; more gets 431.", "check": positive})
    max_body_size: Size = field(default=Size(10 * 1024 * 1024), metadata={"doc": "Largest request body; larger gets 413."})
    max_connections: int = field(
        default=10000, metadata={"doc": "Open connections on this listener; beyond it, new ones wait in the kernel's accept queue.", "check": positive}
    )
    max_pipelined_requests: int = field(
        default=32, metadata={"doc": "Requests read ahead on one connection before reading pauses.", "check": positive}
    )
    read_high_water: Size = field(
        default=Size(64 * 1024), metadata={"doc": "Request body bytes waiting for the application before reading from the socket pauses."}
    )
    write_high_water: Size = field(
        default=Size(64 * 1024), metadata={"doc": "Response bytes buffered for a slow client before the application's send() waits."}
    )
    lingering_size: Size = field(
        default=Size(1024 * 1024),
        metadata={"doc": "After an error answer (400, 408, 413, 414, 431, 500, 503) or an answer given before the request body was read, "
                         "request bytes still read and thrown away, so the client reads the answer instead of a connection reset; then the connection closes."},
    )

    def parser_limits(self) -> HTTPLimits:
        """The limits the sans-IO core enforces."""
        return HTTPLimits(
            max_request_line=self.max_request_line,
            max_header_size=self.max_header_size,
            max_headers=self.max_headers,
            max_body_size=self.max_body_size,
        )


@dataclass(frozen=True, kw_only=True)
class HttpTimeoutsConfig:
    """Per-connection timers."""

    header: Duration = field(default=Duration(10.0), metadata={"doc": "Time to receive a whole request head (slowloris defence); then 408.", "check": positive})
    keep_alive: Duration = field(default=Duration(5.0), metadata={"doc": "Idle time allowed between requests on a kept-alive connection.", "check": positive})
    body: Duration = field(default=Duration(60.0), metadata={"doc": "Longest pause while a request body is arriving; then 408.", "check": positive})
    lingering: Duration = field(
        default=Duration(5.0),
        metadata={"doc": "After an error answer, the time the client has to read it and close its side (lingering close, as nginx's lingering_time) "
                         "while its request bytes are thrown away; then the connection closes.", "check": positive},
    )
    request: Duration | None = field(
        default=None,
        metadata={"doc": "Time the application has to finish a response; then the client gets 503 (if nothing was sent) and the application http.disconnect. Off by default (streaming responses)."},
    )


@dataclass(frozen=True, kw_only=True)
class ProxyConfig:
    """Which proxies are trusted to tell the client's address, scheme and host."""

    trusted: tuple[str, ...] = field(
        default=(),
        metadata={"doc": "Addresses or networks of trusted proxies (127.0.0.1, 10.0.0.0/8, unix for UNIX sockets, * for any). Empty: proxy headers are ignored.", "check": check_networks},
    )
    headers: tuple[str, ...] = field(
        default=("forwarded", "x-forwarded"),
        metadata={"doc": "Header families to honour: forwarded (RFC 7239) and/or x-forwarded (X-Forwarded-For/-Proto/-Host/-Port)."},
    )

    def check(self) -> Iterable[tuple[str, str]]:
        for name in self.headers:
            if name not in ("forwarded", "x-forwarded"):
                yield "headers", f"{name!r} is not one of: forwarded, x-forwarded"


@dataclass(frozen=True, kw_only=True)
class HttpListenerConfig(ListenerConfig):
    """An HTTP listener: HTTP/1.1 and HTTP/2, with WebSockets over both on the same port."""

    root_path: str = field(default="", metadata={"doc": "Path prefix the application is mounted at behind a proxy (ASGI root_path)."})
    server_name: str | None = field(
        default="gateway", metadata={"doc": "Value of the Server header; off to send none.", "parse": parse_switch_or_text}
    )
    access_log: str | None = field(
        default=None,
        metadata={"doc": "Access log in the combined log format: off, stdout, stderr or a file path.", "parse": parse_switch_or_text},
    )
    limits: HttpLimitsConfig = field(default_factory=HttpLimitsConfig, metadata={"doc": "Limits."})
    timeouts: HttpTimeoutsConfig = field(default_factory=HttpTimeoutsConfig, metadata={"doc": "Timeouts."})
    proxy: ProxyConfig = field(default_factory=ProxyConfig, metadata={"doc": "Trusted proxies."})
    websocket: WebSocketConfig = field(default_factory=WebSocketConfig, metadata={"doc": "WebSocket upgrades on this listener."})
    http2: Http2Config = field(default_factory=Http2Config, metadata={"doc": "HTTP/2 on this listener."})

    def check(self) -> Iterable[tuple[str, str]]:
        yield from super().check()
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            yield "root_path", "root_path starts with / and has no trailing / (like /api)"
