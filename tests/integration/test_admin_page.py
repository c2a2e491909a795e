"""The live status page in headless Chromium: numbers move with HTTP, WebSocket, MQTT, SMTP and
SMS traffic."""

from __future__ import annotations

import json
import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from tests.integration.chromium import SCREENS, Browser, Page, requires_chromium
from tests.integration.daemon import Daemon, wait_until

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
            # The first samples were taken during start-up; the next one says ready.
            page.wait_for("document.getElementById('ready').textContent === 'ready'", what="the ready badge")
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




@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon that served some HTTP traffic over a few seconds before any status page opened."""
    tmp = tmp_path_factory.mktemp("status")
    daemon = Daemon(tmp, config(free_port())).start()
    try:
        with httpx.Client() as client:
            def samples() -> list[dict[str, Any]]:
                client.get(daemon.url("web") + "/hello")
                return hello(daemon)["history"]  # type: ignore[no-any-return]

            # The daemon samples once a second from start, with no page open.
            wait_until(lambda: len(samples()) >= 6, timeout=20, interval=0.2, what="six samples")
        yield daemon
    finally:
        daemon.stop()


def hello(daemon: Daemon) -> dict[str, Any]:
    """The first message of the status page's WebSocket (what a page gets when it opens)."""
    from websockets.sync.client import connect

    with connect(f"ws://{daemon.addresses['admin']}/ws", open_timeout=10) as ws:
        return json.loads(ws.recv(timeout=10))  # type: ignore[no-any-return]


def test_the_history_is_kept_without_a_page(busy: Daemon) -> None:
    first = hello(busy)
    history = first["history"]
    assert first["keep"] == 120 and first["interval"] == 1
    assert len(history) >= 6 and history == sorted(history, key=lambda s: s["t"])
    assert history[0]["protocols"]["http"]["rps"] is None  # the very first sample has no rate yet
    assert all(s["protocols"]["http"]["rps"] is not None for s in history[1:])
    assert sum(s["protocols"]["http"]["rps"] for s in history[1:]) > 0


SERIES_POINTS = "(p => p ? p.getAttribute('d').split(/[ML]/).length - 1 : 0)(document.querySelector('#chart path.series[data-protocol=http]'))"


@pytest.mark.parametrize("screen", SCREENS, ids=[s[0] for s in SCREENS])
def test_status_page_shows_the_history_at_once_with_axes(busy: Daemon, tmp_path: Path, artifacts: Path,
                                                         screen: tuple[str, int, int, bool]) -> None:
    name, width, height, mobile = screen
    browser = Browser(tmp_path)
    try:
        page = browser.start(busy.url("admin") + "/", width, height)
        page.set_viewport(width, height, mobile=mobile)
        page.wait_for("document.getElementById('state').textContent === 'live'", what="the page's WebSocket")
        # At once, from the history the daemon kept: a line of several points and rates.
        page.wait_for("document.querySelectorAll('#rows tr').length >= 5", what="a row per protocol")
        assert page.evaluate(SERIES_POINTS) >= 5
        assert page.evaluate("document.getElementById('mps-http').textContent") != "\u2013"
        assert page.evaluate("document.getElementById('cps-http').textContent") != "\u2013"
        # Axes with units: round values up the side, times along the bottom.
        assert page.evaluate("document.querySelector('#chart text.unit').textContent") == "messages/s"
        labels = page.evaluate("Array.from(document.querySelectorAll('#chart .y-axis text')).map(t => t.textContent)")
        assert len(labels) >= 2 and labels[0] == "0", labels
        times = page.evaluate("Array.from(document.querySelectorAll('#chart .x-axis text')).map(t => t.textContent)")
        assert times[0] == "now" and len(times) >= 2 and all(t.startswith("\u2212") for t in times[1:]), times
        # Every label inside the chart, none overlapping its neighbour.
        assert page.evaluate("""(() => { const c = document.getElementById('chart').getBoundingClientRect();
            const boxes = Array.from(document.querySelectorAll('#chart text')).map(t => t.getBoundingClientRect());
            const inside = boxes.every(b => b.left >= c.left - 1 && b.right <= c.right + 1 && b.top >= c.top - 1 && b.bottom <= c.bottom + 1);
            const x = Array.from(document.querySelectorAll('#chart .x-axis text')).map(t => t.getBoundingClientRect())
              .sort((a, b) => a.left - b.left);
            return inside && x.every((b, i) => i === 0 || x[i - 1].right <= b.left); })()""")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        page.screenshot(artifacts / f"status-{name}.png")
        page.evaluate("document.querySelector('#tabs button[data-m=open]').click(); true")
        assert page.evaluate("document.querySelector('#chart text.unit').textContent") == "connections"
        page.screenshot(artifacts / f"status-{name}-open.png")
        print(f"screenshots: {artifacts}")
    finally:
        browser.stop()
