# -*- test-case-name: tests.unit.websocket.test_adapter -*-
"""The upgrade hook an HTTP listener installs to serve WebSockets (``HTTPSettings.websocket``).

:func:`websocket_upgrade` builds, once per listener, the settings, the origin policy, an autobahn
factory (validating autobahn's options) and a per-listener protocol class carrying those options
as class attributes. For each ``Upgrade: websocket`` request the hook refuses what it must before
anything is built (too many WebSockets: 503; a disallowed Origin: 403; a head autobahn would read
differently from us: 400), then hands the connection over to a new protocol and feeds it the
request head exactly as received.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from twisted.logger import Logger, LogLevel

from gateway.asgi.app import ASGIApp
from gateway.logs import RejectionLog, autobahn_log
from gateway.protocols.http.accesslog import AccessLog
from gateway.metrics.stats import HTTPStats
from gateway.protocols.websocket.adapter import WebSocketProtocol
from gateway.protocols.websocket.asgi import websocket_scope
from gateway.protocols.websocket.config import PerMessageDeflateConfig, WebSocketConfig
from gateway.protocols.websocket.frames import AUTOBAHN_DEFAULTS

log = Logger(namespace="gateway.websocket")

#: Characters ``str.splitlines`` (autobahn's header parser) breaks lines at, besides CR/LF, that
#: llhttp accepts inside a header value: a value holding one would be two headers for autobahn
#: and one for us (the Daphne CVE-2026-44546 pattern). Such requests get 400.
_AUTOBAHN_LINE_BREAKS = re.compile(rb"[\x0b\x0c\x1c\x1d\x1e\x85]")


@dataclass(eq=False)
class WebSocketSettings:
    """Everything one listener's WebSocket connections share."""

    app: ASGIApp
    loop: Any
    reactor: Any
    server_name: str | None = "gateway"
    server_header: bytes = b"server: gateway\r\n"
    accept_timeout: float = 10.0
    handshake_timeout: float = 20.0
    close_timeout: float = 5.0
    ping_interval: float | None = 20.0
    ping_timeout: float = 20.0
    max_lifetime: float | None = None
    application_close_timeout: float = 10.0
    read_high_water: int = 256 * 1024
    write_high_water: int = 64 * 1024
    max_connections: int = 10000
    origins: OriginPolicy | None = None
    #: The HTTP listener's access log (handshakes: 101 or the refusal's status).
    access_log: AccessLog | None = None
    #: Rate-limits the lines about refused handshakes (the HTTP listener's).
    rejections: RejectionLog | None = None
    #: Open WebSockets on this listener.
    open_count: int = 0
    #: Of those, the ones on HTTP/2 streams (RFC 8441; they hold no connection of their own).
    open_over_http2: int = 0
    #: Counters (the HTTP listener's stats object once the daemon attaches it; gateway.metrics).
    stats: HTTPStats = field(default_factory=HTTPStats, repr=False)
    protocol_class: type[WebSocketProtocol] = field(default=WebSocketProtocol, repr=False)


class OriginPolicy:
    """An Origin allow-list (RFC 6454 origins: scheme, host, port).

    Entries: ``*`` (anything, even no Origin), ``null`` (the opaque origin), ``https://host[:port]``,
    or ``https://*.example.com`` for any subdomain. Default ports are filled in; hosts compare
    case-insensitively. A request without an Origin header only passes with ``*``.
    """

    def __init__(self, entries: tuple[str, ...]) -> None:
        self.any = "*" in entries
        self.null = "null" in entries
        self.exact: set[tuple[str, str, int]] = set()
        self.suffixes: list[tuple[str, str, int]] = []
        for entry in entries:
            if entry in ("*", "null"):
                continue
            parts = urlsplit(entry)
            host = (parts.hostname or "").lower()
            port = parts.port or (443 if parts.scheme == "https" else 80)
            if host.startswith("*."):
                self.suffixes.append((parts.scheme, host[1:], port))
            else:
                self.exact.add((parts.scheme, host, port))

    def allows(self, origin: bytes | None) -> bool:
        """Whether a handshake with this ``Origin`` header value may reach the application."""
        if self.any:
            return True
        if origin is None:
            return False
        text = origin.decode("latin-1").strip()
        if text == "null":
            return self.null
        try:
            parts = urlsplit(text)
            scheme = parts.scheme.lower()
            host = (parts.hostname or "").lower()
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            return False
        if (scheme, host, port) in self.exact:
            return True
        return any(scheme == s and port == p and host.endswith(suffix) for s, suffix, p in self.suffixes)


