"""Building an SMS listener: an HTTP listener whose application is the webhook bridge.

The HTTP side is the ordinary HTTP/1.1 listener (limits, timeouts, access log, drain). Two
differences: its application is a :class:`~gateway.protocols.sms.adapter.WebhookBridge` around the
user's application, and proxy headers are not applied by the HTTP side but by the bridge, which
must know whether the peer itself is a trusted proxy before it believes the scheme and host it
signs with (so the access log shows the proxy's address).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.logger import Logger

from gateway.layers.marks import shared_marks
from gateway.listener import ListenerContext
from gateway.logs import RejectionLog
from gateway.protocols.http.listener import HTTPFactory, HTTPListener, http_settings
from gateway.protocols.http.proxy import TrustedProxies
from gateway.protocols.sms.adapter import Account, WebhookBridge, effective_timeout
from gateway.protocols.sms.config import SmsListenerConfig
from gateway.protocols.sms.dedup import ConcatBuffer, DedupCache, DedupStore, SharedDedup
from gateway.protocols.sms.sender import SmsSender

__all__ = ["SmsListener", "build_listener", "build_accounts"]

log = Logger(namespace="gateway.sms")

_LOOPBACK = ("127.", "localhost", "[::1]")


class SmsListener(HTTPListener):
    """An HTTP listener for webhooks; also closes the outbound connections when it stops."""

    def __init__(self, name: str, endpoint: str, factory: HTTPFactory, reactor: Any, bridge: WebhookBridge) -> None:
        super().__init__(name, endpoint, factory, reactor)
        self.bridge = bridge

    def attach_stats(self, stats: Any) -> None:
        super().attach_stats(stats)
        self.bridge.stats = stats

    def stopService(self) -> Any:
        result = super().stopService()
        loop = self.bridge.loop
        closing = [account.sender.close() for account in self.bridge.accounts.values()]
        if not closing or loop.is_closed():
            for coroutine in closing:
                coroutine.close()
            return result
        closed = defer.Deferred.fromFuture(asyncio.ensure_future(asyncio.gather(*closing), loop=loop))
        return defer.gatherResults([defer.maybeDeferred(lambda: result), closed], consumeErrors=True)


def build_accounts(config: SmsListenerConfig, reactor: Any) -> list[Account]:
    """The run-time accounts, warning about every weakened one (start-up warnings).

    Raises:
        ValueError: an account's settings are invalid (the configuration check catches this first).
    """
    accounts = []
    for account_config in config.accounts:
        provider = account_config.build_provider()
        sender = SmsSender(reactor, ca_file=account_config.ca_file, timeout=config.send_timeout)
        accounts.append(Account(account_config.name, account_config.path, provider, sender))
        if not account_config.verify_signatures:
            log.warn("SMS listener {listener}: signature verification is OFF for account {account} "
                     "({provider} at {path}): anyone who can reach it can inject messages",
                     listener=config.name, account=account_config.name, provider=account_config.provider,
                     path=account_config.path)
        base = urlsplit(provider.base_url)
        if base.scheme == "http" and not base.netloc.startswith(_LOOPBACK):
            log.warn("SMS listener {listener}: account {account} sends over plain HTTP to {url}: credentials "
                     "travel unencrypted", listener=config.name, account=account_config.name, url=provider.base_url)
        timeout = effective_timeout(config.consumer_timeout, provider.retry_policy.deadline)
        if timeout < config.consumer_timeout:
            log.info("SMS listener {listener}: account {account}: applications have {timeout}s to acknowledge "
                     "({provider} waits {deadline}s for the answer)", listener=config.name,
                     account=account_config.name, timeout=timeout, provider=account_config.provider,
                     deadline=provider.retry_policy.deadline)
    return accounts


def dedup_store(config: SmsListenerConfig, context: ListenerContext) -> DedupStore:
    """Handled deliveries in memory, shared through the Redis layer when one is configured."""
    local = DedupCache(config.dedup_window, config.dedup_max_entries)
    marks = shared_marks(context.layers, f"sms:{config.name}")
    return local if marks is None else SharedDedup(local, marks)


def build_listener(config: SmsListenerConfig, context: ListenerContext) -> SmsListener:
    """Build the listener service for an SMS listener configuration."""
    if config.endpoint is None:  # the configuration check rules this out
        raise ValueError(f"listener {config.name!r} has no endpoint")
    proxies = TrustedProxies(config.proxy.trusted, config.proxy.headers) if config.proxy.trusted else None
    bridge = WebhookBridge(
        context.app,
        build_accounts(config, context.reactor),
        loop=context.loop,
        reactor=context.reactor,
        public_base=config.public_url,
        proxies=proxies,
        consumer_timeout=config.consumer_timeout,
        application_close=context.daemon.timeouts.application_close,
        dedup=dedup_store(config, context),
        concat=ConcatBuffer(config.concat_window),
        max_body=config.max_webhook_size,
        unrouted=config.unrouted,
        state=context.state,
        rejections=RejectionLog(config.name, context.reactor, log),
    )
    settings = http_settings(config, dataclasses.replace(context, app=bridge))
    settings.proxies = None  # applied by the bridge (see the module docstring)
    if config.http2.enabled:
        from gateway.protocols.http2.listener import http2_entry

        settings.http2 = http2_entry(config, settings)
    factory = HTTPFactory(settings, config.limits.max_connections)
    return SmsListener(config.name, config.endpoint, factory, context.reactor, bridge)
