"""The built-in broker in a real daemon, with real clients: paho (3.1.1 and 5.0) and Mosquitto's
``mosquitto_pub`` / ``mosquitto_sub``, over TCP, TLS and WebSocket."""

from __future__ import annotations

import select
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.protocols.mqtt import Disconnect, PubAck, Publish, ReasonCode, Will, encode
from gateway.protocols.mqtt.broker import hash_password
from tests.integration.daemon import Daemon, wait_until
from tests.integration.test_mqtt_clients import V5, V311, Client, Raw, mqtt_listener

pytestmark = pytest.mark.slow
paho = pytest.importorskip("paho.mqtt.client")
trustme = pytest.importorskip("trustme")
MOSQUITTO = shutil.which("mosquitto_pub") is not None and shutil.which("mosquitto_sub") is not None
STDBUF = shutil.which("stdbuf") is not None  # to read mosquitto_sub's debug output line by line


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon: plain, TLS and WebSocket listeners on one broker; a second broker with users."""
    tmp = tmp_path_factory.mktemp("mqtt")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    secret = hash_password("s3cret", "pbkdf2_sha256", iterations=1000)
    listeners = "\n".join([
        mqtt_listener("plain", extra="limits: {max_packet_size: 64KiB}"),
        mqtt_listener("tls", f"ssl:0:interface=127.0.0.1:privateKey={tmp}/server.pem"),
        mqtt_listener("ws", extra="transport: websocket"),
        mqtt_listener("secure", extra=f"""
broker:
  name: secure
  allow_anonymous: false
  users: {{alice: "{secret}"}}
  access:
    - {{users: [alice], publish: ["alice/#"], subscribe: ["alice/#", "public/+"]}}
"""),
        mqtt_listener("guarded", extra="""
broker:
  name: guarded
  access:
    - {users: ["*"], publish: ["#"], subscribe: ["#"]}
    - {users: ["*"], effect: deny, subscribe: ["secret/#"], publish: ["readonly/#"]}
