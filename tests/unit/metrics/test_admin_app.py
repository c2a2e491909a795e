"""The admin application without sockets: readiness reasons and the 503 answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from twisted.internet.task import Clock

from gateway.admin.app import AdminApp, readiness
from gateway.admin.sampler import Sampler
from gateway.listener import GatewayListener
from gateway.metrics.hub import MetricsHub
from gateway.testing import HttpCommunicator


class Listener(GatewayListener):
    def __init__(self, name: str, bound: bool, endpoint: str | None = "tcp:0") -> None:
        super().__init__(name)
        self.config = type("C", (), {"endpoint": endpoint, "protocol": "http"})()
        self._bound = bound

    def addresses(self) -> list[str]:
        return ["127.0.0.1:1"] if self._bound else []


class Connector(Listener):
    """A listener without a socket that says when it cannot serve (an MQTT connector)."""

    def readiness_problem(self) -> str | None:
        return "is not connected to mqtt://broker:1883 (last error: connection refused)"


class Layers:
    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.aliases = ["default"]

    def get(self, alias: str) -> Any:
        return self.layer


class Service:
    def __init__(self, *, ready: bool = True, stopping: bool = False, listeners: list[Any] | None = None,
                 layer: Any = None) -> None:
        self.ready = ready
        self.stopping = stopping
        self.listeners = listeners if listeners is not None else [Listener("web", True)]
        self.retiring: set[Any] = set()
        self.layers = Layers(layer)


class DownLayer:
    async def ping(self) -> None:
        raise ConnectionRefusedError("connection refused")


class SlowLayer:
    async def ping(self) -> None:
        await asyncio.sleep(10)


class ShardsDown:
    def stats(self) -> dict[str, int]:
        return {"shards_down": 2}


def reasons(service: Any) -> list[str]:
    return asyncio.run(readiness(service, timeout=0.05))


def test_readiness_reasons() -> None:
    assert reasons(Service()) == []
    assert reasons(Service(ready=False)) == ["starting"]
    assert reasons(Service(stopping=True)) == ["stopping"]
    assert reasons(Service(listeners=[Listener("web", False), Listener("reader", False, endpoint=None)])) == [
        "listener web is not bound"]
    assert reasons(Service(listeners=[Connector("sensors", False, endpoint=None)])) == [
        "listener sensors is not connected to mqtt://broker:1883 (last error: connection refused)"]
    assert reasons(Service(layer=DownLayer())) == ["layer default: ConnectionRefusedError: connection refused"]
    assert reasons(Service(layer=SlowLayer())) == ["layer default: no answer within 0.05s"]
    assert reasons(Service(layer=ShardsDown())) == ["layer default: 2 shard(s) down"]


def test_readyz_answers_503_with_the_reasons() -> None:
    service = Service(ready=False, layer=DownLayer())
    hub = MetricsHub(service)
    app = AdminApp(service, hub, Sampler(hub.summary, Clock()), readiness_timeout=0.05)

    async def get(path: str) -> Any:
        return await HttpCommunicator(app, "GET", path).get_response()

    response = asyncio.run(get("/readyz"))
    assert response["status"] == 503
    assert json.loads(response["body"]) == {
        "status": "not ready", "reasons": ["starting", "layer default: ConnectionRefusedError: connection refused"]}
    assert asyncio.run(get("/healthz"))["status"] == 200
