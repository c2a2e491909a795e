# -*- test-case-name: tests.unit.metrics.test_stats -*-
"""Counters that hot paths increment: plain integers on ``__slots__`` objects.

Adapters never call into ``prometheus_client``: each listener has one stats object (shared by
the listener that replaces it on reload, so counters keep counting), adapters do
``stats.requests += 1``, and :mod:`gateway.metrics.collector` reads the numbers when Prometheus
scrapes or the status page samples. Latencies go into a :class:`Histogram`, a fixed array of
bucket counts updated with :func:`bisect.bisect_left`.

Each stats class lists what it exports in :meth:`ListenerStats.samples`: ``(family, labels,
value)`` with the family keys of :data:`gateway.metrics.families.FAMILIES`; the listener and
protocol labels are added by the collector.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "LATENCY_BUCKETS", "ConnectorStats", "HTTPStats", "Histogram", "ImapStats", "ListenerStats", "MqttStats",
    "SmsStats", "SmtpStats", "stats_class",
]

#: Upper bounds in seconds of the latency histograms (Prometheus ``le``; +Inf is implicit).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)

Sample = tuple[str, tuple[tuple[str, str], ...], Any]


class Histogram:
    """A latency histogram: ``counts[i]`` observations ``<= bounds[i]`` (and above the previous
    bound); the last slot counts the rest (+Inf). ``observe`` is one bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, cumulative count), ...]`` ending with ``("+Inf", count)``, as Prometheus wants."""
        total = 0
        result = []
        for bound, count in zip(self.bounds, self.counts):
            total += count
            result.append((_le(bound), total))
        result.append(("+Inf", total + self.counts[-1]))
        return result


def _le(bound: float) -> str:
    return repr(float(bound))


class InstanceStats:
    """What application instances of one protocol count (the instance core updates these).

    Attributes:
        errors: instances that raised (or returned something other than None).
        timeouts: instances that timed out (did not answer in time, or were cancelled because
            they kept running after their client left).
        client_left: instances that ended on the ``ClientDisconnected`` their ``send()`` raised
            after the client left (not an application error).
    """

    __slots__ = ("client_left", "errors", "timeouts")

    def __init__(self) -> None:
        self.errors = 0
        self.timeouts = 0
        self.client_left = 0

    def samples(self, labels: tuple[tuple[str, str], ...]) -> Iterator[Sample]:
        yield "app_errors", labels, self.errors
        yield "app_timeouts", labels, self.timeouts
        yield "app_client_left", labels, self.client_left


class ListenerStats:
    """What every listener counts. Subclasses add their protocol's counters.

    Attributes:
        connections: connections accepted since start (``connections/s`` is its rate).
        instances: the application instances' errors, timeouts and clients that left.
        read_pauses: times reading from a client paused because the application was behind.
        write_pauses: times the application's ``send()`` waited for a slow client.
    """

    __slots__ = ("connections", "instances", "read_pauses", "write_pauses")

    #: What ``messages`` means on the status page for this protocol (the event type counted).
    protocol = "tcp"

    def __init__(self) -> None:
        self.connections = 0
        self.instances = InstanceStats()
        self.read_pauses = 0
        self.write_pauses = 0

    def samples(self, protocol: str) -> Iterator[Sample]:
        """The numbers to export (``protocol``: the listener's protocol label)."""
        yield "connections_total", (("protocol", protocol),), self.connections
        yield from self.instances.samples((("protocol", protocol),))
        yield "pauses", (("protocol", protocol), ("direction", "read")), self.read_pauses
        yield "pauses", (("protocol", protocol), ("direction", "write")), self.write_pauses

    def messages(self) -> dict[str, tuple[int, int]]:
        """``{protocol: (messages in, messages out)}`` for the status page."""
        return {}


class HTTPStats(ListenerStats):
    """HTTP listeners (and the WebSockets they upgrade to; SMS webhooks, the admin listener)."""

    __slots__ = (
        "requests", "responses", "request_latency",
        "ws_connections", "ws_received", "ws_sent", "ws_instances", "ws_read_pauses",
        "ws_write_pauses", "ws_handshake_latency", "h2_connections", "h2_requests", "h2_goaways",
    )

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0
        self.responses = 0
        self.request_latency = Histogram()
        self.ws_connections = 0
        self.ws_received = 0
        self.ws_sent = 0
        self.ws_instances = InstanceStats()
        self.ws_read_pauses = 0
        self.ws_write_pauses = 0
        self.ws_handshake_latency = Histogram()
        self.h2_connections = 0
        self.h2_requests = 0
        self.h2_goaways = 0

    def samples(self, protocol: str) -> Iterator[Sample]:
        yield from super().samples(protocol)
        proto = (("protocol", protocol),)
        yield "events_in", (*proto, ("type", "http.request")), self.requests
        yield "events_out", (*proto, ("type", "http.response")), self.responses
        yield "request_latency", proto, self.request_latency
        yield "http_requests", (("http_version", "1.x"),), self.requests - self.h2_requests
        yield "http_requests", (("http_version", "2"),), self.h2_requests
        yield "http2_goaways", (), self.h2_goaways
        yield "connections_total", (("protocol", "http2"),), self.h2_connections
        if protocol not in ("http", "admin"):
            return
        ws = (("protocol", "websocket"),)
        yield "connections_total", ws, self.ws_connections
        yield "events_in", (*ws, ("type", "websocket.receive")), self.ws_received
        yield "events_out", (*ws, ("type", "websocket.send")), self.ws_sent
        yield from self.ws_instances.samples(ws)
        yield "pauses", (*ws, ("direction", "read")), self.ws_read_pauses
        yield "pauses", (*ws, ("direction", "write")), self.ws_write_pauses
        yield "handshake_latency", ws, self.ws_handshake_latency

    def messages(self) -> dict[str, tuple[int, int]]:
        return {"http": (self.requests, self.responses), "websocket": (self.ws_received, self.ws_sent)}


class MqttStats(ListenerStats):
    """MQTT listeners: publishes in and out, subscriptions, the CONNECT → CONNACK time."""

    __slots__ = ("publish_in", "publish_out", "subscribe_in", "connects", "dropped", "connect_latency")

    def __init__(self) -> None:
        super().__init__()
        self.publish_in = 0
        self.publish_out = 0
        self.subscribe_in = 0
        self.connects = 0
        self.dropped = 0
        self.connect_latency = Histogram()

    def samples(self, protocol: str) -> Iterator[Sample]:
        yield from super().samples(protocol)
        proto = (("protocol", protocol),)
        yield "events_in", (*proto, ("type", "mqtt.connect")), self.connects
        yield "events_in", (*proto, ("type", "mqtt.publish")), self.publish_in
        yield "events_in", (*proto, ("type", "mqtt.subscribe")), self.subscribe_in
        yield "events_out", (*proto, ("type", "mqtt.publish")), self.publish_out
        yield "mqtt_dropped", (), self.dropped
        yield "handshake_latency", proto, self.connect_latency

    def messages(self) -> dict[str, tuple[int, int]]:
        return {"mqtt": (self.publish_in, self.publish_out)}


class SmtpStats(ListenerStats):
    """SMTP listeners: messages by outcome, refused recipients, the time to an answer."""

    __slots__ = ("accepted", "rejected", "tempfailed", "recipients_rejected", "message_latency")

    def __init__(self) -> None:
        super().__init__()
        self.accepted = 0
        self.rejected = 0
        self.tempfailed = 0
        self.recipients_rejected = 0
        self.message_latency = Histogram()

    def samples(self, protocol: str) -> Iterator[Sample]:
        yield from super().samples(protocol)
        proto = (("protocol", protocol),)
        yield "events_in", (*proto, ("type", "email.receive")), self.accepted + self.rejected + self.tempfailed
        yield "smtp_messages", (("result", "accepted"),), self.accepted
        yield "smtp_messages", (("result", "rejected"),), self.rejected
        yield "smtp_messages", (("result", "tempfailed"),), self.tempfailed
        yield "smtp_recipients_rejected", (), self.recipients_rejected
        yield "request_latency", proto, self.message_latency

    def messages(self) -> dict[str, tuple[int, int]]:
        return {"smtp": (self.accepted + self.rejected + self.tempfailed, 0)}


class ImapStats(ListenerStats):
    """IMAP readers: messages taken (accepted and acted on), rejected, left for a retry."""

    __slots__ = ("taken", "rejected", "retried", "sessions")

    def __init__(self) -> None:
        super().__init__()
        self.taken = 0
        self.rejected = 0
        self.retried = 0
        self.sessions = 0

    def samples(self, protocol: str) -> Iterator[Sample]:
        yield from super().samples(protocol)
        proto = (("protocol", protocol),)
        yield "events_in", (*proto, ("type", "email.receive")), self.taken + self.rejected + self.retried
        yield "imap_messages", (("result", "taken"),), self.taken
        yield "imap_messages", (("result", "rejected"),), self.rejected
        yield "imap_messages", (("result", "retried"),), self.retried
        yield "imap_sessions", (), self.sessions

    def messages(self) -> dict[str, tuple[int, int]]:
        return {"imap": (self.taken + self.rejected + self.retried, 0)}


class SmsStats(HTTPStats):
    """SMS webhook listeners: the HTTP counters plus webhooks by provider and outcome,
    delivery reports by provider and status, and sends by provider and result.

    The keyed counters are dicts (``(provider, word) -> count``): webhooks are not a hot path.
    """

    __slots__ = ("webhooks", "statuses", "sent")

    def __init__(self) -> None:
        super().__init__()
        self.webhooks: dict[tuple[str, str], int] = {}
        self.statuses: dict[tuple[str, str], int] = {}
        self.sent: dict[tuple[str, str], int] = {}

    def webhook(self, provider: str, outcome: str) -> None:
        """Count a webhook (``outcome``: handled, failed, rejected, duplicate, unrouted, ignored)."""
        key = (provider, outcome)
        self.webhooks[key] = self.webhooks.get(key, 0) + 1

    def status(self, provider: str, status: str) -> None:
        """Count a delivery report with the provider's ``status`` word."""
        key = (provider, status)
        self.statuses[key] = self.statuses.get(key, 0) + 1

    def send(self, provider: str, ok: bool) -> None:
        """Count an outbound message (``sms.send`` or a reply sent over REST)."""
        key = (provider, "ok" if ok else "failed")
        self.sent[key] = self.sent.get(key, 0) + 1

    def samples(self, protocol: str) -> Iterator[Sample]:
        yield from super().samples(protocol)
        for (provider, outcome), count in list(self.webhooks.items()):
            yield "sms_webhooks", (("provider", provider), ("outcome", outcome)), count
        for (provider, status), count in list(self.statuses.items()):
            yield "sms_statuses", (("provider", provider), ("status", status)), count
        for (provider, result), count in list(self.sent.items()):
            yield "sms_sent", (("provider", provider), ("result", result)), count

    def messages(self) -> dict[str, tuple[int, int]]:
        received = sum(n for (_, outcome), n in self.webhooks.items() if outcome == "handled")
        sent = sum(n for (_, result), n in self.sent.items() if result == "ok")
        return {"sms": (received, sent)}


class ConnectorStats(ListenerStats):
    """MQTT connectors (the gateway as a client of a broker): whether it is connected, messages
    in (from the broker) and out (published to it), reconnections, the outgoing queue.

    ``connections`` counts connections the broker accepted; ``reconnects`` the connections lost
    or refused that were followed by a new attempt; ``queued`` is the connector's outgoing QoS
    1/2 messages not yet completed by the broker (read at scrape time from ``queued_source``).
    """

    __slots__ = ("connected", "publish_in", "publish_out", "reconnects", "connect_failures", "dropped",
                 "queued_source", "connect_latency")

    protocol = "mqtt-connector"

    def __init__(self) -> None:
        super().__init__()
        self.connected = 0
        self.publish_in = 0
        self.publish_out = 0
        self.reconnects = 0
        self.connect_failures = 0
        self.dropped = 0
        self.queued_source: Callable[[], int] | None = None
        self.connect_latency = Histogram()

    @property
    def queued(self) -> int:
        """Outgoing QoS 1/2 messages not yet completed by the broker."""
        source = self.queued_source
        return source() if source is not None else 0

    def samples(self, protocol: str) -> Iterator[Sample]:
        yield from super().samples(protocol)
        proto = (("protocol", protocol),)
        yield "events_in", (*proto, ("type", "mqtt.publish")), self.publish_in
        yield "events_out", (*proto, ("type", "mqtt.publish")), self.publish_out
        yield "connector_up", (), self.connected
        yield "connector_reconnects", (), self.reconnects
        yield "connector_connect_failures", (), self.connect_failures
        yield "connector_queued", (), self.queued
        yield "connector_dropped", (), self.dropped
        yield "handshake_latency", proto, self.connect_latency

    def messages(self) -> dict[str, tuple[int, int]]:
        return {"mqtt-connector": (self.publish_in, self.publish_out)}

    def details(self) -> dict[str, int]:
        """The connector's row on the status page."""
        return {"up": self.connected, "received": self.publish_in, "sent": self.publish_out,
                "reconnects": self.reconnects, "queued": self.queued, "dropped": self.dropped}


_CLASSES: dict[str, type[ListenerStats]] = {
    "http": HTTPStats,
    "admin": HTTPStats,
    "sms": SmsStats,
    "mqtt": MqttStats,
    "smtp": SmtpStats,
    "imap": ImapStats,
    "mqtt-connector": ConnectorStats,
}


def stats_class(protocol: str) -> type[ListenerStats]:
    """The stats class for a listener protocol (plain :class:`ListenerStats` if unknown)."""
    return _CLASSES.get(protocol, ListenerStats)
