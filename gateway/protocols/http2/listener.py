"""HTTP/2 on an HTTP listener: its configuration turned into the :class:`~gateway.protocols.http2.adapter.H2Entry`
the HTTP/1.1 adapter offers its connections to."""

from __future__ import annotations

from typing import Any

from gateway.protocols.http.adapter import HTTPSettings
from gateway.protocols.http2.adapter import H2Entry, H2Settings
from gateway.protocols.http2.config import Http2Config
from gateway.protocols.http2.core import H2Limits


def h2_limits(config: Http2Config, max_body_size: int, websocket: bool) -> H2Limits:
    """The sans-IO core's limits from the ``http2:`` settings."""
    return H2Limits(
        max_concurrent_streams=config.max_concurrent_streams,
        max_header_list_size=config.max_header_list_size,
        max_frame_size=config.max_frame_size,
        stream_window=config.stream_window,
        connection_window=config.connection_window,
        max_streams_per_second=config.max_streams_per_second,
        max_control_frames_per_second=config.max_control_frames_per_second,
        max_body_size=max_body_size,
        connect_protocol=websocket,
    )


def http2_entry(config: Any, http: HTTPSettings) -> H2Entry:
    """The HTTP/2 side of one HTTP listener (``config``: its ``HttpListenerConfig``), on the
    settings its HTTP/1.1 side was built with (WebSocket over HTTP/2 shares the listener's
    WebSocket settings, when its upgrade hook is the WebSocket package's own)."""
    from gateway.protocols.websocket.listener import WebSocketUpgrade

    h2 = config.http2
    websocket = None
    if h2.websocket and config.websocket.enabled and isinstance(http.websocket, WebSocketUpgrade):
        from gateway.protocols.http2.websocket import H2WebSockets

        websocket = H2WebSockets(http.websocket.settings, config.websocket)
    settings = H2Settings(
        http=http,
        limits=h2_limits(h2, config.limits.max_body_size, websocket is not None),
        h2c=h2.h2c,
        idle_timeout=h2.idle_timeout,
        ping_interval=h2.ping_interval,
        ping_timeout=h2.ping_timeout,
        websocket=websocket,
    )
    return H2Entry(settings)
