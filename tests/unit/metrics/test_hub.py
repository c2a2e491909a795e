"""The metrics hub: stats by listener, shared across a reload, exported in the text format."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.testing import MemoryReactorClock

from gateway.config import load_config_text
from gateway.exceptions import ChannelFull
from gateway.layers.memory import InMemoryChannelLayer
from gateway.metrics.families import FAMILIES
from gateway.metrics.hub import MetricsHub, layer_samples, open_connections
from gateway.metrics.stats import HTTPStats, MqttStats, SmtpStats

CONFIG = """
application: tests.apps:app
listeners:
  - {name: web, protocol: http, endpoint: "tcp:0:interface=127.0.0.1"}
  - {name: mqtt, protocol: mqtt, endpoint: "tcp:0:interface=127.0.0.1"}
  - {name: smtp, protocol: smtp, endpoint: "tcp:0:interface=127.0.0.1", hostname: localhost}
  - {name: admin, protocol: admin, endpoint: "tcp:0:interface=127.0.0.1"}
"""


@pytest.fixture
def service() -> Iterator[Any]:
    from gateway.service import GatewayService

    loop = asyncio.new_event_loop()
    config = load_config_text(textwrap.dedent(CONFIG), "test.yaml", environ={})
    service = GatewayService(config, reactor=MemoryReactorClock(), loop=loop, install_signal_handlers=False)
    yield service
    service._executor.shutdown(wait=False)
    loop.close()


def scrape(hub: MetricsHub) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples = {}
    for family in text_string_to_metric_families(hub.exposition().decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def test_listeners_count_into_the_hubs_objects(service: Any) -> None:
    hub = service.metrics
    web, mqtt, smtp, admin = service.listeners
    assert web.factory.stats is hub.stats_for("web", "http") and isinstance(web.factory.stats, HTTPStats)
    assert mqtt.settings.stats is hub.stats_for("mqtt", "mqtt") and isinstance(mqtt.settings.stats, MqttStats)
    assert smtp.factory.settings.stats is hub.stats_for("smtp", "smtp") and isinstance(smtp.factory.stats, SmtpStats)
    assert admin.factory.stats is hub.stats_for("admin", "admin")


def test_a_replacement_listener_keeps_the_counters(service: Any) -> None:
    old = service.listeners[0]
    old.factory.stats.requests = 41
    replacement = service.build_listener(old.config, service.config)  # what a reload does
    assert replacement is not old
    assert replacement.factory.stats is old.factory.stats
    replacement.factory.stats.requests += 1
    samples = scrape(service.metrics)
    assert samples[("gateway_events_received_total",
                    frozenset({"listener": "web", "protocol": "http", "type": "http.request"}.items()))] == 42


def test_a_removed_listener_is_no_longer_exported(service: Any) -> None:
    hub = service.metrics
    smtp = service.listeners.pop(2)
    samples = scrape(hub)
    assert not [key for key in samples if ("listener", "smtp") in key[1]]
    service.retiring.add(smtp)  # still draining: exported
    assert [key for key in scrape(hub) if ("listener", "smtp") in key[1]]


def test_exposition_follows_prometheus_conventions(service: Any) -> None:
    text = service.metrics.exposition().decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for family in FAMILIES.values():
        assert family.name.startswith("gateway_")
        if family.kind == "histogram":
            assert family.name.endswith("_seconds")
    assert families["gateway_connections"].type == "counter"
    assert "gateway_connections_total{" in text
    assert families["gateway_request_duration_seconds"].type == "histogram"
    assert 'gateway_ready 0.0' in text  # not started
    assert 'gateway_listener_up{listener="web",protocol="http"} 0.0' in text
    assert "process_cpu_seconds_total" in text or "python_info" in text


def test_open_connections_tell_websockets_apart(service: Any) -> None:
    web = service.listeners[0]
    web.factory.connections.update({object(), object(), object()})

    class Hook:
        settings = type("S", (), {"open_count": 2})()

    web.factory.settings.websocket = Hook()
    assert open_connections(web, "http") == {"http": 1, "websocket": 2}
    summary = service.metrics.summary()
    assert summary["http"]["open"] == 1 and summary["websocket"]["open"] == 2
    assert "admin" not in summary


def test_layer_counters_of_the_memory_layer() -> None:
    async def traffic() -> InMemoryChannelLayer:
        layer = InMemoryChannelLayer(capacity=1)
        await layer.send("a", {"type": "x"})
        with pytest.raises(ChannelFull):
            await layer.send("a", {"type": "x"})
        await layer.receive("a")
        await layer.group_add("g", "b")
        await layer.group_add("g", "c")
        await layer.send("c", {"type": "fill"})
        await layer.group_send("g", {"type": "y"})
        return layer

    layer = asyncio.run(traffic())
    samples = {(key, labels): value for key, labels, value in layer_samples("default", layer)}
    ops = lambda op: samples[("layer_ops", (("layer", "default"), ("operation", op)))]
    assert (ops("send"), ops("receive"), ops("group_send")) == (3, 1, 1)
    assert samples[("layer_dropped", (("layer", "default"), ("reason", "capacity")))] == 2  # a send, a member
    assert samples[("layer_queued", (("layer", "default"),))] == 2
    assert samples[("layer_groups", (("layer", "default"),))] == 1
