"""Reloading the configuration with SIGHUP: listeners come and go, nothing is dropped."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.daemon import Daemon, http_config, wait_until

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def two_listeners(port: int, second: str = "") -> str:
    return f"""
application: tests.apps:app
listeners:
  - name: web
    protocol: http
    endpoint: "tcp:{port}:interface=127.0.0.1"
    limits: {{max_body_size: 1MiB}}
{second}
logging: {{level: info}}
"""


SECOND = """  - name: extra
    protocol: http
    endpoint: "tcp:0:interface=127.0.0.1"
"""


def test_added_listener_starts_and_removed_one_drains(tmp_path: Path) -> None:
    port = free_port()
    started = tmp_path / "slow-started"
    with Daemon(tmp_path, two_listeners(port), env={"GATEWAY_TEST_SLOW_STARTED": str(started)}) as daemon:
        status = daemon.reload(two_listeners(port, SECOND))
        assert "extra=127.0.0.1:" in status
        assert httpx.get(daemon.url("extra") + "/hello").text == "Hello, world!"
        extra_url = daemon.url("extra")
        # A slow request on the listener about to be removed still completes.
        results: list[httpx.Response] = []
        thread = threading.Thread(target=lambda: results.append(httpx.get(extra_url + "/slow?s=1", timeout=20)))
        thread.start()
        wait_until(started.exists, what="the slow request to reach the application")
        daemon.reload(two_listeners(port))
        assert "extra" not in daemon.addresses
        thread.join(20)
        assert results[0].text == "slow done"
        with pytest.raises(httpx.ConnectError):
            httpx.get(extra_url + "/hello", timeout=2)
        assert httpx.get(daemon.url("web") + "/hello").status_code == 200


def test_changed_limits_apply_to_new_connections_and_keep_old_ones(tmp_path: Path) -> None:
    port = free_port()
    with Daemon(tmp_path, two_listeners(port)) as daemon:
        with httpx.Client() as kept:
            assert kept.post(daemon.url() + "/upload", content=b"x" * 1000).status_code == 200
            daemon.reload(two_listeners(port).replace("max_body_size: 1MiB", "max_body_size: 100"))
            # A new connection gets the new limit...
            assert httpx.post(daemon.url() + "/upload", content=b"x" * 1000).status_code == 413
            # ...and the connection opened before the reload was not dropped.
            assert kept.get(daemon.url() + "/hello").status_code == 200
            assert daemon.process is not None and daemon.process.poll() is None


def test_invalid_file_is_refused_and_the_running_config_kept(tmp_path: Path) -> None:
    port = free_port()
    with Daemon(tmp_path, two_listeners(port)) as daemon:
        status = daemon.reload(f"""
application: tests.apps:app
listeners:
  - name: web
    protocol: http
    endpoint: "tcp:{port}:interface=127.0.0.1"
    limits:
      max_body_size: lots
    colour: red
""")
        assert "reload refused: 2 problem(s)" in status
        deadline = time.monotonic() + 10
        while "Reload refused" not in daemon.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        output = daemon.output()
        assert "gateway.yaml:8: listeners[0].limits.max_body_size: expected a size" in output
        assert "gateway.yaml:9: listeners[0].colour: unknown key" in output
        assert "Reload refused: 2 problem(s)" in output
        assert httpx.post(daemon.url() + "/upload", content=b"x" * 1000).status_code == 200


def test_log_level_changes(tmp_path: Path) -> None:
    port = free_port()
    with Daemon(tmp_path, two_listeners(port)) as daemon:
        quiet = two_listeners(port, SECOND).replace("logging: {level: info}", "logging: {level: error}")
        daemon.reload(quiet)
        assert "extra" in daemon.addresses
        # An error on the new listener is logged (after its start would have been): once it is
        # in the output, the info line about the start would be too, had it been logged.
        assert httpx.get(daemon.url("extra") + "/error").status_code == 500
        wait_until(lambda: "this application failed on purpose" in daemon.output(), what="the error's log line")
        assert "Listening: extra" not in daemon.output()


def test_sighup_does_not_stop_the_daemon(tmp_path: Path) -> None:
    port = free_port()
    with Daemon(tmp_path, two_listeners(port)) as daemon:
        daemon.signal(signal.SIGHUP)
        daemon.wait_for("RELOADING=1", 10)
        assert httpx.get(daemon.url() + "/hello").status_code == 200


def test_replaced_mqtt_listener_keeps_one_broker(tmp_path: Path) -> None:
    """Clients connected before a reload and after it meet in the same broker."""
    paho = pytest.importorskip("paho.mqtt.client")
    port, mqtt_port = free_port(), free_port()

    def config(packet_size: str) -> str:
        return two_listeners(port, f"""  - name: mqtt
    protocol: mqtt
    endpoint: "tcp:{mqtt_port}:interface=127.0.0.1"
    consumer: broker
    limits: {{max_packet_size: {packet_size}}}
""")

    with Daemon(tmp_path, config("1MiB")) as daemon:
        received: list[bytes] = []
        subscribed = threading.Event()
        sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="before-reload")
        sub.on_subscribe = lambda *args: subscribed.set()
        sub.on_message = lambda client, userdata, message: received.append(message.payload)
        sub.connect("127.0.0.1", mqtt_port)
        sub.loop_start()
        try:
            sub.subscribe("news/#", qos=1)
            assert subscribed.wait(10)
            daemon.reload(config("512KiB"))  # a changed listener: replaced, connections kept
            pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="after-reload")
            pub.connect("127.0.0.1", mqtt_port)
            pub.loop_start()
            pub.publish("news/today", b"still one broker", qos=1).wait_for_publish(10)
            deadline = time.monotonic() + 10
            while not received and time.monotonic() < deadline:
                time.sleep(0.02)
            pub.loop_stop()
            pub.disconnect()
        finally:
            sub.loop_stop()
            sub.disconnect()
        assert received == [b"still one broker"]
