"""The MQTT connector in real daemons against real brokers: Debian's Mosquitto (plain; TLS with a
password file and trustme certificates; with persistence) and the gateway's own MQTT listener
(TCP and WebSocket), started by the tests on free ports. Messages are checked by what the
consumer recorded (``tests.connector_apps``) and by real clients (paho)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.daemon import Daemon, wait_until
from tests.integration.mosquitto import MOSQUITTO, Mosquitto, free_port
from tests.integration.test_mqtt_clients import V5, V311, Client, mqtt_listener

pytestmark = [pytest.mark.slow, pytest.mark.skipif(MOSQUITTO is None, reason="needs mosquitto")]
paho = pytest.importorskip("paho.mqtt.client")
trustme = pytest.importorskip("trustme")

ADMIN = """  - name: admin
    protocol: admin
    endpoint: "tcp:0:interface=127.0.0.1"
  - name: web
    protocol: http
    endpoint: "tcp:0:interface=127.0.0.1"
"""


def connector(name: str, broker: str, extra: str = "", subscriptions: str = '[{filter: "in/#", qos: 1}]') -> str:
    """A YAML list item for an mqtt-connector listener."""
    lines = [f"  - name: {name}", "    protocol: mqtt-connector", f"    broker: {broker}",
             f"    subscriptions: {subscriptions}", "    reconnect_initial: 100ms", "    reconnect_max: 500ms"]
    lines += ["    " + line for line in extra.strip("\n").splitlines()] if extra.strip() else []
    return "\n".join(lines)


def daemon_config(*listeners: str, app: str = "tests.connector_apps:app", layers: str = "{default: {backend: memory}}") -> str:
    return f"""application: {app}
listeners:
{ADMIN}{chr(10).join(listeners)}
layers: {layers}
logging: {{level: info}}
"""


class Records:
    """What the consumer recorded (one JSON object a line)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        text = self.path.read_text()
        complete = text[: text.rfind("\n") + 1]  # a line being written is not read yet
        return [json.loads(line) for line in complete.splitlines() if line]

    def publishes(self, prefix: str = "") -> list[dict[str, Any]]:
        return [r for r in self.all() if r["event"] == "publish" and r["topic"].startswith(prefix)]

    def connects(self) -> int:
        return sum(1 for r in self.all() if r["event"] == "connect")

    def wait(self, predicate: Callable[[Records], Any], timeout: float = 20.0, what: str = "records") -> Any:
        return wait_until(lambda: predicate(self), timeout=timeout, what=what)

    def wait_publishes(self, prefix: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The publishes recorded under ``prefix``, once there are at least ``count``."""
        return self.wait(lambda r: (lambda seen: seen if len(seen) >= count else None)(r.publishes(prefix)),
                         timeout=timeout, what=f"{count} messages on {prefix}")


def start_daemon(tmp: Path, config: str, env: dict[str, str] | None = None) -> tuple[Daemon, Records]:
    log = tmp / "records.jsonl"
    daemon = Daemon(tmp, config, env={"CONNECTOR_LOG": str(log), **(env or {})}).start()
    return daemon, Records(log)


def readyz(daemon: Daemon) -> tuple[int, Any]:
    answer = httpx.get(daemon.url("admin") + "/readyz", timeout=10)
    return answer.status_code, answer.json()


def metrics(daemon: Daemon) -> str:
    return httpx.get(daemon.url("admin") + "/metrics", timeout=10).text


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Start Mosquitto brokers for a test (``brokers(**options)``); they are stopped after it."""
    made: list[Mosquitto] = []

    def start(**options: Any) -> Mosquitto:
        made.append(Mosquitto(tmp_path, **options).start())
        return made[-1]

    yield start
    for broker in made:
        broker.stop()


# -- Mosquitto, plain ------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=["5.0", "3.1.1"])
def plain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Records, Mosquitto]]:
    tmp = tmp_path_factory.mktemp("connector-plain")
    broker = Mosquitto(tmp).start()
    try:
        version = request.param
        config = daemon_config(connector("sensors", f"mqtt://127.0.0.1:{broker.port}",
                                         f"version: {version}\nclient_id: gw-plain-{version}\npublish_channel: mqtt-out"))
        daemon, records = start_daemon(tmp, config)
        try:
            records.wait(lambda r: r.connects() == 1, what="the connector's first connection")
            yield daemon, records, broker
        finally:
            daemon.stop()
    finally:
        broker.stop()


