"""HTTP/2 on an HTTP listener: its configuration turned into the hook the HTTP/1.1 adapter offers its
connections to (``HTTPSettings.http2``).

The hook, :class:`H2Door`, loads the HTTP/2 machinery (``h2``, the adapter) only when a connection
first speaks HTTP/2: a listener that only ever serves HTTP/1.1 carries none of it (fewer objects
for the garbage collector to walk on every full collection).
"""

from __future__ import annotations

from typing import Any

from gateway.protocols.http.adapter import HTTPSettings
from gateway.protocols.http.core import Request

#: The client connection preface (RFC 9113 3.4), as ``gateway.protocols.http2.core.PREFACE``;
#: repeated here so that recognising it does not load ``h2``.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def http2_entry(config: Any, http: HTTPSettings) -> H2Door:
    """The HTTP/2 side of one HTTP listener (``config``: its ``HttpListenerConfig``), on the
    settings its HTTP/1.1 side was built with."""
    return H2Door(config, http)


class H2Door:
    """``HTTPSettings.http2``: decides from a connection's first bytes (ALPN ``h2``, or the
    cleartext preface with h2c on) whether it is HTTP/2, and builds the real entry
    (:class:`~gateway.protocols.http2.adapter.H2Entry`) the first time one is."""

    def __init__(self, config: Any, http: HTTPSettings) -> None:
        self.config = config
        self.http = http
        self.h2c: bool = config.http2.h2c
        self._entry: Any = None

    def entry(self) -> Any:
        """The listener's :class:`~gateway.protocols.http2.adapter.H2Entry` (built on first use)."""
        entry = self._entry
        if entry is None:
            entry = self._entry = build_entry(self.config, self.http)
        return entry

    def take_over(self, http: Any, data: bytes) -> bool:
        """Offered a connection's first bytes: take it when it speaks HTTP/2."""
        if http.scheme == "https":
            if getattr(http.transport, "negotiatedProtocol", None) != b"h2":
                return False
        elif not self.h2c or not data or not PREFACE.startswith(data[:len(PREFACE)]):
            return False
        return self.entry().take_over(http, data)

    def upgrades(self, request: Request) -> bool:
        """Whether to switch an ``Upgrade: h2c`` request to HTTP/2."""
        return self.h2c and self.entry().upgrades(request)

    def upgrade(self, http: Any, request: Request) -> None:
        """Switch the connection (101) and answer ``request`` as stream 1."""
        self.entry().upgrade(http, request)


def build_entry(config: Any, http: HTTPSettings) -> Any:
    """The HTTP/2 machinery of one listener: limits, settings, WebSocket over HTTP/2 (sharing the
    listener's WebSocket settings, when its upgrade hook is the WebSocket package's own)."""
    from gateway.protocols.http2.adapter import H2Entry, H2Settings
    from gateway.protocols.http2.core import H2Limits
    from gateway.protocols.websocket.listener import WebSocketUpgrade

    h2 = config.http2
    websocket = None
    if h2.websocket and config.websocket.enabled and isinstance(http.websocket, WebSocketUpgrade):
        from gateway.protocols.http2.websocket import H2WebSockets

        websocket = H2WebSockets(http.websocket.settings, config.websocket)
    limits = H2Limits(
        max_concurrent_streams=h2.max_concurrent_streams,
        max_header_list_size=h2.max_header_list_size,
        max_frame_size=h2.max_frame_size,
        stream_window=h2.stream_window,
        connection_window=h2.connection_window,
        max_streams_per_second=h2.max_streams_per_second,
        max_control_frames_per_second=h2.max_control_frames_per_second,
        max_body_size=config.limits.max_body_size,
        connect_protocol=websocket is not None,
    )
    settings = H2Settings(
        http=http,
        limits=limits,
        h2c=h2.h2c,
        idle_timeout=h2.idle_timeout,
        ping_interval=h2.ping_interval,
        ping_timeout=h2.ping_timeout,
        websocket=websocket,
    )
    return H2Entry(settings)
