"""A client that floods and never reads its answers does not grow the daemon's memory.

Over a real socket, a client sends PUBLISH QoS 1, PINGREQ and SUBSCRIBE as fast as it can and
never reads the PUBACKs, PINGRESPs, SUBACKs and the messages of its own subscription: the daemon
must stop reading it once its answers are not being read (so the client's writes block), and
its memory must stay where it was.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon
from tests.integration.test_mqtt_clients import V311, Client, mqtt_listener

pytestmark = pytest.mark.slow
paho = pytest.importorskip("paho.mqtt.client")

#: How much the client tries to send: far more than any buffer.
FLOOD_BYTES = 256 * 1024 * 1024
#: The daemon's memory may move by this much (allocator noise), not by what was sent.
RSS_SLACK = 24 * 1024 * 1024


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("mqtt-flood")
    config = f"""application: tests.mqtt_apps:app
listeners:
{mqtt_listener("broker", extra="consumer: broker")}
{mqtt_listener("app", extra="consumer: application")}
logging: {{level: info}}
"""
    with Daemon(tmp, config) as running:
        yield running


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def flood_chunk(first_id: int) -> bytes:
    """PUBLISH QoS 1 (topic ``t``, 512 bytes: the client is subscribed to it, so each comes
    back as well), PINGREQ and SUBSCRIBE packets, with the 8000 packet identifiers from
    ``first_id`` on (a client must not reuse one before its answer came: chunks take turns)."""
    packets = []
    payload = b"x" * 512
    for index in range(8000):
        packet_id = first_id + index
        if index % 50 == 0:
            packets.append(b"\x82\x06" + packet_id.to_bytes(2, "big") + b"\x00\x01t\x00")
        elif index % 10 == 0:
            packets.append(b"\xc0\x00")
        else:
            packets.append(b"\x32\x85\x04\x00\x01t" + packet_id.to_bytes(2, "big") + payload)
    return b"".join(packets)


def flood(address: str, client_id: bytes) -> tuple[int, bool]:
    """Connect, then send without ever reading; returns (bytes sent, whether sending blocked
    for 2 s: the daemon stopped reading)."""
    host, port = address.rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # our answers pile up at the daemon
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)  # and our sending blocks soon after
    sock.connect((host, int(port)))
    try:
        body = b"\x00\x04MQTT\x04\x02\x00\x00" + len(client_id).to_bytes(2, "big") + client_id
        sock.sendall(bytes((0x10, len(body))) + body)
        assert sock.recv(4) == b"\x20\x02\x00\x00"  # CONNACK accepted; nothing is read after this
        sock.setblocking(False)
        chunks = [memoryview(flood_chunk(1 + 8000 * turn)) for turn in range(8)]
        sent = 0
        deadline = time.monotonic() + 30
        turn = 0
        pending = chunks[0]
        while sent < FLOOD_BYTES and time.monotonic() < deadline:
            _, writable, _ = select.select([], [sock], [], 2.0)
            if not writable:
                return sent, True
            try:
                count = sock.send(pending)
            except BlockingIOError:
                continue
            sent += count
            if count < len(pending):
                pending = pending[count:]
            else:
                turn = (turn + 1) % len(chunks)
                pending = chunks[turn]
        return sent, False
    finally:
        sock.close()


@pytest.mark.parametrize("listener", ["broker", "app"])
def test_a_client_that_never_reads_cannot_grow_memory(daemon: Daemon, listener: str) -> None:
    assert daemon.process is not None
    pid = daemon.process.pid
    before = rss(pid)
    sent, blocked = flood(daemon.addresses[listener], f"flood-{listener}".encode())
    after = rss(pid)
    assert blocked, f"the daemon kept reading a client that reads nothing ({sent} bytes taken)"
    assert sent < FLOOD_BYTES // 4
    assert after - before < RSS_SLACK, f"RSS grew by {(after - before) // 1024} KiB"
    # The daemon still serves everyone else.
    client = Client(daemon.addresses[listener], f"after-{listener}", V311)
    try:
        assert client.subscribe(("after/t", 1)) == [1]
        client.publish("after/t", b"ok", 1)
        assert client.get().payload == b"ok"
    finally:
        client.close()
