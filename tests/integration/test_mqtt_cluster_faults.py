"""Two daemons on one Redis are one broker that loses nothing: node deaths (SIGKILL), node stops
(SIGTERM) and a Redis outage (redis-server killed and restarted), with paho-mqtt and
mosquitto_pub/mosquitto_sub as clients.

The daemons run with a short ``heartbeat_interval`` (0.5 s: a death is noticed within 1 s) and
a short ``reconnect_max_delay``; every wait is on a condition, with a bound.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import Daemon, wait_until
from tests.integration.test_mqtt_clients import V5, V311, Client, mqtt_listener
from tests.unit.layers.redis_server import REDIS_SERVER, RedisServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.redis,
    pytest.mark.skipif(REDIS_SERVER is None or not os.path.exists(REDIS_SERVER), reason="needs redis-server"),
    pytest.mark.skipif(importlib.util.find_spec("gateway.layers.redis") is None, reason="needs the Redis layer"),
]
paho = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties as PahoProperties  # noqa: E402

HEARTBEAT = 0.5
MOSQUITTO_SUB = shutil.which("mosquitto_sub")
MOSQUITTO_PUB = shutil.which("mosquitto_pub")


def config(url: str) -> str:
    broker = (f'broker: {{store: redis, redis: "{url}", cluster: on, heartbeat_interval: {HEARTBEAT}, '
              f'takeover_timeout: 1}}')
    listener = mqtt_listener("mqtt", extra=broker)
    return f"""application: tests.mqtt_apps:http_only_app
layers:
  default: {{backend: redis, hosts: ["{url}"], reconnect_max_delay: 0.5, connect_timeout: 1, command_timeout: 2, options: {{block_timeout: 1}}}}
