"""Building an HTTP listener from its configuration."""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IProtocolNegotiationFactory
from zope.interface import implementer

from gateway.listener import EndpointListener, ListenerContext, TrackingFactory
from gateway.logs import RejectionLog
from gateway.protocols.http.accesslog import AccessLog
from gateway.protocols.http.adapter import HTTPProtocol, HTTPSettings, log
from gateway.protocols.http.config import HttpListenerConfig
from gateway.protocols.http.proxy import TrustedProxies


@implementer(IProtocolNegotiationFactory)
class HTTPFactory(TrackingFactory):
    """Builds :class:`HTTPProtocol` connections sharing one :class:`HTTPSettings`.

    On TLS listeners it advertises ``h2`` (when HTTP/2 is on) and ``http/1.1`` over ALPN, in that
    order of preference. Besides being right, this matters:
    with no protocols of its own, Twisted's ALPN callback answers an offering client (curl,
    every browser) with an empty selection, which OpenSSL 3.5+/4 rejects with an
    ``internal_error`` alert.
    """

    def acceptableProtocols(self) -> list[bytes]:
        """ALPN protocols, most preferred first."""
        if self.settings.http2 is not None:
            return [b"h2", b"http/1.1"]
        return [b"http/1.1"]

    def __init__(self, settings: HTTPSettings, max_connections: int | None = None) -> None:
        super().__init__(max_connections)
        self.settings = settings

    def buildProtocol(self, addr: Any) -> HTTPProtocol:
        protocol = HTTPProtocol(self.settings)
        protocol.factory = self
        return protocol


class HTTPListener(EndpointListener):
    """An HTTP listener; closes its access log when it stops."""

    factory: HTTPFactory

    def stopService(self) -> Any:
        result = super().stopService()
        access_log = self.factory.settings.access_log
        if access_log is not None:
            access_log.close()
        return result


def http_settings(config: HttpListenerConfig, context: ListenerContext) -> HTTPSettings:
    """The settings shared by one HTTP listener's connections."""
    limits = config.limits
    timeouts = config.timeouts
    proxies = TrustedProxies(config.proxy.trusted, config.proxy.headers) if config.proxy.trusted else None
    access_log = AccessLog(config.access_log) if config.access_log else None
    if access_log is not None:
        access_log.open()
    server_header = b"server: %s\r\n" % config.server_name.encode("latin-1") if config.server_name else b""
    return HTTPSettings(
        app=context.app,
        loop=context.loop,
        reactor=context.reactor,
        limits=limits.parser_limits(),
        root_path=config.root_path,
        server_header=server_header,
        header_timeout=timeouts.header,
        keep_alive_timeout=timeouts.keep_alive,
        body_timeout=timeouts.body,
        lingering_timeout=timeouts.lingering,
        lingering_size=limits.lingering_size,
        request_timeout=timeouts.request,
        application_close_timeout=context.daemon.timeouts.application_close,
        max_pipelined=limits.max_pipelined_requests,
        read_high_water=limits.read_high_water,
        write_high_water=limits.write_high_water,
        proxies=proxies,
        access_log=access_log,
        state=context.state,
        rejections=RejectionLog(config.name, context.reactor, log),
    )


def build_listener(config: HttpListenerConfig, context: ListenerContext) -> HTTPListener:
    """Build the listener service for an HTTP listener configuration."""
    settings = http_settings(config, context)
    if config.websocket.enabled:
        from gateway.protocols.websocket.listener import websocket_upgrade

        settings.websocket = websocket_upgrade(
            config.websocket,
            app=context.app,
            loop=context.loop,
            reactor=context.reactor,
            server_name=config.server_name,
            application_close_timeout=context.daemon.timeouts.application_close,
            access_log=settings.access_log,
            rejections=settings.rejections,
        )
    if config.http2.enabled:
        from gateway.protocols.http2.listener import http2_entry

        settings.http2 = http2_entry(config, settings)
    factory = HTTPFactory(settings, config.limits.max_connections)
    if config.endpoint is None:  # the configuration check rules this out
        raise ValueError(f"listener {config.name!r} has no endpoint")
    return HTTPListener(config.name, config.endpoint, factory, context.reactor)