"""),
    ])
    config = f"application: tests.mqtt_apps:http_only_app\nlisteners:\n{listeners}\nlogging: {{level: info}}\n"
    daemon = Daemon(tmp, config).start()
    daemon.ca = str(tmp / "ca.pem")  # type: ignore[attr-defined]
    yield daemon
    daemon.stop()


@pytest.mark.parametrize("version", [V311, V5])
def test_qos_0_1_2(broker: Daemon, version: int) -> None:
    sub = Client(broker.addresses["plain"], f"sub-{version}", version)
    assert sub.subscribe(("qos/#", 2)) == [2]
    pub = Client(broker.addresses["plain"], f"pub-{version}", version)
    for qos in (0, 1, 2):
        pub.publish(f"qos/{qos}", f"m{qos}".encode(), qos)
    got = sorted((m.topic, m.payload, m.qos) for m in sub.collect(3))
    assert got == [("qos/0", b"m0", 0), ("qos/1", b"m1", 1), ("qos/2", b"m2", 2)]
    pub.close()
    sub.close()


@pytest.mark.skipif(not (MOSQUITTO and STDBUF), reason="needs mosquitto_pub, mosquitto_sub and stdbuf")
def test_mosquitto_clients_and_retained_messages(broker: Daemon) -> None:
    host, port = broker.addresses["plain"].rsplit(":", 1)
    common = ["-h", host, "-p", port]
    subprocess.run(["mosquitto_pub", *common, "-t", "retained/a", "-m", "kept", "-r", "-q", "1"], check=True, timeout=10)
    subprocess.run(["mosquitto_pub", *common, "-t", "retained/b", "-m", "gone", "-r", "-V", "mqttv5"], check=True, timeout=10)
    subprocess.run(["mosquitto_pub", *common, "-t", "retained/b", "-n", "-r"], check=True, timeout=10)  # clears it
    sub = subprocess.run(["mosquitto_sub", *common, "-t", "retained/#", "-v", "-C", "1", "-W", "5", "-q", "2"],
                         capture_output=True, text=True, timeout=15)
    assert sub.stdout.splitlines() == ["retained/a kept"]
    # -d (debug lines, line-buffered through stdbuf) shows when the subscription is in place.
    live = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", *common, "-t", "live/#", "-v", "-C", "2", "-W", "10",
                             "-V", "mqttv5", "-d"], stdout=subprocess.PIPE, text=True)
    assert live.stdout is not None
    debug: list[str] = []
    while not debug or "received SUBACK" not in debug[-1]:
        line = live.stdout.readline()  # mosquitto_sub exits after -W 10 seconds at the latest
        assert line, f"mosquitto_sub ended before it subscribed: {debug}"
        debug.append(line)
    for n in (1, 2):
        subprocess.run(["mosquitto_pub", *common, "-t", f"live/{n}", "-m", f"m{n}", "-q", "2"], check=True, timeout=10)
    out, _ = live.communicate(timeout=15)
    messages = [line for line in out.splitlines() if not line.startswith(("Client ", "Subscribed ("))]
    assert messages == ["live/1 m1", "live/2 m2"]


def test_will_on_abrupt_disconnect(broker: Daemon) -> None:
    watcher = Client(broker.addresses["plain"], "will-watcher", V311)
    watcher.subscribe(("status/#", 1))
    raw = Raw(broker.addresses["plain"])
    raw.connect("dying", will=Will("status/dying", b"offline", 1))
    raw.close()  # no DISCONNECT
    message = watcher.get()
    assert (message.topic, message.payload) == ("status/dying", b"offline")
    clean = Raw(broker.addresses["plain"])
    clean.connect("polite", will=Will("status/polite", b"offline"))
    clean.send(Disconnect())
    assert clean.closed_after() == []  # the server closed the connection: the Will was decided
    clean.close()
    assert watcher.nothing_before("status/marker")
    watcher.close()


@pytest.mark.parametrize("version", [V311, V5])
def test_persistent_session_resume(broker: Daemon, version: int) -> None:
    address = broker.addresses["plain"]
    name = f"persistent-{version}"
    first = Client(address, name, version, clean=False, expiry=300)
    assert first.connack == (False, 0)
    first.subscribe((f"inbox/{version}", 1))
    first.close()
    pub = Client(address, f"sender-{version}", version)
    pub.publish(f"inbox/{version}", b"while you were away", 1)
    back = Client(address, name, version, clean=False, expiry=300)
    assert back.connack == (True, 0)
    assert back.get().payload == b"while you were away"
    back.close()
    pub.close()


def test_shared_subscriptions(broker: Daemon) -> None:
    members = [Client(broker.addresses["plain"], f"worker-{n}", V5 if n else V311) for n in range(3)]
    for member in members:
        member.subscribe(("$share/workers/jobs/+", 1))
    pub = Client(broker.addresses["plain"], "dispatcher", V5)
    for n in range(30):
        pub.publish(f"jobs/{n}", str(n).encode(), 1)
    wait_until(lambda: sum(member.messages.qsize() for member in members) >= 30, what="30 shared-subscription deliveries")
    counts = [member.messages.qsize() for member in members]
    payloads = sorted(int(m.payload) for member in members for m in member.collect(member.messages.qsize()))
    assert payloads == list(range(30)) and counts == [10, 10, 10]
    for client in (*members, pub):
        client.close()


def test_keep_alive_expiry(broker: Daemon) -> None:
    raw = Raw(broker.addresses["plain"])
    raw.connect("sleepy", keep_alive=1)
    started = time.monotonic()
    assert raw.closed_after(5) == [Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT)]
    assert time.monotonic() - started >= 1.4  # not before 1.5 x Keep Alive [MQTT-3.1.2-22]


def test_oversize_packet(broker: Daemon) -> None:
    raw = Raw(broker.addresses["plain"])
    raw.connect("big")
    raw.send(Publish("big", b"x" * 70000))
    assert raw.closed_after() == [Disconnect(ReasonCode.PACKET_TOO_LARGE)]
    small = Raw(broker.addresses["plain"])
    small.connect("small")
    small.send(Publish("big", b"x" * 1000, 1, packet_id=1))
    assert small.read() == PubAck(1)
    small.close()


@pytest.mark.parametrize("version,refused", [(V311, 4), (V5, ReasonCode.BAD_USER_NAME_OR_PASSWORD)])
def test_bad_credentials(broker: Daemon, version: int, refused: int) -> None:
    intruder = Client(broker.addresses["secure"], "intruder", version, username="alice", password="wrong")
    assert intruder.connack == (False, ReasonCode.BAD_USER_NAME_OR_PASSWORD)  # paho's name for 3.1.1's 4 too
    intruder.close()
    raw = Raw(broker.addresses["secure"], version)
    connack = raw.connect("intruder", username="alice", password=b"wrong")
    assert connack.reason_code == refused
    raw.close()
    ok = Client(broker.addresses["secure"], "alice-1", version, username="alice", password="s3cret")
    assert ok.connack == (False, 0)
    ok.close()


@pytest.mark.parametrize("version,denied", [(V311, 0x80), (V5, ReasonCode.NOT_AUTHORIZED)])
def test_denied_subscription(broker: Daemon, version: int, denied: int) -> None:
    alice = Client(broker.addresses["secure"], f"alice-{version}", version, username="alice", password="s3cret")
    assert alice.subscribe(("alice/#", 1), ("bob/#", 1), ("public/news", 2)) == [1, denied, 2]
    alice.close()


@pytest.mark.parametrize("version,denied", [(V311, 0x80), (V5, ReasonCode.NOT_AUTHORIZED)])
def test_deny_rule_wins_over_allow_all(broker: Daemon, version: int, denied: int) -> None:
    address = broker.addresses["guarded"]
    wide = Client(address, f"wide-{version}", version)
    assert wide.subscribe(("#", 1), ("secret/+/x", 1), ("secret", 1), ("open/+", 1)) == [1, denied, denied, 1]
    pub = Client(address, f"deny-pub-{version}", version)
    for topic in ("secret/a", "secret/b/x", "open/a", "readonly/a"):
        pub.publish(topic, topic.encode(), 1)
    first = wide.get()  # one copy for the overlapping "#" and "open/+"
    assert (first.topic, first.payload) == ("open/a", b"open/a")
    # Neither the denied topics ("#" covers them) nor the refused publish came, before or after.
    assert wide.nothing_before("marker/deny")
    wide.close()
    pub.close()


def test_outbound_topic_aliases_with_paho(broker: Daemon) -> None:
    """A 5.0 client allowing 2 aliases: repeated topics arrive as an empty topic name plus the
    alias (paho hands them over as they are on the wire); following the aliases gives every
    topic back, the least recently used one replaced. A client allowing none gets full topics."""
    address = broker.addresses["plain"]
    aliased = Client(address, "aliased", V5, topic_alias_maximum=2)
    plain = Client(address, "no-aliases", V5)
    for client in (aliased, plain):
        assert client.subscribe(("alias/#", 1)) == [1]
    pub = Client(address, "alias-pub", V311)
    sent = [f"alias/{name}/a/rather/long/topic/name" for name in "aabacaab"]
    for index, topic in enumerate(sent):
        pub.publish(topic, str(index).encode(), index % 2)
    mapping: dict[int, str] = {}
    wire = []
    resolved = []
    for message in aliased.collect(len(sent)):
        alias = getattr(message.properties, "TopicAlias", None)
        wire.append((message.topic, alias))
        if message.topic:
            if alias is not None:
                mapping[alias] = message.topic
            resolved.append((message.topic, message.payload))
        else:
            resolved.append((mapping[alias], message.payload))
    assert resolved == [(topic, str(index).encode()) for index, topic in enumerate(sent)]
    a, b, c = (f"alias/{n}/a/rather/long/topic/name" for n in "abc")
    # a, a, b, a, c (replaces b, the least recently used), a, a, b (replaces c)
    assert wire == [(a, 1), ("", 1), (b, 2), ("", 1), (c, 2), ("", 1), ("", 1), (b, 2)]
    got = plain.collect(len(sent))
    assert [m.topic for m in got] == sent
    assert all(getattr(m.properties, "TopicAlias", None) is None for m in got)
    for client in (aliased, plain, pub):
        client.close()


def test_lingering_close_lets_the_client_read_the_disconnect(broker: Daemon) -> None:
    """A client that keeps sending after the server decided to close (the Paho suite's
    flow-control test: PUBRELs while the DISCONNECT 0x93 is on its way) reads the DISCONNECT
    and a clean end of the stream, never a reset."""
    raw = Raw(broker.addresses["plain"], V5)
    assert raw.connect("linger").reason_code == 0
    junk = encode(Publish("t", b"x" * 100), V5) * 50  # QoS 0 publishes the server throws away
    raw.send(b"\x36\x00", junk)  # a PUBLISH with QoS 3: malformed, then more bytes behind it
    assert select.select([raw.sock], [], [], 10)[0]  # the DISCONNECT came: the server is closing
    for _ in range(5):
        raw.sock.sendall(junk)  # unread by us, the DISCONNECT; a reset now would discard it
    assert raw.read() == Disconnect(ReasonCode.MALFORMED_PACKET)
    raw.sock.shutdown(socket.SHUT_WR)
    raw.sock.settimeout(10)
    assert raw.sock.recv(100) == b""  # the server closed in turn: FIN, not RST
    raw.close()


def test_tls_listener_with_alpn(broker: Daemon) -> None:
    context = ssl.create_default_context(cafile=broker.ca)  # type: ignore[attr-defined]
    context.set_alpn_protocols(["mqtt"])
    host, port = broker.addresses["tls"].rsplit(":", 1)
    with context.wrap_socket(__import__("socket").create_connection((host, int(port))), server_hostname="127.0.0.1") as tls:
        assert tls.selected_alpn_protocol() == "mqtt"
    secure = Client(broker.addresses["tls"], "over-tls", V5, tls_ca=broker.ca)  # type: ignore[attr-defined]
    secure.subscribe(("shared/tls", 1))
    plain = Client(broker.addresses["plain"], "plain-to-tls", V311)
    plain.publish("shared/tls", b"encrypted hop", 1)
    assert secure.get().payload == b"encrypted hop"  # one broker across listeners
    secure.close()
    plain.close()


def test_websocket_listener(broker: Daemon) -> None:
    ws = Client(broker.addresses["ws"], "over-ws", V5, transport="websockets")
    ws.subscribe(("shared/ws", 1))
    plain = Client(broker.addresses["plain"], "plain-to-ws", V311)
    plain.publish("shared/ws", b"framed", 1)
    assert ws.get().payload == b"framed"
    ws.publish("shared/back", b"ignored", 1)
    ws.close()
    plain.close()


def test_graceful_shutdown_sends_server_shutting_down(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, f"application: tests.mqtt_apps:http_only_app\nlisteners:\n{mqtt_listener('m')}\n").start()
    try:
        raw = Raw(daemon.addresses["m"])
        raw.connect("stays")
        daemon.signal(signal.SIGTERM)
        assert raw.closed_after() == [Disconnect(ReasonCode.SERVER_SHUTTING_DOWN)]
        assert daemon.wait(20) == 0
    finally:
        daemon.stop()