def test_consumes_and_publishes_through_the_connection(plain: tuple[Daemon, Records, Mosquitto]) -> None:
    daemon, records, broker = plain
    watcher = Client(broker.address, "watcher", V5)
    assert watcher.subscribe(("out/#", 1)) == [1]
    publisher = Client(broker.address, "device-1", V311)
    publisher.publish("in/temperature", b"21.5", 1)
    publisher.publish("in/echo/ping", b"pong", 1)
    message = watcher.get(timeout=10)
    assert (message.topic, message.payload, message.qos) == ("out/ping", b"pong", 1)
    seen = records.wait_publishes("in/temperature", 1)
    assert seen[0]["payload"] == "21.5" and seen[0]["qos"] == 1
    # The channel layer publishes through the connection (publish_channel).
    answer = httpx.post(daemon.url("web") + "/publish", timeout=10,
                        json={"type": "mqtt.publish", "topic": "out/from-layer", "payload": "hi", "qos": 1})
    assert answer.status_code == 200
    message = watcher.get(timeout=10)
    assert (message.topic, message.payload) == ("out/from-layer", b"hi")
    publisher.close()
    watcher.close()


def test_a_failing_consumer_gets_the_message_again(plain: tuple[Daemon, Records, Mosquitto]) -> None:
    daemon, records, broker = plain
    connects = records.connects()
    publisher = Client(broker.address, "device-2", V5)
    publisher.publish("in/fragile", b"fail-once:a", 1)
    publisher.publish("in/fragile", b"after", 1)
    # The consumer raised: no PUBACK, the connection closed (DISCONNECT 0x80), and the broker sent
    # the message again on the next connection (DUP), where it was handled, once.
    seen = records.wait_publishes("in/fragile", 2)
    assert [r["payload"] for r in seen] == ["fail-once:a", "after"]
    assert seen[0]["dup"] is True
    assert records.connects() == connects + 1
    assert "Exception in ASGI application for MQTT connector sensors" in daemon.output()
    publisher.close()


def test_scope_says_who_is_who(plain: tuple[Daemon, Records, Mosquitto]) -> None:
    daemon, records, broker = plain
    scopes = httpx.get(daemon.url("web") + "/scopes", timeout=10).json()
    scope = scopes[-1]
    assert scope["client"] == ["127.0.0.1", broker.port]
    assert scope["client_id"].startswith("gw-plain-") and scope["clean_start"] is False
    assert scope["transport"] == "tcp"
    assert scope["connector"]["name"] == "sensors"
    assert scope["connector"]["broker"] == f"mqtt://127.0.0.1:{broker.port}"
    assert scope["connector"]["subscriptions"][0]["topic_filter"] == "in/#"


# -- Mosquitto over TLS, with a password file --------------------------------------------------------

