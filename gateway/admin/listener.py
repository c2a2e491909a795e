"""Building an admin listener: an HTTP listener whose application is :class:`AdminApp`."""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.admin.app import AdminApp
from gateway.admin.config import AdminListenerConfig
from gateway.admin.sampler import Sampler, sampler_for
from gateway.listener import ListenerContext
from gateway.protocols.http.listener import HTTPListener
from gateway.protocols.http.listener import build_listener as build_http_listener

__all__ = ["AdminListener", "build_listener"]


class AdminListener(HTTPListener):
    """An HTTP listener serving the admin application; samples the status page's history from
    the moment it starts (the daemon's :class:`Sampler`, shared with other admin listeners)."""

    sampler: Sampler | None = None

    def startService(self) -> None:
        super().startService()
        if self.sampler is not None:
            self.sampler.start()

    def stopService(self) -> Any:
        if self.sampler is not None and self.running:
            self.sampler.release()
        return super().stopService()


def build_listener(config: AdminListenerConfig, context: ListenerContext) -> AdminListener:
    """Build the listener service for an admin listener configuration.

    The daemon passes itself and its metrics hub in ``context.extras`` (``service``,
    ``metrics``); without them (a listener built outside a daemon) the endpoints report an
    empty daemon.
    """
    service = context.extras.get("service")
    hub = context.extras.get("metrics")
    if hub is None:
        from gateway.metrics.hub import MetricsHub

        hub = MetricsHub(service)
    all_ready = getattr(service, "all_ready", None)  # the supervisor of several workers: all of them
    sampler = sampler_for(hub, context.reactor, history=max(1, int(config.history)),
                          ready=all_ready if callable(all_ready) else
                          lambda: bool(service is not None and service.ready and not service.stopping))
    app = AdminApp(service, hub, sampler, readiness_timeout=float(config.readiness_timeout))
    http = build_http_listener(config, dataclasses.replace(context, app=app, state={}))
    listener = AdminListener(config.name, http.endpoint_description, http.factory, context.reactor)
    listener.sampler = sampler
    return listener
