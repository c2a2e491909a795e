# -*- test-case-name: tests.unit.metrics.test_hub -*-
"""The daemon's metrics: stats objects by listener, and reading them all at scrape time.

A :class:`MetricsHub` belongs to the :class:`~gateway.service.GatewayService`. Each listener gets
its stats object from :meth:`MetricsHub.attach` when it is built (also on reload); a listener
that replaces another of the same name and protocol gets the same object, so counters continue
across a reload and the retiring listener's last connections still count. Nothing is read
until :meth:`MetricsHub.collect` (a Prometheus scrape) or :meth:`MetricsHub.summary` (the status
page, once a second while a page is open) runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from gateway import __version__
from gateway.metrics.families import FAMILIES
from gateway.metrics.stats import ConnectorStats, ListenerStats, stats_class

__all__ = ["MetricsHub", "layer_samples", "open_connections"]

Sample = tuple[str, tuple[tuple[str, str], ...], Any]


class MetricsHub(Collector):
    """Stats by listener plus the collector that exports them (see the module documentation).

    Args:
        service: the daemon (``listeners``, ``retiring``, ``layers``, ``ready``); None in tests
            that only use :meth:`stats_for`.
    """

    def __init__(self, service: Any = None) -> None:
        self.service = service
        self._stats: dict[tuple[str, str], ListenerStats] = {}
        self._registry: CollectorRegistry | None = None

    # -- listeners -----------------------------------------------------------------------

    def stats_for(self, name: str, protocol: str) -> ListenerStats:
        """The stats object of listener ``name`` speaking ``protocol`` (made on first use)."""
        key = (name, protocol)
        stats = self._stats.get(key)
        if stats is None:
            stats = self._stats[key] = stats_class(protocol)()
        return stats

    def attach(self, listener: Any) -> ListenerStats:
        """Give a freshly built listener its stats object (``listener.attach_stats``)."""
        protocol = listener.config.protocol if listener.config is not None else "tcp"
        stats = self.stats_for(listener.name, protocol)
        attach = getattr(listener, "attach_stats", None)
        if attach is not None:
            attach(stats)
        return stats

    def listeners(self) -> list[Any]:
        """Listeners whose numbers are exported: the configured ones and those still draining."""
        service = self.service
        if service is None:
            return []
        return [*service.listeners, *getattr(service, "retiring", ())]

    # -- Prometheus ----------------------------------------------------------------------

    @property
    def registry(self) -> CollectorRegistry:
        """A registry with this collector and the process, platform and GC collectors."""
        if self._registry is None:
            from prometheus_client import (
                GCCollector,
                PlatformCollector,
                ProcessCollector,
            )

            registry = CollectorRegistry(auto_describe=False)
            registry.register(self)
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
            self._registry = registry
        return self._registry

    def exposition(self) -> bytes:
        """The Prometheus text format of everything."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def collect(self) -> Iterable[Metric]:
        """``prometheus_client`` calls this at scrape time."""
        families: dict[str, Metric] = {}
        for key, labels, value in self.samples():
            family = FAMILIES[key]
            metric = families.get(key)
            if metric is None:
                metric = families[key] = _metric(family.kind, family.name, family.help, family.labels)
            values = [dict(labels).get(name, "") for name in family.labels]
            if family.kind == "histogram":
                metric.add_metric(values, value.cumulative(), value.sum)  # type: ignore[attr-defined]
            else:
                metric.add_metric(values, value)  # type: ignore[attr-defined]
        return list(families.values())

    def samples(self) -> Iterator[Sample]:
        """Every exported number, as ``(family key, labels, value)``."""
        service = self.service
        yield "info", (("version", __version__),), 1
        yield "ready", (), 1 if service is not None and service.ready else 0
        seen: set[tuple[str, str]] = set()
        opened: dict[tuple[str, str], int] = {}
        for listener in self.listeners():
            protocol = listener.config.protocol if listener.config is not None else "tcp"
            seen.add((listener.name, protocol))
            for proto, count in open_connections(listener, protocol).items():
                opened[(listener.name, proto)] = opened.get((listener.name, proto), 0) + count
            if listener in getattr(service, "listeners", ()):
                up = 1 if service.ready and listener.readiness_problem() is None else 0
                yield "listener_up", (("listener", listener.name), ("protocol", protocol)), up
        for (name, proto), count in opened.items():
            yield "connections_open", (("listener", name), ("protocol", proto)), count
        for (name, protocol), stats in self._stats.items():
            if (name, protocol) not in seen:
                continue  # removed by a reload and drained: no series (its numbers are kept)
            listener_label = ("listener", name)
            for key, labels, value in stats.samples(protocol):
                yield key, (listener_label, *labels), value
        yield from _broker_samples(self.listeners())
        layers = getattr(service, "layers", None)
        if layers is not None:
            for alias in layers.aliases:
                layer = layers.get(alias)
                if layer is not None:
                    yield from layer_samples(alias, layer)

    # -- the status page -----------------------------------------------------------------

    def summary(self) -> dict[str, dict[str, int]]:
        """``{protocol: {"open", "connections", "received", "sent"}}`` over every listener
        except admin listeners (the status page would otherwise count itself)."""
        result: dict[str, dict[str, int]] = {}

        def entry(protocol: str) -> dict[str, int]:
            found = result.get(protocol)
            if found is None:
                found = result[protocol] = {"open": 0, "connections": 0, "received": 0, "sent": 0}
            return found

        names = set()
        for listener in self.listeners():
            protocol = listener.config.protocol if listener.config is not None else "tcp"
            if protocol == "admin":
                continue
            names.add((listener.name, protocol))
            for proto, count in open_connections(listener, protocol).items():
                entry(proto)["open"] += count
        for (name, protocol), stats in self._stats.items():
            if (name, protocol) not in names:
                continue
            for proto, (received, sent) in stats.messages().items():
                item = entry(proto)
                item["received"] += received
                item["sent"] += sent
            entry(protocol)["connections"] += stats.connections
            ws = getattr(stats, "ws_connections", None)
            if ws is not None and protocol == "http":
                entry("websocket")["connections"] += ws
        return result


    def connectors(self) -> dict[str, dict[str, int]]:
        """The MQTT connectors' rows of the status page: ``{name: {"up", "received", "sent",
        "reconnects", "queued", "dropped"}}``."""
        result: dict[str, dict[str, int]] = {}
        for listener in self.listeners():
            stats = self._stats.get((listener.name, "mqtt-connector"))
            if isinstance(stats, ConnectorStats):
                result[listener.name] = stats.details()
        return result