class WebSocketUpgrade:
    """The hook: ``upgrade(http_protocol, request, scope)`` takes an upgrade request's connection over."""

    def __init__(self, settings: WebSocketSettings) -> None:
        self.settings = settings

    def __call__(self, http: Any, request: Any, scope: dict[str, Any]) -> bool:
        settings = self.settings
        if settings.open_count >= settings.max_connections:
            rejections = settings.rejections
            if rejections is None or rejections.allow("too many WebSockets", LogLevel.warn):
                log.warn("WebSocket refused: max_connections={limit} WebSockets are open", limit=settings.max_connections)  # noqa: G010
            return self._refuse(http, request, scope, 503, "too many WebSocket connections")
        raw_head = request.raw_head
        if _AUTOBAHN_LINE_BREAKS.search(raw_head):
            return self._refuse(http, request, scope, 400, "control characters in the request head")
        origins = settings.origins
        if origins is not None and not origins.allows(_header(scope["headers"], b"origin")):
            # Refused before the application is called (cross-site WebSocket hijacking).
            return self._refuse(http, request, scope, 403, "origin not allowed")
        protocol = settings.protocol_class(websocket_scope(scope), request, http)
        transport, tracker = http.hand_over(protocol)
        protocol.tracker = tracker
        protocol.makeConnection(transport)
        # autobahn validates the handshake on the bytes the client sent, not a re-serialised copy.
        protocol.dataReceived(raw_head + http.conn.trailing_data)
        return True

    def _refuse(self, http: Any, request: Any, scope: dict[str, Any], status: int, message: str) -> bool:
        access_log = self.settings.access_log
        if access_log is not None:
            access_log.log_line(scope, request, status, 0, None)
        http.refuse_upgrade(status, message)
        return False


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def deflate_acceptor(config: PerMessageDeflateConfig) -> Any:
    """autobahn's ``perMessageCompressionAccept``: take the client's first permessage-deflate offer.

    RFC 7692 7.1: our compressor uses ``window_bits`` (or less, when the client asks for less);
    below 15 the client is asked to use no more either, when its offer allows asking.
    """
    bits = config.window_bits
    memory_level = config.memory_level

    def accept(offers: list[Any]) -> Any:
        for offer in offers:
            if isinstance(offer, PerMessageDeflateOffer):
                window = bits
                if offer.request_max_window_bits:
                    window = min(window, offer.request_max_window_bits)
                request_bits = bits if bits < 15 and offer.accept_max_window_bits else 0
                return PerMessageDeflateOfferAccept(
                    offer, request_max_window_bits=request_bits, window_bits=window, mem_level=memory_level
                )
        return None

    return accept


def protocol_class(settings: WebSocketSettings, config: WebSocketConfig) -> type[WebSocketProtocol]:
    """A protocol class for one listener: autobahn's options as class attributes, not per connection."""
    factory = WebSocketServerFactory(reactor=settings.reactor, server=None)
    deflate = config.per_message_deflate
    factory.setProtocolOptions(
        versions=[13],  # RFC 6455 4.2.1
        webStatus=False,
        utf8validateIncoming=True,
        requireMaskedClientFrames=True,  # RFC 6455 5.1
        maskServerFrames=False,
        maxFramePayloadSize=config.max_frame_size,
        maxMessagePayloadSize=config.max_message_size,
        autoFragmentSize=0,
        failByDrop=False,  # send close frames with 1002/1007/1009 instead of dropping
        echoCloseCodeReason=True,  # RFC 6455 5.5.1: echo the client's code
        openHandshakeTimeout=0,  # our timer (adapter.py) replaces autobahn's
        closeHandshakeTimeout=0,
        autoPingInterval=0,
        autoPingTimeout=0,
        tcpNoDelay=True,
        perMessageCompressionAccept=deflate_acceptor(deflate) if deflate.enabled else (lambda offers: None),
        serveFlashSocketPolicy=False,
        allowedOrigins=["*"],  # the Origin policy is ours, applied before autobahn runs
        allowNullOrigin=True,
        maxConnections=0,
        trustXForwardedFor=0,  # proxies are resolved by the HTTP listener
    )
    attrs: dict[str, Any] = dict(AUTOBAHN_DEFAULTS)
    attrs.update({name: getattr(factory, name) for name in WebSocketServerProtocol.CONFIG_ATTRS})
    attrs["perMessageCompressionAccept"] = staticmethod(factory.perMessageCompressionAccept)
    limits = [size for size in (config.max_frame_size, config.max_message_size) if size]
    if settings.rejections is None:
        settings.rejections = RejectionLog("websocket", settings.reactor, log)
    attrs.update(
        __slots__=(),
        log=autobahn_log(settings.rejections),
        factory=factory,
        settings=settings,
        clock=staticmethod(settings.reactor.seconds),
        _fast_max=min(limits) if limits else 1 << 62,
    )
    return type("WebSocketProtocol", (WebSocketProtocol,), attrs)


def websocket_upgrade(
    config: WebSocketConfig,
    *,
    app: ASGIApp,
    loop: Any,
    reactor: Any,
    server_name: str | None,
    application_close_timeout: float,
    access_log: AccessLog | None = None,
    rejections: RejectionLog | None = None,
) -> WebSocketUpgrade:
    """The hook for ``HTTPSettings.websocket`` on one listener."""
    settings = WebSocketSettings(
        app=app,
        loop=loop,
        reactor=reactor,
        server_name=server_name,
        server_header=b"server: %s\r\n" % server_name.encode("latin-1") if server_name else b"",
        accept_timeout=config.accept_timeout,
        handshake_timeout=config.handshake_timeout,
        close_timeout=config.close_timeout,
        ping_interval=config.ping_interval,
        ping_timeout=config.ping_timeout,
        max_lifetime=config.max_lifetime,
        application_close_timeout=application_close_timeout,
        read_high_water=config.read_high_water,
        write_high_water=config.write_high_water,
        max_connections=config.max_connections,
        origins=OriginPolicy(config.allowed_origins) if config.allowed_origins else None,
        access_log=access_log,
        rejections=rejections,
    )
    settings.protocol_class = protocol_class(settings, config)
    return WebSocketUpgrade(settings)
