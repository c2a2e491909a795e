"""The live status page in headless Chromium: numbers move with HTTP, WebSocket, MQTT, SMTP and
SMS traffic."""

from __future__ import annotations

import json
import smtplib
import socket
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from tests.integration.chromium import Browser, Page, requires_chromium
from tests.integration.daemon import Daemon

pytestmark = [pytest.mark.slow, pytest.mark.chromium, requires_chromium]

PROTOCOLS = ("http", "websocket", "mqtt", "smtp", "sms")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(sms_port: int) -> str:
    return f"""
application: gateway.demo:application
listeners:
  - {{name: web, protocol: http, endpoint: "tcp:0:interface=127.0.0.1"}}
  - {{name: mqtt, protocol: mqtt, endpoint: "tcp:0:interface=127.0.0.1"}}
  - {{name: smtp, protocol: smtp, endpoint: "tcp:0:interface=127.0.0.1", hostname: localhost}}
  - name: sms
    protocol: sms
    endpoint: "tcp:{sms_port}:interface=127.0.0.1"
    public_url: "http://127.0.0.1:{sms_port}"
    accounts: [{{name: demo, provider: generic, path: /sms/demo, secret: s3cret}}]
  - {{name: admin, protocol: admin, endpoint: "tcp:0:interface=127.0.0.1", history: 2m}}
logging: {{level: info}}
"""


def numbers(page: Page) -> dict[str, dict[str, str]]:
    """What the page's table shows, by protocol and column."""
    script = """(() => { const out = {};
      for (const row of document.querySelectorAll('#rows tr')) {
        const p = row.id.slice(4), cell = k => (document.getElementById(k + '-' + p) || {}).textContent;
        out[p] = {open: cell('open'), total: cell('total'), conns: cell('conns'), mps: cell('mps')};
      }
      return JSON.stringify(out); })()"""
    return json.loads(page.evaluate(script))  # type: ignore[no-any-return]


def wait_for_number(page: Page, protocol: str, column: str, at_least: int) -> None:
    page.wait_for(f"Number((document.getElementById('{column}-{protocol}') || {{}}).textContent) >= {at_least}",
                  what=f"{column} of {protocol} >= {at_least} (page shows {numbers(page).get(protocol)})")


def test_status_page_follows_traffic_of_every_protocol(tmp_path: Path) -> None:
    from websockets.sync.client import connect

    sms_port = free_port()
    browser = Browser(tmp_path)
    with Daemon(tmp_path, config(sms_port)) as daemon:
        try:
            page = browser.start(daemon.url("admin") + "/")
            page.wait_for("document.getElementById('state').textContent === 'live'", what="the page's WebSocket")
            page.wait_for("document.querySelectorAll('#rows tr').length >= 5", what="a row per protocol")
            assert page.evaluate("document.getElementById('ready').textContent") == "ready"
            before = numbers(page)
            assert set(PROTOCOLS) <= set(before)
            assert "admin" not in before
            start = {p: int(before[p]["total"]) for p in PROTOCOLS}

            web = daemon.url("web")
            for _ in range(5):
                assert httpx.get(web + "/hello").status_code == 200
            wait_for_number(page, "http", "total", start["http"] + 10)  # 5 requests, 5 responses
            page.wait_for("Number(document.getElementById('mps-http').textContent) > 0", what="a message rate for http")

            origin = f"http://127.0.0.1:{daemon.port('web')}"
            with connect(f"ws://{daemon.addresses['web']}/ws/rooms/lobby/", origin=origin, open_timeout=10) as ws:  # type: ignore[arg-type]
                ws.send(json.dumps({"name": "eve", "text": "counted"}))
                ws.recv(timeout=10)
                wait_for_number(page, "websocket", "open", 1)
            page.wait_for("document.getElementById('open-websocket').textContent === '0'", what="the WebSocket closed")

            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="status-page")
            client.connect("127.0.0.1", daemon.port("mqtt"))
            client.loop_start()
            try:
                wait_for_number(page, "mqtt", "open", 1)
                for n in range(3):
                    client.publish("sensors/t", b"%d" % n, qos=1).wait_for_publish(10)
                wait_for_number(page, "mqtt", "total", start["mqtt"] + 3)
            finally:
                client.disconnect()
                client.loop_stop()

            with smtplib.SMTP("127.0.0.1", daemon.port("smtp"), timeout=10) as smtp:
                smtp.sendmail("a@example.com", ["lobby@localhost"], b"Subject: hi\r\n\r\ncounted\r\n")
            wait_for_number(page, "smtp", "total", start["smtp"] + 1)
            wait_for_number(page, "smtp", "conns", 1)

            from gateway.protocols.sms.testhook import sign_test_webhook

            hook = sign_test_webhook("generic", f"http://127.0.0.1:{sms_port}/sms/demo", text="counted", secret="s3cret")
            assert httpx.post(hook.url, content=hook.body, headers=dict(hook.headers)).status_code == 200
            wait_for_number(page, "sms", "total", start["sms"] + 1)

            # The chart has drawn a line; the layout fits a phone-sized window.
            page.wait_for("document.querySelectorAll('#chart path').length >= 1", what="a line in the chart")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        finally:
            browser.stop()
