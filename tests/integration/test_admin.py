"""The admin listener over real sockets: /metrics, /healthz, /readyz, reload."""

from __future__ import annotations

import json
import smtplib
import socket
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from tests.integration.daemon import Daemon

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of a /metrics answer, keyed by (name, labels)."""
    answer = httpx.get(url + "/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ADMIN = """  - name: admin
    protocol: admin
    endpoint: "tcp:0:interface=127.0.0.1"
"""


def config(web_port: int, extra: str = ADMIN, keep_alive: str = "5s") -> str:
    return f"""
application: tests.apps:app
listeners:
  - name: web
    protocol: http
    endpoint: "tcp:{web_port}:interface=127.0.0.1"
    timeouts: {{keep_alive: {keep_alive}}}
{extra}
logging: {{level: info}}
"""


def test_metrics_count_http_requests_errors_and_connections(tmp_path: Path) -> None:
    with Daemon(tmp_path, config(0)) as daemon:
        admin, web = daemon.url("admin"), daemon.url("web")
        before = scrape(admin)
        with httpx.Client() as client:  # one kept-alive connection, five requests
            for _ in range(5):
                assert client.get(web + "/hello").status_code == 200
            assert client.get(web + "/error").status_code == 500
            during = scrape(admin)
        after = scrape(admin)
        labels = {"listener": "web", "protocol": "http"}
        requests = value(after, "gateway_events_received_total", type="http.request", **labels)
        assert requests - value(before, "gateway_events_received_total", type="http.request", **labels) == 6
        assert value(after, "gateway_events_sent_total", type="http.response", **labels) == requests
        assert value(after, "gateway_application_exceptions_total", **labels) == 1
        assert value(after, "gateway_connections_total", **labels) - value(before, "gateway_connections_total", **labels) == 1
        # /error closes its connection: the open gauge saw it during the session, not after.
        assert value(during, "gateway_connections_open", **labels) in (0, 1)
        assert value(after, "gateway_connections_open", **labels) == 0
        count = value(after, "gateway_request_duration_seconds_count", **labels)
        assert count == requests
        assert value(after, "gateway_request_duration_seconds_bucket", le="+Inf", **labels) == count
        assert 0 < value(after, "gateway_request_duration_seconds_sum", **labels) < count * 5
        assert value(after, "gateway_listener_up", **labels) == 1
        assert value(after, "gateway_ready") == 1
        assert any(name == "process_resident_memory_bytes" for name, _ in after)


def test_health_and_readiness(tmp_path: Path) -> None:
    with Daemon(tmp_path, config(0)) as daemon:
        admin = daemon.url("admin")
        health = httpx.get(admin + "/healthz")
        assert health.status_code == 200 and health.json()["status"] == "alive"
        ready = httpx.get(admin + "/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}
        assert httpx.get(admin + "/nope").status_code == 404
        assert httpx.post(admin + "/metrics").status_code == 405
        page = httpx.get(admin + "/")
        assert page.status_code == 200 and 'src="/status.js"' in page.text
        assert "WebSocket" in httpx.get(admin + "/status.js").text


def test_every_protocol_is_counted(tmp_path: Path) -> None:
    """MQTT, SMTP and SMS listeners of the demo application count into the same scrape."""
    sms_port = free_port()
    demo = f"""
