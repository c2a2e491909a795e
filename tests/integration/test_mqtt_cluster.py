"""Two daemons on one Redis (Redis channel layer + Redis broker store) act as one broker."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon
from tests.integration.test_mqtt_clients import V5, V311, Client, mqtt_listener
from tests.unit.mqtt.redis_server import REDIS_SERVER, redis_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.redis,
    pytest.mark.skipif(not os.path.exists(REDIS_SERVER), reason="needs redis-server"),
    pytest.mark.skipif(
        importlib.util.find_spec("gateway.layers.redis") is None,
        reason="needs the Redis channel layer (issue 5): the daemons talk over it",
    ),
]
paho = pytest.importorskip("paho.mqtt.client")


def config(url: str) -> str:
    listener = mqtt_listener("mqtt", extra=f"broker: {{store: redis, redis: \"{url}\", cluster: on}}")
    return f"""application: tests.mqtt_apps:http_only_app
layers:
  default: {{backend: redis, hosts: ["{url}"]}}
listeners:
{listener}
logging: {{level: info}}
"""


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    tmp = tmp_path_factory.mktemp("cluster")
    with redis_server(tmp) as url:
        one = Daemon(Path(tmp_path_factory.mktemp("one")), config(url))
        two = Daemon(Path(tmp_path_factory.mktemp("two")), config(url))
        try:
            one.start()
            two.start()
            yield one, two
        finally:
            one.stop()
            two.stop()


def test_publish_reaches_subscribers_on_both_daemons(daemons: tuple[Daemon, Daemon]) -> None:
    one, two = daemons
    on_one = Client(one.addresses["mqtt"], "sub-one", V5)
    on_two = Client(two.addresses["mqtt"], "sub-two", V311)
    on_one.subscribe(("cluster/#", 1))
    on_two.subscribe(("cluster/#", 1))
    publisher = Client(one.addresses["mqtt"], "pub", V5)
    publisher.publish("cluster/a", b"hello", 1)
    assert on_one.get().payload == b"hello"
    assert on_two.get().payload == b"hello"
    for client in (on_one, on_two, publisher):
        client.close()


def test_retained_and_persistent_sessions_are_shared(daemons: tuple[Daemon, Daemon]) -> None:
    one, two = daemons
    publisher = Client(one.addresses["mqtt"], "retainer", V5)
    publisher.publish("cluster/retained", b"kept", 1, retain=True)
    late = Client(two.addresses["mqtt"], "late", V5)
    late.subscribe(("cluster/retained", 1))
    assert late.get().payload == b"kept"
    device = Client(one.addresses["mqtt"], "roaming", V5, clean=False, expiry=300)
    device.subscribe(("roaming/inbox", 1))
    device.close()
    publisher.publish("roaming/inbox", b"queued", 1)
    back = Client(two.addresses["mqtt"], "roaming", V5, clean=False, expiry=300)
    assert back.connack == (True, 0)
    assert back.get().payload == b"queued"
    for client in (publisher, late, back):
        client.close()