def _metric(kind: str, name: str, documentation: str, labels: tuple[str, ...]) -> Metric:
    if kind == "counter":
        return CounterMetricFamily(name, documentation, labels=labels)
    if kind == "gauge":
        return GaugeMetricFamily(name, documentation, labels=labels)
    return HistogramMetricFamily(name, documentation, labels=labels)


def open_connections(listener: Any, protocol: str) -> dict[str, int]:
    """Open connections of one listener by protocol: an HTTP listener's WebSockets (its upgrade
    hook's ``open_count``) are told apart from its HTTP connections (those over HTTP/2 are streams
    of a connection counted as HTTP)."""
    factory = getattr(listener, "factory", None)
    if factory is None:
        return {protocol: listener.connection_count()}
    total = len(factory.connections)
    if protocol not in ("http", "admin"):
        return {protocol: total}
    hook = getattr(getattr(factory, "settings", None), "websocket", None)
    settings = getattr(hook, "settings", None)
    websockets = getattr(settings, "open_count", 0)
    over_http2 = getattr(settings, "open_over_http2", 0)
    if not isinstance(websockets, int) or not isinstance(over_http2, int):
        websockets = over_http2 = 0
    # WebSockets over HTTP/2 are streams of an HTTP/2 connection, not connections of their own.
    upgraded = min(websockets - over_http2, total)
    return {protocol: total - upgraded, "websocket": upgraded + over_http2}


def _broker_samples(listeners: list[Any]) -> Iterator[Sample]:
    brokers: dict[int, Any] = {}
    for listener in listeners:
        entry = getattr(listener, "entry", None)
        broker = getattr(entry, "broker", None)
        if broker is not None:
            brokers[id(broker)] = broker
    for broker in brokers.values():
        label = ("broker", broker.name)
        sessions = list(broker.sessions.values())
        online = sum(1 for session in sessions if session.conn is not None)
        yield "mqtt_sessions", (label, ("state", "online")), online
        yield "mqtt_sessions", (label, ("state", "offline")), len(sessions) - online
        yield "mqtt_subscriptions", (label,), sum(len(session.subscriptions) for session in sessions)
        retained = getattr(broker.store, "retained", None)
        if isinstance(retained, dict):
            yield "mqtt_retained", (label,), len(retained)
        yield "mqtt_queue_dropped", (label,), broker.stats.get("dropped", 0)


#: Layer counters (``layer.stats()`` of the memory and Redis layers): key, family, label, value.
_LAYER_COUNTERS: tuple[tuple[str, str, str, str], ...] = (
    ("sent", "layer_ops", "operation", "send"),
    ("send_full", "layer_ops", "operation", "send"),
    ("send_failed", "layer_ops", "operation", "send"),
    ("received", "layer_ops", "operation", "receive"),
    ("group_sends", "layer_ops", "operation", "group_send"),
    ("send_failed", "layer_errors", "kind", "send"),
    ("group_send_failed", "layer_errors", "kind", "group_send"),
    ("undecodable", "layer_errors", "kind", "undecodable"),
    ("connect_failures", "layer_errors", "kind", "connect"),
    ("over_capacity", "layer_dropped", "reason", "capacity"),
    ("expired", "layer_dropped", "reason", "expired"),
)


def layer_samples(alias: str, layer: Any) -> Iterator[Sample]:
    """A channel layer's numbers from its ``stats()`` (layers without one export nothing)."""
    stats_method = getattr(layer, "stats", None)
    if not callable(stats_method):
        return
    try:
        stats = stats_method()
    except Exception:  # a layer that cannot report must not break the scrape
        return
    label = ("layer", alias)
    grouped: dict[tuple[str, str, str], int] = {}
    for key, family, name, value in _LAYER_COUNTERS:
        if key in stats:
            grouped[(family, name, value)] = grouped.get((family, name, value), 0) + int(stats[key])
    for (family, name, value), count in grouped.items():
        yield family, (label, (name, value)), count
    for key, family in (("channels", "layer_channels"), ("local_channels", "layer_channels"),
                        ("groups", "layer_groups"), ("messages", "layer_queued"), ("local_queued", "layer_queued")):
        if key in stats:
            yield family, (label,), int(stats[key])
    if "connections_up" in stats:
        yield "layer_connections", (label, ("state", "up")), int(stats["connections_up"])
        yield "layer_connections", (label, ("state", "down")), int(stats.get("connections_down", 0))