application: gateway.demo:application
listeners:
  - {{name: mqtt, protocol: mqtt, endpoint: "tcp:0:interface=127.0.0.1"}}
  - {{name: smtp, protocol: smtp, endpoint: "tcp:0:interface=127.0.0.1", hostname: localhost}}
  - name: sms
    protocol: sms
    endpoint: "tcp:{sms_port}:interface=127.0.0.1"
    public_url: "http://127.0.0.1:{sms_port}"
    accounts: [{{name: demo, provider: generic, path: /sms/demo, secret: s3cret}}]
{ADMIN}
logging: {{level: info}}
"""
    with Daemon(tmp_path, demo) as daemon:
        admin = daemon.url("admin")
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="counted")
        client.connect("127.0.0.1", daemon.port("mqtt"))
        client.loop_start()
        try:
            client.publish("rooms/lobby/x", b"hello", qos=1).wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()
        with smtplib.SMTP("127.0.0.1", daemon.port("smtp"), timeout=10) as smtp:
            smtp.sendmail("a@example.com", ["lobby@localhost"], b"Subject: hi\r\n\r\nthere\r\n")
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                smtp.sendmail("a@example.com", ["nobody@example.com"], b"Subject: no\r\n\r\nroute\r\n")
        from gateway.protocols.sms.testhook import sign_test_webhook

        hook = sign_test_webhook("generic", f"http://127.0.0.1:{sms_port}/sms/demo", text="hi", secret="s3cret")
        assert httpx.post(hook.url, content=hook.body, headers=dict(hook.headers)).status_code == 200
        bad = sign_test_webhook("generic", f"http://127.0.0.1:{sms_port}/sms/demo", text="hi", secret="wrong")
        assert httpx.post(bad.url, content=bad.body, headers=dict(bad.headers)).status_code == 403
        samples = scrape(admin)
        mqtt_labels = {"listener": "mqtt", "protocol": "mqtt"}
        assert value(samples, "gateway_events_received_total", type="mqtt.publish", **mqtt_labels) == 1
        assert value(samples, "gateway_events_received_total", type="mqtt.connect", **mqtt_labels) == 1
        assert value(samples, "gateway_handshake_duration_seconds_count", **mqtt_labels) == 1
        assert value(samples, "gateway_connections_total", **mqtt_labels) == 1
        assert value(samples, "gateway_mqtt_sessions", broker="default", state="online") == 0
        assert value(samples, "gateway_smtp_messages_total", listener="smtp", result="accepted") == 1
        assert value(samples, "gateway_smtp_recipients_rejected_total", listener="smtp") == 1
        assert value(samples, "gateway_sms_webhooks_total", listener="sms", provider="generic", outcome="handled") == 1
        assert value(samples, "gateway_sms_webhooks_total", listener="sms", provider="generic", outcome="rejected") == 1
        # The demo posts each message to its room's group, and mail and SMS to MQTT clients too.
        assert value(samples, "gateway_layer_operations_total", layer="default", operation="group_send") == 5


def test_counters_survive_a_reload_and_an_admin_listener_comes_and_goes(tmp_path: Path) -> None:
    web_port = free_port()
    with Daemon(tmp_path, config(web_port)) as daemon:
        web = daemon.url("web")
        for _ in range(3):
            httpx.get(web + "/hello")
        # A changed listener is replaced; its stats object carries over.
        daemon.reload(config(web_port, keep_alive="7s"))
        for _ in range(2):
            httpx.get(web + "/hello")
        samples = scrape(daemon.url("admin"))
        labels = {"listener": "web", "protocol": "http", "type": "http.request"}
        assert value(samples, "gateway_events_received_total", **labels) == 5
        assert value(samples, "gateway_connections_total", listener="web", protocol="http") == 5
        # Removed: the admin port closes.
        admin_port = daemon.port("admin")
        daemon.reload(config(web_port, extra=""))
        assert "admin" not in daemon.addresses
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{admin_port}/healthz")
        # Added back by a reload: it serves at once, and the counters kept counting meanwhile.
        httpx.get(web + "/hello")
        daemon.reload(config(web_port))
        samples = scrape(daemon.url("admin"))
        assert value(samples, "gateway_events_received_total", **labels) == 6
        assert httpx.get(daemon.url("admin") + "/readyz").json() == {"status": "ready"}


def test_status_stream_sends_history_then_samples(tmp_path: Path) -> None:
    """The status page's WebSocket: a hello with the history, then one sample a second."""
    from websockets.sync.client import connect

    with Daemon(tmp_path, config(0)) as daemon:
        admin, web = daemon.addresses["admin"], daemon.url("web")
        with connect(f"ws://{admin}/ws", open_timeout=10) as ws:
            hello = json.loads(ws.recv(timeout=10))
            assert hello["version"] and isinstance(hello["history"], list) and hello["keep"] == 300
            first = json.loads(ws.recv(timeout=10))["sample"]
            for _ in range(4):
                httpx.get(web + "/hello")
            totals = first["protocols"]["http"]["received"]
            for _ in range(5):  # within a few seconds a sample shows the 4 requests
                sample = json.loads(ws.recv(timeout=10))["sample"]
                if sample["protocols"]["http"]["received"] >= totals + 4:
                    break
            else:
                pytest.fail(f"no sample counted the requests: {sample}")
            assert sample["ready"] is True
            assert sample["protocols"]["http"]["rps"] is not None
            assert "admin" not in sample["protocols"]  # the page does not count itself
        with pytest.raises(InvalidStatus) as refused:  # another site's page: the handshake gets 403
            with connect(f"ws://{admin}/ws", origin="http://evil.example", open_timeout=10) as ws:  # type: ignore[arg-type]
                ws.recv(timeout=10)
        assert refused.value.response.status_code == 403


def _websocket_counts() -> bool:
    """Whether the WebSocket adapter counts into the listener's stats (its instrumentation)."""
    import dataclasses

    from gateway.protocols.websocket.listener import WebSocketSettings

    return any(field.name == "stats" for field in dataclasses.fields(WebSocketSettings))


@pytest.mark.skipif(not _websocket_counts(), reason="the WebSocket adapter does not count yet")
def test_websocket_messages_and_handshakes_are_counted(tmp_path: Path) -> None:
    from websockets.sync.client import connect

    with Daemon(tmp_path, config(0).replace("tests.apps:app", "tests.ws_apps:app")) as daemon:
        with connect(f"ws://{daemon.addresses['web']}/echo", open_timeout=10) as ws:
            for n in range(3):
                ws.send(f"message {n}")
                ws.recv(timeout=10)
            during = scrape(daemon.url("admin"))
        labels = {"listener": "web", "protocol": "websocket"}
        assert value(during, "gateway_connections_open", **labels) == 1
        assert value(during, "gateway_connections_total", **labels) == 1
        assert value(during, "gateway_events_received_total", type="websocket.receive", **labels) == 3
        assert value(during, "gateway_events_sent_total", type="websocket.send", **labels) == 3
        assert value(during, "gateway_handshake_duration_seconds_count", **labels) == 1
        assert value(during, "gateway_connections_open", listener="web", protocol="http") == 0
