"""Metrics: counters the adapters increment, exported in the Prometheus format at scrape time.

See ``docs/operations.md`` for the list. :class:`~gateway.metrics.stats.ListenerStats` and its
subclasses are what adapters touch (plain integers); :class:`~gateway.metrics.hub.MetricsHub`
hands them out and reads them (``prometheus_client`` runs only at scrape time).
"""

from __future__ import annotations

from gateway.metrics.stats import (
    Histogram,
    HTTPStats,
    ImapStats,
    ListenerStats,
    MqttStats,
    SmsStats,
    SmtpStats,
    stats_class,
)

__all__ = [
    "HTTPStats", "Histogram", "ImapStats", "ListenerStats", "MetricsHub", "MqttStats", "SmsStats", "SmtpStats",
    "stats_class",
]


def __getattr__(name: str) -> object:
    # The hub imports prometheus_client; adapters only need the stats classes.
    if name == "MetricsHub":
        from gateway.metrics.hub import MetricsHub

        return MetricsHub
    raise AttributeError(name)
