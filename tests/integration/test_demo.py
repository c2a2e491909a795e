"""The demo, "one room, five protocols", end to end: the bundled conf/gateway.yaml on free ports,
a room over WebSocket (and its page in headless Chromium), MQTT, SMTP and a signed SMS webhook."""

from __future__ import annotations

import json
import queue
import re
import smtplib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from websockets.exceptions import InvalidStatus

from tests.integration.chromium import SCREENS, Browser, requires_chromium
from tests.integration.daemon import REPO, Daemon

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PORTS = ("GATEWAY_PORT", "GATEWAY_MQTT_PORT", "GATEWAY_SMTP_PORT", "GATEWAY_SMS_PORT", "GATEWAY_ADMIN_PORT")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """``make run``'s daemon: conf/gateway.yaml as shipped, with every port moved to a free one."""
    tmp = tmp_path_factory.mktemp("demo")
    env = {name: str(free_port()) for name in PORTS}
    env["GATEWAY_SMS_SECRET"] = "test-secret"
    daemon = Daemon(tmp, (REPO / "conf/gateway.yaml").read_text(), env=env).start()
    daemon.env_ports = env  # type: ignore[attr-defined]
    yield daemon
    daemon.stop()


class Subscriber:
    """A paho MQTT client subscribed to ``rooms/#`` that queues what it receives."""

    def __init__(self, port: int, client_id: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        subscribed = queue.Queue()  # type: ignore[var-annotated]
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.client.on_subscribe = lambda *args: subscribed.put(True)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe("rooms/#", qos=0)
        subscribed.get(timeout=10)

    def next(self, timeout: float = 10.0) -> tuple[str, bytes]:
        return self.messages.get(timeout=timeout)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def send_mail(port: int, room: str, subject: str, body: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail("carol@example.com", [f"{room}@localhost"],
                      f"From: Carol <carol@example.com>\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode())


def sms_test(daemon: Daemon, text: str) -> str:
    """``gateway sms-test`` against the daemon's configuration (the walkthrough's command)."""
    result = subprocess.run([sys.executable, "-m", "gateway", "sms-test", "-c", str(daemon.config_path), "--text", text],
                            env=daemon.env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_room_hears_every_protocol(demo: Daemon) -> None:
    from websockets.sync.client import connect

    origin = f"http://127.0.0.1:{demo.port('web')}"
    subscriber = Subscriber(demo.port("mqtt"), "watcher")
    try:
        with connect(f"ws://{demo.addresses['web']}/ws/rooms/ws-room/", origin=origin, open_timeout=10) as ws:  # type: ignore[arg-type]
            ws.send(json.dumps({"name": "alice", "text": "hello from the web"}))
            assert json.loads(ws.recv(timeout=10)) | {"time": 0} == {
                "room": "ws-room", "source": "web", "user": "alice", "text": "hello from the web", "time": 0}
            topic, payload = subscriber.next()
            assert topic == "rooms/ws-room/web"
            assert json.loads(payload) == {"user": "alice", "text": "hello from the web", "source": "web"}

            subscriber.publish("rooms/ws-room/sensor", b"21.5 C")
            assert _received(ws)["source"] == "mqtt"
            assert subscriber.next() == ("rooms/ws-room/sensor", b"21.5 C")  # through the broker

            send_mail(demo.port("smtp"), "ws-room", "Hello", "from the mail")
            mail = _received(ws)
            assert (mail["source"], mail["text"], mail["user"]) == ("email", "Hello: from the mail", "Carol <carol@example.com>")
            assert subscriber.next()[0] == "rooms/ws-room/email"

            answer = sms_test(demo, "#ws-room from a phone")
            assert answer.startswith("200 ") and "Posted to #ws-room" in answer
            sms = _received(ws)
            assert (sms["source"], sms["text"], sms["user"]) == ("sms", "from a phone", "+447400123456")
            assert subscriber.next()[0] == "rooms/ws-room/sms"
        # A page opened later starts with the room's recent messages.
        with connect(f"ws://{demo.addresses['web']}/ws/rooms/ws-room/", origin=origin, open_timeout=10) as ws:  # type: ignore[arg-type]
            sources = [json.loads(ws.recv(timeout=10))["source"] for _ in range(4)]
            assert sources == ["web", "mqtt", "email", "sms"]
    finally:
        subscriber.close()


def test_demo_refuses_what_is_not_a_room(demo: Daemon) -> None:
    from websockets.sync.client import connect

    web = demo.url("web")
    assert httpx.get(web + "/hello").text == "Hello, world!"
    assert httpx.get(web + "/rooms/Not%20A%20Room/").status_code == 404
    assert httpx.get(web + "/rooms/lobby/").status_code == 200
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send_mail(demo.port("smtp"), "someone@example.com", "x", "y")
    # Another site's page may not open the room's WebSocket (AllowedHostsOriginValidator): the
    # handshake is refused with 403.
    with pytest.raises(InvalidStatus) as refused:
        with connect(f"ws://{demo.addresses['web']}/ws/rooms/lobby/", origin="http://evil.example",  # type: ignore[arg-type]
                     open_timeout=10) as ws:
            ws.recv(timeout=10)
    assert refused.value.response.status_code == 403


def _received(ws: Any) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=10))  # type: ignore[no-any-return]


@pytest.mark.chromium
@requires_chromium
def test_room_page_in_chromium(demo: Daemon, tmp_path: Path) -> None:
    browser = Browser(tmp_path)
    subscriber = Subscriber(demo.port("mqtt"), "page-watcher")
    try:
        page = browser.start(demo.url("web") + "/rooms/page-room/")
        page.wait_for("document.getElementById('state').textContent === 'live'", what="the room's WebSocket")
        # A chat message typed on the page: back on the page, and to MQTT subscribers.
        page.evaluate("document.getElementById('name').value = 'dora';"
                      "document.getElementById('text').value = 'typed in Chromium';"
                      "document.getElementById('send').requestSubmit(); true")
        _wait_for_message(page, "web", "typed in Chromium")
        topic, payload = subscriber.next()
        assert topic == "rooms/page-room/web" and json.loads(payload)["user"] == "dora"
        subscriber.publish("rooms/page-room/door", b"door opened")
        _wait_for_message(page, "mqtt", "door opened")
        send_mail(demo.port("smtp"), "page-room", "Parcel", "at the desk")
        _wait_for_message(page, "email", "Parcel: at the desk")
        sms_test(demo, "#page-room on my way")
        _wait_for_message(page, "sms", "on my way")
        texts = page.evaluate("Array.from(document.querySelectorAll('#messages li')).map(li => li.getAttribute('data-source'))")
        assert texts == ["web", "mqtt", "email", "sms"]
        # Readable on a phone: nothing wider than the 390 px window.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    finally:
        subscriber.close()
        browser.stop()


def _wait_for_message(page: Any, source: str, text: str) -> None:
    expression = (f"Array.from(document.querySelectorAll('#messages li[data-source={source}]'))"
                  f".some(li => li.textContent.endsWith({json.dumps(text)}))")
    page.wait_for(expression, what=f"a {source} message {text!r} on the page")


def test_admin_of_the_demo_is_up(demo: Daemon) -> None:
    assert httpx.get(demo.url("admin") + "/readyz").json() == {"status": "ready"}
    text = httpx.get(demo.url("admin") + "/metrics").text
    for name in ("web", "mqtt", "smtp", "sms", "admin"):
        assert f'gateway_listener_up{{listener="{name}",' in text



IN_VIEW = """(() => { const r = document.querySelector(%s).getBoundingClientRect();
  return r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0 &&
         r.bottom <= window.innerHeight && r.right <= window.innerWidth; })()"""


@pytest.mark.chromium
@requires_chromium
@pytest.mark.parametrize("screen", SCREENS, ids=[s[0] for s in SCREENS])
def test_room_page_keeps_heading_and_input_in_view_after_40_messages(
        demo: Daemon, tmp_path: Path, artifacts: Path, screen: tuple[str, int, int, bool]) -> None:
    from websockets.sync.client import connect

    name, width, height, mobile = screen
    room = f"busy-{name}"
    browser = Browser(tmp_path)
    try:
        page = browser.start(demo.url("web") + f"/rooms/{room}/", width, height)
        page.set_viewport(width, height, mobile=mobile)
        page.wait_for("document.getElementById('state').textContent === 'live'", what="the room's WebSocket")
        origin = f"http://127.0.0.1:{demo.port('web')}"
        with connect(f"ws://{demo.addresses['web']}/ws/rooms/{room}/", origin=origin, open_timeout=10) as ws:  # type: ignore[arg-type]
            for n in range(39):
                ws.send(json.dumps({"name": "alice", "text": f"message {n} " + "words " * (n % 7)}))
                ws.recv(timeout=10)
        # One from an MQTT client whose id the broker assigned (an empty client id): auto-<32 hex>.
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
        client.connect("127.0.0.1", demo.port("mqtt"))
        client.loop_start()
        try:
            client.publish(f"rooms/{room}/door", b"the last one", qos=1).wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()
        page.wait_for("document.querySelectorAll('#messages li').length === 40", what="40 messages on the page")
        page.screenshot(artifacts / f"room-{name}.png")

        for selector in ("h1", "#state", "#text", "#send button", "#name"):
            assert page.evaluate(IN_VIEW % json.dumps(selector)), f"{selector} is off-screen on the {name}"
        # The list scrolls, not the page; it follows the newest message.
        assert page.evaluate("document.documentElement.scrollHeight <= window.innerHeight + 1")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        assert page.evaluate("(l => l.scrollHeight > l.clientHeight)(document.getElementById('messages'))")
        assert page.evaluate("""(() => { const l = document.getElementById('messages'), last = l.lastElementChild;
            const a = l.getBoundingClientRect(), b = last.getBoundingClientRect();
            return b.bottom <= a.bottom + 1 && b.top >= a.top; })()""")
        who = page.evaluate("(w => [w.textContent, w.title])(document.querySelector('#messages li:last-child .who'))")
        assert re.fullmatch(r"auto-[0-9a-f]{6}\u2026", who[0]) and re.fullmatch(r"auto-[0-9a-f]{32}", who[1]), who
        # The input still works: a message typed there arrives and is shown.
        page.evaluate("document.getElementById('text').value = 'typed after the flood';"
                      "document.getElementById('send').requestSubmit(); true")
        _wait_for_message(page, "web", "typed after the flood")
        assert page.evaluate(IN_VIEW % json.dumps("#messages li:last-child"))
        page.screenshot(artifacts / f"room-{name}-typed.png")
        print(f"screenshots: {artifacts}")
    finally:
        browser.stop()
