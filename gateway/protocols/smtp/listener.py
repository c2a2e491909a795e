"""Building an SMTP listener from its configuration (``protocol: smtp``)."""

from __future__ import annotations

import socket
from collections import Counter
from typing import Any

from gateway.config.schema import TLSPolicy
from gateway.listener import EndpointListener, ListenerContext, TrackingFactory
from gateway.logs import RejectionLog
from gateway.metrics.stats import SmtpStats
from gateway.protocols.email.sender import SmarthostSender
from gateway.tls import pem_certificates
from gateway.protocols.smtp.adapter import SMTPProtocol, SMTPSettings, log
from gateway.protocols.smtp.checks import Authenticator, RecipientCheck
from gateway.protocols.smtp.config import SmtpListenerConfig
from gateway.protocols.smtp.core import ServerConfig

__all__ = ["SMTPFactory", "build_listener", "server_tls_options", "smtp_settings"]


class SMTPFactory(TrackingFactory):
    """Builds :class:`SMTPProtocol` connections; counts connections per client address."""

    stats_class = SmtpStats

    def __init__(self, settings: SMTPSettings, max_connections: int | None = None) -> None:
        super().__init__(max_connections)
        self.settings = settings
        self.per_client: Counter[str] = Counter()

    def buildProtocol(self, addr: Any) -> SMTPProtocol:
        protocol = SMTPProtocol(self.settings)
        protocol.factory = self
        return protocol

    def connection_opened(self, protocol: Any) -> None:
        super().connection_opened(protocol)
        client = getattr(protocol, "client", None)
        if client is not None:
            self.per_client[client[0]] += 1

    def connection_closed(self, protocol: Any) -> None:
        super().connection_closed(protocol)
        client = getattr(protocol, "client", None)
        if client is not None:
            host = client[0]
            self.per_client[host] -= 1
            if self.per_client[host] <= 0:
                del self.per_client[host]

    def client_count(self, client: tuple[str, int] | None) -> int:
        """Open connections from the address of ``client`` (0 for UNIX sockets)."""
        return self.per_client.get(client[0], 0) if client is not None else 0


def server_tls_options(certificate: str, private_key: str, policy: TLSPolicy | None = None) -> Any:
    """pyOpenSSL server options from a PEM certificate chain (leaf first) and a PEM key, under
    the listener's TLS policy (:mod:`gateway.tls`; default: Mozilla's intermediate)."""
    from OpenSSL import crypto
    from twisted.internet import ssl

    with open(certificate, "rb") as handle:
        chain_pem = handle.read()
    with open(private_key, "rb") as handle:
        key_pem = handle.read()
    blocks = pem_certificates(chain_pem)
    if not blocks:
        raise ValueError(f"{certificate} holds no PEM certificate")
    certificates = [ssl.Certificate.loadPEM(block) for block in blocks]
    key = ssl.KeyPair.load(key_pem, crypto.FILETYPE_PEM)
    from gateway.tls import certificate_options

    return certificate_options(
        policy,
        privateKey=key.original,
        certificate=certificates[0].original,
        extraCertChain=[c.original for c in certificates[1:]],
    )


def smtp_settings(config: SmtpListenerConfig, context: ListenerContext) -> SMTPSettings:
    """The settings shared by one SMTP listener's connections."""
    hostname = config.hostname or socket.getfqdn()
    implicit = (config.endpoint or "").lower().startswith("ssl:")
    limits = config.limits
    auth = config.auth
    server = ServerConfig(
        hostname=hostname,
        greeting=config.greeting,
        max_message_size=limits.max_message_size,
        max_recipients=limits.max_recipients,
        max_command_line=limits.max_command_line,
        max_data_line=limits.max_data_line,
        max_errors=limits.max_errors,
        max_junk_commands=limits.max_junk_commands,
        timeout=config.timeouts.command,
        tls_available=config.tls is not None or implicit,
        auth_mechanisms=tuple(m.upper() for m in auth.mechanisms) if auth.enabled else (),
        auth_require_tls=True,
        auth_required=auth.required,
        require_tls=config.tls is not None and config.tls.required,
        smtputf8=config.smtputf8,
        check_sender=False,
        bare_newlines=config.bare_newlines,
    )
    tls_options = server_tls_options(config.tls.certificate, config.tls.private_key, config.tls) if config.tls else None
    authenticator = None
    if auth.enabled:
        authenticator = Authenticator(auth.users, auth.hook, context.loop, context.reactor, config.timeouts.auth)
    sender = SmarthostSender(config.smarthost, context.reactor, hostname) if config.smarthost else None
    return SMTPSettings(
        app=context.app,
        loop=context.loop,
        reactor=context.reactor,
        server=server,
        recipients=RecipientCheck(context.app, context.loop, context.reactor, config.timeouts.recipient_check),
        auth=authenticator,
        tls_options=tls_options,
        consumer_timeout=config.timeouts.consumer,
        close_timeout=context.daemon.timeouts.application_close,
        received_header=config.received_header,
        soft_reject=config.soft_reject,
        sender=sender,
        state=context.state,
        max_connections_per_client=limits.max_connections_per_client,
        rejections=RejectionLog(config.name, context.reactor, log),
    )


def build_listener(config: SmtpListenerConfig, context: ListenerContext) -> EndpointListener:
    """Build the listener service for an SMTP listener configuration."""
    settings = smtp_settings(config, context)
    factory = SMTPFactory(settings, config.limits.max_connections)
    if config.endpoint is None:  # the configuration check rules this out
        raise ValueError(f"listener {config.name!r} has no endpoint")
    return EndpointListener(config.name, config.endpoint, factory, context.reactor)