@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mosquitto, Path]]:
    tmp = tmp_path_factory.mktemp("connector-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    broker = Mosquitto(tmp, tls=(str(tmp / "cert.pem"), str(tmp / "key.pem")), users={"gw": "s3cret-pw"}).start()
    try:
        yield broker, tmp
    finally:
        broker.stop()


def test_tls_and_credentials_from_the_environment(tls_broker: tuple[Mosquitto, Path], tmp_path: Path) -> None:
    broker, certs = tls_broker
    other_ca = trustme.CA()
    other_ca.cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    config = daemon_config(
        connector("secure", f"mqtts://localhost:{broker.port}",
                  f"username: gw\npassword: ${{BROKER_PASSWORD}}\ntls: {{ca_file: {certs}/ca.pem}}"),
        connector("wrong-password", f"mqtts://localhost:{broker.port}",
                  f"username: gw\npassword: ${{WRONG_PASSWORD}}\ntls: {{ca_file: {certs}/ca.pem}}"),
        connector("wrong-ca", f"mqtts://localhost:{broker.port}",
                  f"username: gw\npassword: ${{BROKER_PASSWORD}}\ntls: {{ca_file: {tmp_path}/other-ca.pem}}"),
    )
    daemon, records = start_daemon(tmp_path, config, env={"BROKER_PASSWORD": "s3cret-pw", "WRONG_PASSWORD": "guess"})
    try:
        records.wait(lambda r: r.connects() == 1, what="the TLS connection")
        publisher = Client(broker.address, "device-tls", V5, username="gw", password="s3cret-pw",
                           tls_ca=str(certs / "ca.pem"))
        publisher.publish("in/secure", b"over tls", 1)
        records.wait_publishes("in/secure", 1)
        publisher.close()
        status, body = wait_until(lambda: (lambda s: s if len(s[1]["reasons"]) == 2 and all(
            "last error" in reason for reason in s[1]["reasons"]) else None)(readyz(daemon)), what="readyz reasons")
        assert status == 503
        reasons = sorted(body["reasons"])
        assert reasons[0].startswith("listener wrong-ca is not connected to mqtts://localhost:")
        assert "certificate verify failed" in reasons[0]
        assert reasons[1].startswith("listener wrong-password is not connected")
        # Mosquitto 2.0 answers a wrong password with 0x87 Not authorized (others say 0x86).
        assert re.search(r"the broker refused the connection: 0x8[67] (bad user name or password|not authorized)",
                         reasons[1])
        # The secure one is connected; the scope has TLS details; no password anywhere.
        scopes = httpx.get(daemon.url("web") + "/scopes", timeout=10).json()
        assert scopes[0]["connector"]["broker"] == f"mqtts://localhost:{broker.port}"
        text = metrics(daemon)
        assert 'gateway_mqtt_connector_up{listener="secure"} 1.0' in text
        assert 'gateway_mqtt_connector_up{listener="wrong-ca"} 0.0' in text
    finally:
        daemon.stop()
    output = daemon.output()
    assert "s3cret-pw" not in output and "guess" not in output
    assert re.search(r"wrong-password: .*: the broker refused the connection: 0x8[67]", output)


def test_client_certificates(tmp_path: Path, brokers: Callable[..., Mosquitto]) -> None:
    """A broker that asks for a client certificate (require_certificate): the connector presents
    the one configured; without it the handshake fails and /readyz says why."""
    ca = trustme.CA()
    server = ca.issue_cert("localhost")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    server.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client = ca.issue_cert("gateway-client")
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    broker = brokers(tls=(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")),
                     extra=f"cafile {tmp_path}/ca.pem\nrequire_certificate true")
    config = daemon_config(
        connector("with-cert", f"mqtts://localhost:{broker.port}",
                  f"tls: {{ca_file: {tmp_path}/ca.pem, cert_file: {tmp_path}/client.pem, key_file: {tmp_path}/client.key}}"),
        connector("without", f"mqtts://localhost:{broker.port}", f"tls: {{ca_file: {tmp_path}/ca.pem}}"),
    )
    daemon, records = start_daemon(tmp_path, config)
    try:
        records.wait(lambda r: r.connects() == 1, what="the connection with a client certificate")
        status, body = wait_until(lambda: (lambda s: s if s[1].get("reasons") and "last error" in s[1]["reasons"][0]
                                           else None)(readyz(daemon)), what="the other connector's error")
        assert status == 503 and len(body["reasons"]) == 1
        assert body["reasons"][0].startswith("listener without is not connected")
        scopes = httpx.get(daemon.url("web") + "/scopes", timeout=10).json()
        assert scopes[0]["connector"]["name"] == "with-cert"
    finally:
        daemon.stop()
        broker.stop()


def test_a_reload_replaces_the_connector(tmp_path: Path, brokers: Callable[..., Mosquitto]) -> None:
    """A changed connector is replaced on reload: the old one finishes and DISCONNECTs, the new one
    takes the session over with the new subscriptions."""
    broker = brokers()
    url = f"mqtt://127.0.0.1:{broker.port}"
    one = '[{filter: "in/one/#", qos: 1}]'
    daemon, records = start_daemon(tmp_path, daemon_config(connector("live", url, "client_id: gw-live", one)))
    try:
        records.wait(lambda r: r.connects() == 1, what="the first connection")
        both = '[{filter: "in/one/#", qos: 1}, {filter: "in/two/#", qos: 1}]'
        daemon.reload(daemon_config(connector("live", url, "client_id: gw-live", both)))
        records.wait(lambda r: r.connects() == 2, what="the new connector's connection")
        wait_until(lambda: readyz(daemon)[0] == 200, what="ready again")
        broker.wait_subscribed("in/two/#")
        publisher = Client(broker.address, "device-reload", V5)
        publisher.publish("in/two/new", b"second filter", 1)
        publisher.publish("in/one/old", b"first filter", 1)
        publisher.close()
        assert records.wait_publishes("in/two/", 1)[0]["payload"] == "second filter"
        assert records.wait_publishes("in/one/", 1)[0]["payload"] == "first filter"
        assert "already connected, closing old connection" not in broker.log_path.read_text()  # the old one had left
    finally:
        daemon.stop()
        broker.stop()


# -- the broker goes away --------------------------------------------------------------------------

def test_survives_the_broker_being_killed(tmp_path: Path, brokers: Callable[..., Mosquitto]) -> None:
    """SIGKILL: the broker loses everything. The connector reconnects with backoff, subscribes
    again (the new broker has no session), and the QoS 1 stream published while the broker was
    down (held by the connector) goes out on reconnection: it comes back through the
    subscription complete, each message once."""
    broker = brokers()
    config = daemon_config(connector("loop", f"mqtt://127.0.0.1:{broker.port}", "publish_channel: mqtt-out",
                                     subscriptions='[{filter: "in/#", qos: 1}]'))
    daemon, records = start_daemon(tmp_path, config)
    try:
        records.wait(lambda r: r.connects() == 1, what="the first connection")
        broker.kill()
        wait_until(lambda: readyz(daemon)[0] == 503, what="readyz to report the connector down")
        for n in range(200):
            answer = httpx.post(daemon.url("web") + "/publish", timeout=10,
                                json={"type": "mqtt.publish", "topic": "in/stream", "payload": f"m{n}", "qos": 1})
            assert answer.status_code == 200
        wait_until(lambda: 'gateway_mqtt_connector_queued_messages{listener="loop"} 200.0' in metrics(daemon),
                   what="the 200 messages held")
        broker.start()
        seen = records.wait_publishes("in/stream", 200)
        assert Counter(r["payload"] for r in seen) == Counter(f"m{n}" for n in range(200))
        assert [r["payload"] for r in seen] == [f"m{n}" for n in range(200)]  # in order, too
        assert readyz(daemon)[0] == 200
        text = metrics(daemon)
        assert 'gateway_mqtt_connector_reconnects_total{listener="loop"}' in text
        assert 'gateway_mqtt_connector_up{listener="loop"} 1.0' in text
    finally:
        daemon.stop()
        broker.stop()


def test_a_stream_across_a_broker_restart_arrives_complete(tmp_path: Path, brokers: Callable[..., Mosquitto]) -> None:
    """Mosquitto with persistence is stopped and started again while a QoS 1 stream is being
    consumed: the connector's session (clean start off) is resumed, what it had not acknowledged
    is sent again (DUP), and messages published while it was away are delivered after: every
    message arrives, and one that arrives twice is a redelivery (DUP set)."""
    broker = brokers(persistence=True)
    config = daemon_config(connector("stream", f"mqtt://127.0.0.1:{broker.port}", "limits: {receive_maximum: 10}"))
    daemon, records = start_daemon(tmp_path, config, env={"CONNECTOR_DELAY": "0.005"})
    try:
        records.wait(lambda r: r.connects() == 1, what="the first connection")
        publisher = Client(broker.address, "streamer", V311)
        for n in range(300):
            publisher.publish("in/stream", f"s{n}".encode(), 1)
        publisher.close()
        records.wait_publishes("in/stream", 20)
        broker.stop()  # mid-stream: in flight and queued messages are saved
        wait_until(lambda: readyz(daemon)[0] == 503, what="readyz to report the connector down")
        broker.start()
        publisher = Client(broker.address, "streamer", V311)
        for n in range(300, 400):  # published while the connector may still be away
            publisher.publish("in/stream", f"s{n}".encode(), 1)
        publisher.close()
        seen = records.wait(lambda r: {x["payload"] for x in r.publishes("in/stream")} >= {f"s{n}" for n in range(400)}
                            and r.publishes("in/stream"), timeout=60, what="the whole stream")
        counts = Counter(r["payload"] for r in seen)
        assert set(counts) == {f"s{n}" for n in range(400)}
        for payload, count in counts.items():
            if count > 1:
                deliveries = [r for r in seen if r["payload"] == payload]
                assert all(r["dup"] for r in deliveries[1:]), deliveries
        assert records.connects() >= 2
    finally:
        daemon.stop()
        broker.stop()


def test_messages_published_while_the_daemon_restarts_are_delivered(tmp_path: Path, brokers: Callable[..., Mosquitto]) -> None:
    broker = brokers()
    config = daemon_config(connector("durable", f"mqtt://127.0.0.1:{broker.port}", "client_id: gw-durable"))
    daemon, records = start_daemon(tmp_path, config)
    try:
        records.wait(lambda r: r.connects() == 1, what="the first connection")
        daemon.stop()  # a clean stop: DISCONNECT, the session stays (clean start off, expiry 1 day)
        publisher = Client(broker.address, "device-3", V5)
        for n in range(50):
            publisher.publish("in/while-away", f"w{n}".encode(), 1)
        publisher.close()
        (tmp_path / "again").mkdir()
        daemon, records = start_daemon(tmp_path / "again", config)
        seen = records.wait_publishes("in/while-away", 50)
        assert [r["payload"] for r in seen] == [f"w{n}" for n in range(50)]
        connects = [r for r in records.all() if r["event"] == "connect"]
        assert connects[-1]["session_present"] is True
    finally:
        daemon.stop()
        broker.stop()


def test_shared_subscriptions_split_the_load(tmp_path: Path, brokers: Callable[..., Mosquitto]) -> None:
    broker = brokers()
    shared = '[{filter: "$share/workers/in/jobs/#", qos: 1}]'
    config = daemon_config(
        connector("worker-a", f"mqtt://127.0.0.1:{broker.port}", "client_id: worker-a", subscriptions=shared),
        connector("worker-b", f"mqtt://127.0.0.1:{broker.port}", "client_id: worker-b\nversion: 3.1.1",
                  subscriptions=shared),
    )
    daemon, records = start_daemon(tmp_path, config)
    try:
        records.wait(lambda r: r.connects() == 2, what="both connections")
        wait_until(lambda: readyz(daemon)[0] == 200, what="both subscribed")
        publisher = Client(broker.address, "dispatcher", V5)
        for n in range(40):
            publisher.publish(f"in/jobs/{n}", f"j{n}".encode(), 1)
        publisher.close()
        seen = records.wait_publishes("in/jobs/", 40)
        assert sorted(r["payload"] for r in seen) == sorted(f"j{n}" for n in range(40))
        by_worker = Counter(r["client_id"] for r in seen)
        assert set(by_worker) == {"worker-a", "worker-b"} and sum(by_worker.values()) == 40
    finally:
        daemon.stop()
        broker.stop()


# -- the gateway's own listener as the broker ----------------------------------------------------------

@pytest.mark.parametrize("transport", ["tcp", "websocket"])
def test_our_own_listener_as_the_broker(tmp_path: Path, transport: str) -> None:
    port = free_port()
    extra = "transport: websocket\nconsumer: broker" if transport == "websocket" else "consumer: broker"
    (tmp_path / "far").mkdir()
    far = Daemon(tmp_path / "far",
                 f"application: tests.connector_apps:http_only\nlisteners:\n"
                 f"{mqtt_listener('broker', f'tcp:{port}:interface=127.0.0.1', extra)}\nlogging: {{level: info}}\n").start()
    scheme = "ws" if transport == "websocket" else "mqtt"
    url = f"{scheme}://127.0.0.1:{port}" + ("/mqtt" if transport == "websocket" else "")
    near_tmp = tmp_path / "near"
    near_tmp.mkdir()
    daemon, records = start_daemon(near_tmp, daemon_config(connector("bridge", url)))
    try:
        records.wait(lambda r: r.connects() == 1, what="the connection to our listener")
        watcher = Client(far.addresses["broker"], "watcher", V5, transport="websockets" if transport == "websocket" else "tcp")
        watcher.subscribe(("out/#", 1))
        device = Client(far.addresses["broker"], "device", V311, transport="websockets" if transport == "websocket" else "tcp")
        device.publish("in/echo/hello", b"world", 1)
        message = watcher.get(timeout=10)
        assert (message.topic, message.payload) == ("out/hello", b"world")
        assert records.publishes("in/echo/hello")[0]["payload"] == "world"
        scopes = httpx.get(daemon.url("web") + "/scopes", timeout=10).json()
        assert scopes[0]["transport"] == transport
        device.close()
        watcher.close()
    finally:
        daemon.stop()
        far.stop()


def test_an_application_without_mqtt_is_reported(tmp_path: Path, brokers: Callable[..., Mosquitto]) -> None:
    broker = brokers()
    config = daemon_config(connector("nobody", f"mqtt://127.0.0.1:{broker.port}"), app="tests.connector_apps:http_only")
    daemon, _ = start_daemon(tmp_path, config)
    try:
        status, body = wait_until(lambda: (lambda s: s if any("nobody" in x for x in s[1].get("reasons", [])) else None)(
            readyz(daemon)), what="readyz")
        assert status == 503
        assert "listener nobody is not connecting to" in body["reasons"][0]
        assert "does not handle mqtt scopes" in body["reasons"][0]
    finally:
        daemon.stop()
        broker.stop()



# -- the status page ---------------------------------------------------------------------------------

@pytest.mark.chromium
def test_status_page_shows_each_connector(tmp_path: Path, brokers: Callable[..., Mosquitto]) -> None:
    from tests.integration.chromium import CHROMIUM, Browser

    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed")
    broker = brokers()
    config = daemon_config(connector("sensors", f"mqtt://127.0.0.1:{broker.port}"),
                           connector("offline", f"mqtt://127.0.0.1:{free_port()}"))
    daemon, records = start_daemon(tmp_path, config)
    browser = Browser(tmp_path)
    try:
        records.wait(lambda r: r.connects() == 1, what="the connection")
        page = browser.start(daemon.url("admin") + "/")
        page.wait_for("document.querySelectorAll('#connectors tr').length === 2", what="a row per connector")
        page.wait_for("document.getElementById('conn-state-sensors').textContent === 'connected'", what="sensors up")
        assert page.evaluate("document.getElementById('conn-state-offline').textContent") == "down"
        assert page.evaluate("document.getElementById('connectors-table').hidden") is False
        publisher = Client(broker.address, "device-page", V311)
        for n in range(3):
            publisher.publish("in/page", b"%d" % n, 1)
        publisher.close()
        page.wait_for("Number(document.getElementById('conn-received-sensors').textContent) >= 3",
                      what="three messages received")
        page.wait_for("Number(document.getElementById('conn-reconnects-offline').textContent) >= 1",
                      what="the offline connector's attempts")
        page.wait_for("document.getElementById('row-mqtt-connector') !== null", what="the protocol row")
    finally:
        browser.stop()
        daemon.stop()
        broker.stop()


# -- the documented example ----------------------------------------------------------------------------

def documented_example() -> tuple[str, str, str]:
    """The Python, YAML and shell blocks of "Connecting to an existing broker" in docs/asgi-mqtt.md."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "asgi-mqtt.md").read_text()
    section = text.split("## Connecting to an existing broker", 1)[1].split("\n## ", 1)[0]
    blocks: dict[str, str] = {}
    for part in section.split("```")[1::2]:
        kind, _, body = part.partition("\n")
        blocks.setdefault(kind, body)
    return blocks["python"], blocks["yaml"], blocks["sh"]


def test_the_documented_example_runs(tls_broker: tuple[Mosquitto, Path], tmp_path: Path) -> None:
    """The example of docs/asgi-mqtt.md as written, against Mosquitto with TLS and a password
    file (and a Redis layer for publish_channel): only the broker's address, its CA file and the
    Redis URL are replaced."""
    from tests.unit.layers.redis_server import REDIS_SERVER, RedisServer

    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    broker, certs = tls_broker
    python, yaml_text, shell = documented_example()
    (tmp_path / "sensors.py").write_text(python)
    redis = RedisServer(tmp_path).start()
    config = (yaml_text.replace("mqtts://broker.example.org:8883", f"mqtts://localhost:{broker.port}")
              .replace("/etc/gateway/broker-ca.pem", str(certs / "ca.pem"))
              .replace("redis://127.0.0.1:6379/0", redis.url)
              .replace("username: gateway", "username: gw"))
    env = {"BROKER_PASSWORD": "s3cret-pw", "PYTHONPATH": str(tmp_path)}
    daemon = Daemon(tmp_path, config, env=env).start()
    watcher = Client(broker.address, "doc-watcher", V5, username="gw", password="s3cret-pw", tls_ca=str(certs / "ca.pem"))
    try:
        broker.wait_subscribed("$share/gateways/sensors/+/temperature")
        assert watcher.subscribe(("alerts/#", 1)) == [1]
        sensor = Client(broker.address, "doc-sensor", V311, username="gw", password="s3cret-pw",
                        tls_ca=str(certs / "ca.pem"))
        sensor.publish("sensors/boiler/temperature", b"20.5", 1)
        sensor.publish("sensors/boiler/temperature", b"31", 1)
        message = watcher.get(timeout=20)
        assert (message.topic, message.payload) == ("alerts/boiler", b"too hot")
        sensor.close()
        command = shell.strip().splitlines()[1]
        assert command.startswith("gateway send -c gateway.yaml --channel mqtt-out ")
        argument = command.split(" --channel mqtt-out ", 1)[1].strip("'")
        sent = subprocess.run([sys.executable, "-m", "gateway", "send", "-c", str(daemon.config_path),
                               "--channel", "mqtt-out", argument], env=daemon.env, capture_output=True, timeout=60)
        assert sent.returncode == 0, sent.stderr.decode()
        message = watcher.get(timeout=20)
        assert (message.topic, message.payload, message.qos) == ("alerts/all", b"maintenance at noon", 1)
    finally:
        watcher.close()
        daemon.stop()
        redis.stop()
    assert "s3cret-pw" not in daemon.output()