listeners:
{listener}
logging: {{level: info}}
"""


class Cluster:
    def __init__(self, tmp: Path, redis: RedisServer) -> None:
        self.tmp = tmp
        self.redis = redis
        self.daemons: list[Daemon] = []

    def start(self, name: str) -> Daemon:
        path = self.tmp / name
        path.mkdir(exist_ok=True)
        daemon = Daemon(path, config(self.redis.url))
        self.daemons.append(daemon)
        return daemon.start()

    def address(self, daemon: Daemon) -> str:
        return daemon.addresses["mqtt"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    # Append-only with fsync always: a SIGKILLed redis-server comes back with its data.
    redis = RedisServer(tmp_path, args=("--appendonly", "yes", "--appendfsync", "always")).start()
    made = Cluster(tmp_path, redis)
    try:
        yield made
    finally:
        for daemon in made.daemons:
            if daemon.process is not None and daemon.process.poll() is None:
                daemon.process.kill()
            daemon.stop()
        redis.kill()


def will_client(address: str, client_id: str, version: int, delay: int | None = None) -> Any:
    host, port = address.rsplit(":", 1)
    kwargs: dict[str, Any] = {} if version == V5 else {"clean_session": True}
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=paho.MQTTv5 if version == V5 else paho.MQTTv311, reconnect_on_failure=False, **kwargs)
    props = None
    connect_props = None
    if delay is not None:
        props = PahoProperties(PacketTypes.WILLMESSAGE)
        props.WillDelayInterval = delay
        connect_props = PahoProperties(PacketTypes.CONNECT)
        connect_props.SessionExpiryInterval = 60
    client.will_set(f"wills/{client_id}", f"gone {client_id}".encode(), 1, False, props)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    if version == V5:
        client.connect(host, int(port), keepalive=60, properties=connect_props)
    else:
        client.connect(host, int(port), keepalive=60)
    client.loop_start()
    assert connected.wait(10)
    return client


def close_paho(client: Any) -> None:
    client.loop_stop()
    client._reset_sockets()  # else the garbage collector finds them open


class MosquittoSub:
    """``mosquitto_sub`` printing ``topic payload`` lines; subscribed once a marker came back."""

    def __init__(self, address: str, topic: str, qos: int = 1) -> None:
        host, port = address.rsplit(":", 1)
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [str(MOSQUITTO_SUB), "-h", host, "-p", port, "-t", topic, "-t", "marker/#", "-q", str(qos), "-v",
             "-i", f"msub-{time.monotonic_ns()}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        marker = Client(address, f"marker-{time.monotonic_ns()}", V5)
        try:
            def marked() -> bool:
                marker.publish("marker/x", b"here", 1)
                return any(line.startswith("marker/x") for line in self.lines)
            wait_until(marked, timeout=10, interval=0.1, what="mosquitto_sub subscribed")
        finally:
            marker.close()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def matching(self, prefix: str) -> list[str]:
        return [line for line in list(self.lines) if line.startswith(prefix)]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self._reader.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.mark.skipif(MOSQUITTO_SUB is None, reason="needs mosquitto_sub")
def test_wills_of_a_killed_node_are_published_by_a_survivor(cluster: Cluster) -> None:
    a, b = cluster.start("a"), cluster.start("b")
    cluster.start("c")  # two survivors: exactly one takes A over
    sub = MosquittoSub(cluster.address(b), "wills/#")
    clients = [will_client(cluster.address(a), "w-five", V5), will_client(cluster.address(a), "w-311", V311),
               will_client(cluster.address(a), "w-delay", V5, delay=1)]
    try:
        killed = time.monotonic()
        a.signal(signal.SIGKILL)
        a.wait(10)
        wait_until(lambda: len(sub.matching("wills/")) >= 3, timeout=10, interval=0.02, what="3 wills")
        elapsed = time.monotonic() - killed
        assert sorted(sub.matching("wills/")) == [
            "wills/w-311 gone w-311", "wills/w-delay gone w-delay", "wills/w-five gone w-five"]
        # noticed within 2 heartbeat intervals; the delayed will 1 s after that
        assert elapsed < 2 * HEARTBEAT + 1 + 1.0, elapsed
        # Both survivors are done with A once it is forgotten (the loser of the lock gave up at
        # once); a marker through B then comes after anything either of them published.
        wait_until(lambda: len(cluster.redis.command("SMEMBERS", "gateway-mqtt:{default}:nodes")) == 2,
                   timeout=15, what="the dead node forgotten")
        marker = Client(cluster.address(b), "late-marker", V5)
        marker.publish("marker/end", b"end", 1)
        marker.close()
        wait_until(lambda: sub.matching("marker/end"), timeout=10, what="the end marker")
        assert len(sub.matching("wills/")) == 3  # exactly once each
    finally:
        for client in clients:
            close_paho(client)
        sub.close()


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_persistent_session_outlives_its_node(cluster: Cluster, how: str) -> None:
    a, b = cluster.start("a"), cluster.start("b")
    device = Client(cluster.address(a), "device", V311, clean=False)
    assert device.subscribe(("inbox/device", 1)) == [1]
    publisher = Client(cluster.address(b), "pub", V5)
    try:
        if how == "SIGKILL":
            a.signal(signal.SIGKILL)
            a.wait(10)
        else:
            a.stop()
        for n in range(20):  # every one PUBACKed (paho waits for it)
            publisher.publish("inbox/device", f"m{n}".encode(), 1)
        back = Client(cluster.address(b), "device", V311, clean=False)
        assert back.connack == (True, 0), b.output()
        # (QoS 1 is at least once: a message published while the survivor takes over may come
        # twice, once routed to the adopted session, once from the old node's channel)
        got: set[bytes] = set()
        while len(got) < 20:
            try:
                got.add(back.get(timeout=5).payload)
            except Exception:
                raise AssertionError(f"{len(got)} of 20: {sorted(got)}\n{b.output()}") from None
        assert got == {f"m{n}".encode() for n in range(20)}
        back.close()
    finally:
        device.close()
        publisher.close()


class Counting:
    """A paho 5.0 publisher that counts PUBACKs by reason code."""

    def __init__(self, address: str, client_id: str) -> None:
        host, port = address.rsplit(":", 1)
        self.acked: list[bytes] = []
        self.refused: list[bytes] = []
        self.sent: dict[int, bytes] = {}
        self.early: dict[int, int] = {}
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5,
                                  reconnect_on_failure=False)
        self.client.max_inflight_messages_set(20)
        self.client.on_publish = self._on_publish
        connected = threading.Event()
        self.client.on_connect = lambda *args: connected.set()
        self.client.connect(host, int(port), keepalive=60)
        self.client.loop_start()
        assert connected.wait(10)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        # (paho's network thread; never call paho while holding self.lock: paho holds its own
        # locks while it calls this)
        with self.lock:
            payload = self.sent.pop(mid, None)
            if payload is None:
                self.early[mid] = int(reason_code.value)  # answered before publish() returned
                return
            (self.acked if int(reason_code.value) < 0x80 else self.refused).append(payload)

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        info = self.client.publish(topic, payload, qos)
        with self.lock:
            code = self.early.pop(info.mid, None)
            if code is None:
                self.sent[info.mid] = payload
            else:
                (self.acked if code < 0x80 else self.refused).append(payload)

    def close(self) -> None:
        self.client.disconnect()
        close_paho(self.client)


@pytest.mark.parametrize("qos", [1, 2])
def test_acknowledged_means_delivered_across_a_redis_outage(cluster: Cluster, qos: int) -> None:
    a, b = cluster.start("a"), cluster.start("b")
    subscriber = Client(cluster.address(b), "counter", V5)
    assert subscriber.subscribe(("flow/#", qos)) == [qos]
    publisher = Counting(cluster.address(a), f"flow-pub-{qos}")
    received: set[bytes] = set()
    try:
        n = 0

        def send_some(count: int) -> None:
            nonlocal n
            for _ in range(count):
                publisher.publish("flow/x", f"m{n}".encode(), qos)
                n += 1
                time.sleep(0.005)

        def drain() -> set[bytes]:
            while not subscriber.messages.empty():
                received.add(subscriber.messages.get().payload)
            return received

        send_some(100)
        wait_until(lambda: len(publisher.acked) >= 100, timeout=10, what="acks before the outage")
        # (a message the subscriber's node is popping from Redis at the very instant Redis dies
        # is lost with the reply: see docs/redis-layer.md; the count starts from a settled stream)
        wait_until(lambda: len(drain()) >= 100, timeout=10, what="deliveries before the outage")
        cluster.redis.kill()
        send_some(100)  # during the outage: refused (0x80), never acknowledged as received
        wait_until(lambda: len(publisher.refused) + len(publisher.acked) >= 200, timeout=15, what="answers")
        cluster.redis.start()
        before = len(publisher.acked)

        def resumed() -> bool:  # after the restart: accepted again once the nodes reconnected
            send_some(20)
            return len(publisher.acked) - before >= 100
        wait_until(resumed, timeout=20, interval=0.01, what="acknowledgements after the restart")
        wait_until(lambda: not publisher.sent, timeout=20, what="every publish answered")
        acked = set(publisher.acked)

        def all_in() -> bool:
            return acked <= drain()
        try:
            wait_until(all_in, timeout=15, what="every acknowledged message delivered")
        except AssertionError:
            missing = sorted(acked - received, key=lambda p: int(p[1:]))
            raise AssertionError(f"acked {len(acked)}, refused {len(publisher.refused)}, received {len(received)}, "
                                 f"missing {missing}\n{a.output()[-3000:]}\n{b.output()[-3000:]}") from None
        assert publisher.refused, "the outage refused nothing"
        assert len(acked) >= 200  # before and after the outage
        assert acked <= received
    finally:
        publisher.close()
        subscriber.close()


def test_a_311_publisher_gets_no_acknowledgement_while_redis_is_down(cluster: Cluster) -> None:
    a, b = cluster.start("a"), cluster.start("b")
    publisher = Client(cluster.address(a), "old-pub", V311)
    closed = threading.Event()
    publisher.paho.on_disconnect = lambda *args: closed.set()
    try:
        publisher.publish("x/y", b"before", 1)
        cluster.redis.kill()
        info = publisher.paho.publish("x/y", b"during", 1)
        assert closed.wait(10), "the connection was not closed"
        assert not info.is_published()
    finally:
        publisher.close()


@pytest.mark.skipif(MOSQUITTO_PUB is None or MOSQUITTO_SUB is None, reason="needs mosquitto_pub/sub")
def test_retained_messages_across_nodes_with_mosquitto_clients(cluster: Cluster) -> None:
    a, b = cluster.start("a"), cluster.start("b")
    host, port = cluster.address(a).rsplit(":", 1)
    subprocess.run([str(MOSQUITTO_PUB), "-h", host, "-p", port, "-t", "state/lamp", "-m", "on", "-r", "-q", "1"],
                   check=True, timeout=10)
    host, port = cluster.address(b).rsplit(":", 1)
    done = subprocess.run([str(MOSQUITTO_SUB), "-h", host, "-p", port, "-t", "state/#", "-C", "1", "-v", "-W", "5"],
                          check=True, timeout=10, capture_output=True, text=True)
    assert done.stdout.strip() == "state/lamp on"
    # and a node that starts later sees it too
    c = cluster.start("c")
    host, port = cluster.address(c).rsplit(":", 1)
    done = subprocess.run([str(MOSQUITTO_SUB), "-h", host, "-p", port, "-t", "state/lamp", "-C", "1", "-v", "-W", "5"],
                          check=True, timeout=10, capture_output=True, text=True)
    assert done.stdout.strip() == "state/lamp on"
