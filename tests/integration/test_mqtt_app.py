"""An application answering MQTT clients (``tests.mqtt_apps:app``) in a real daemon: consumers
storing readings, the application's own refusals, and QoS 1 acknowledged only once handled."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from gateway.protocols.mqtt import PubAck, Publish, ReasonCode
from tests.integration.daemon import Daemon
from tests.integration.test_mqtt_clients import V5, V311, Client, Raw, mqtt_listener

pytestmark = pytest.mark.slow
paho = pytest.importorskip("paho.mqtt.client")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("mqtt-app")
    config = f"""application: tests.mqtt_apps:app
listeners:
{mqtt_listener("mqtt")}
  - name: web
    protocol: http
    endpoint: "tcp:0:interface=127.0.0.1"
logging: {{level: info}}
"""
    daemon = Daemon(tmp, config).start()
    yield daemon
    daemon.stop()


def test_consumer_stores_and_forwards(project: Daemon) -> None:
    watcher = Client(project.addresses["mqtt"], "dashboard", V5)
    assert watcher.subscribe(("stored/#", 1)) == [1]
    sensor = Client(project.addresses["mqtt"], "sensor-7", V311)
    sensor.publish("sensors/s7/temperature", b"19.5", 1)
    message = watcher.get()
    assert (message.topic, message.payload) == ("stored/s7", b"19.5")
    with urllib.request.urlopen(f"http://{project.addresses['web']}/readings", timeout=10) as response:
        readings = json.loads(response.read())
    assert {"sensor": "s7", "value": "19.5", "client": "sensor-7"} in readings
    sensor.close()
    watcher.close()


def test_application_refusals_and_downgrade(project: Daemon) -> None:
    blocked = Raw(project.addresses["mqtt"])
    assert blocked.connect("blocked").reason_code == ReasonCode.BAD_USER_NAME_OR_PASSWORD
    blocked.close()
    client = Client(project.addresses["mqtt"], "curious", V5)
    assert client.subscribe(("$private/keys", 1), ("downgrade/x", 2), ("open/x", 2)) == [0x87, 0, 2]
    client.close()


def test_failing_consumer_loses_nothing(project: Daemon) -> None:
    watcher = Client(project.addresses["mqtt"], "fail-watcher", V5)
    watcher.subscribe(("fail/#", 1))
    first = Raw(project.addresses["mqtt"], V311)
    first.connect("flaky", clean_start=False)
    first.send(Publish("fail/now", b"important", 1, packet_id=9))
    # The consumer raised: no PUBACK, the connection is closed; nothing was forwarded.
    assert first.closed_after() == []
    assert watcher.nothing_before("fail/marker")
    again = Raw(project.addresses["mqtt"], V311)
    again.connect("flaky", clean_start=False)
    again.send(Publish("fail/now", b"important", 1, dup=True, packet_id=9))  # the client re-sends it
    assert again.read() == PubAck(9)
    again.close()
    message = watcher.get()
    assert message.payload == b"important" and watcher.nothing_before("fail/marker")
    watcher.close()
