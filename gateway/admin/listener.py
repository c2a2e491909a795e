"""Building an admin listener: an HTTP listener whose application is :class:`AdminApp`."""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.admin.app import AdminApp
from gateway.admin.config import AdminListenerConfig
from gateway.admin.sampler import Sampler
from gateway.listener import ListenerContext
from gateway.protocols.http.listener import HTTPListener
from gateway.protocols.http.listener import build_listener as build_http_listener

__all__ = ["AdminListener", "build_listener"]


class AdminListener(HTTPListener):
    """An HTTP listener serving the admin application; stops its sampler when it stops."""

    sampler: Sampler | None = None

    def stopService(self) -> Any:
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler.subscribers.clear()
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
    sampler = Sampler(hub.summary, context.reactor, history=max(1, int(config.history)),
                      ready=lambda: bool(service is not None and service.ready and not service.stopping))
    app = AdminApp(service, hub, sampler, readiness_timeout=float(config.readiness_timeout))
    http = build_http_listener(config, dataclasses.replace(context, app=app, state={}))  # type: ignore[arg-type]
    listener = AdminListener(config.name, http.endpoint_description, http.factory, context.reactor)
    listener.sampler = sampler
    return listener
