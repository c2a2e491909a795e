"""The known HTTP/2 attacks, played with the ``h2`` library (and raw frames) over real sockets against
a real daemon: each is cut off (GOAWAY), the daemon's memory and CPU stay bounded, and other
clients keep being served meanwhile.

* rapid reset (CVE-2023-44487): HEADERS then RST_STREAM, as fast as the client can;
* CONTINUATION flood (CVE-2024-27316): a header block that never ends, big or empty frames;
* SETTINGS, PING and empty-frame floods;
* the HPACK bomb: one large field in the dynamic table, referenced thousands of times;
* MadeYouReset (CVE-2025-8671): frames that make the server reset streams whose applications
  keep running.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h2.errors
import hpack
import h2.events
import pytest

from tests.integration.daemon import Daemon, http_config, wait_until
from tests.integration.h2client import H2Client, cpu_seconds, frame, rss_kib

pytestmark = pytest.mark.slow

ENHANCE_YOUR_CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
#: How much the daemon's resident memory may grow during one attack.
MEMORY_BOUND_KIB = 24 * 1024
#: CPU the daemon may spend on one attack (the attacks send for at most a few seconds).
CPU_BOUND = 4.0


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("h2attacks")
    config = http_config(extra="timeouts: {application_close: 3s}", listener_extra="http2: {max_concurrent_streams: 20}")
    daemon = Daemon(tmp, config).start()
    yield daemon
    daemon.stop()


class Bystander:
    """Another client asking /hello over HTTP/2 again and again while an attack runs."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers: list[float] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                started = time.monotonic()
                with H2Client(self.port, timeout=10) as client:
                    status, _, body = client.get("/hello")
                assert (status, body) == (200, b"Hello, world!")
                self.answers.append(time.monotonic() - started)
            except BaseException as exc:  # reported by the test
                self.errors.append(exc)
                return
            time.sleep(0.05)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=20)


def attack(daemon: Daemon, play: Callable[[], None]) -> None:
    """Run ``play`` with a bystander; check the daemon stayed bounded and the bystander was served."""
    pid = daemon.process.pid  # type: ignore[union-attr]
    with H2Client(daemon.port()) as warm:  # warm up, so the baseline includes a served request
        assert warm.get("/hello")[0] == 200
    memory, cpu = rss_kib(pid), cpu_seconds(pid)
    with Bystander(daemon.port()) as bystander:
        play()
        served = len(bystander.answers)
        deadline = time.monotonic() + 10
        while len(bystander.answers) < served + 2 and not bystander.errors and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not bystander.errors, bystander.errors
    assert len(bystander.answers) >= 2, "other clients were not served during the attack"
    grown = rss_kib(pid) - memory
    used = cpu_seconds(pid) - cpu
    assert grown < MEMORY_BOUND_KIB, f"memory grew by {grown} KiB"
    assert used < CPU_BOUND, f"the attack cost {used:.2f}s of CPU"


def goaway_of(client: H2Client, timeout: float = 10.0) -> h2.events.ConnectionTerminated:
    """Read until the server's GOAWAY; then the connection must close."""
    event = client.until(lambda e: isinstance(e, h2.events.ConnectionTerminated), timeout)
    deadline = time.monotonic() + timeout
    while not client.closed and time.monotonic() < deadline:
        client.read(timeout=1)
    assert client.closed, "the connection stayed open after GOAWAY"
    return event  # type: ignore[no-any-return]


def send_until_closed(client: H2Client, chunks: Iterator[bytes], limit: float = 5.0) -> int:
    """Send chunks until the server closes (or ``limit`` seconds pass); returns how many went."""
    sent = 0
    deadline = time.monotonic() + limit
    client.sock.settimeout(2)
    for chunk in chunks:
        if time.monotonic() > deadline:
            break
        try:
            client.sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            break
        sent += 1
        if sent % 50 == 0:
            client.read(timeout=0.001)
            if client.closed or any(isinstance(e, h2.events.ConnectionTerminated) for e in client.events):
                break
    return sent


def test_rapid_reset(daemon: Daemon) -> None:
    results: list[tuple[int, int]] = []

    def play() -> None:
        for _ in range(5):  # the attacker reconnects each time it is cut off
            with H2Client(daemon.port()) as client:
                def pairs() -> Iterator[bytes]:
                    while True:
                        stream_id = client.conn.get_next_available_stream_id()
                        client.conn.send_headers(stream_id, [(b":method", b"GET"), (b":scheme", b"http"),
                                                             (b":authority", b"localhost"), (b":path", b"/hold?s=2")])
                        client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                        yield client.conn.data_to_send()

                sent = send_until_closed(client, pairs())
                results.append((sent, goaway_of(client).error_code))

    attack(daemon, play)
    for sent, code in results:
        assert code == ENHANCE_YOUR_CALM
        assert sent < 2000  # cut off after the control-frame budget (200), not after thousands
    with H2Client(daemon.port()) as client:
        held = json.loads(client.get("/held")[2])
    # The streams reset in the same read as they were opened never started an application; the
    # rest are bounded by max_concurrent_streams per connection.
    assert held["most_held"] <= 5 * 20


def test_continuation_flood(daemon: Daemon) -> None:
    codes = []

    def play() -> None:
        for payload in (b"\x00" * 16384, b""):  # big frames (memory), empty ones (CPU)
            with H2Client(daemon.port()) as client:
                client.conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"),
                                             (b":path", b"/hello")], end_stream=True)
                headers = client.conn.data_to_send()
                # Clear END_HEADERS (flag 0x4) of the HEADERS frame: the block goes on and on.
                headers = headers[:4] + bytes((headers[4] & ~0x4,)) + headers[5:]

                def flood() -> Iterator[bytes]:
                    yield headers
                    continuation = frame(0x9, 0, 1, payload)
                    while True:
                        yield continuation * 16

                send_until_closed(client, flood())
                codes.append(goaway_of(client).error_code)

    attack(daemon, play)
    assert codes == [ENHANCE_YOUR_CALM, ENHANCE_YOUR_CALM]


@pytest.mark.parametrize("kind", ["settings", "ping", "empty data", "priority", "unknown"])
def test_control_frame_floods(daemon: Daemon, kind: str) -> None:
    codes = []

    def play() -> None:
        with H2Client(daemon.port()) as client:
            stream_id = client.request("/hold?s=1", method="POST", end=False)
            one = {
                "settings": frame(0x4, 0, 0, b"\x00\x03\x00\x00\x00\x64"),
                "ping": frame(0x6, 0, 0, b"12345678"),
                "empty data": frame(0x0, 0, stream_id),
                "priority": frame(0x2, 0, stream_id, b"\x00\x00\x00\x00\x10"),
                "unknown": frame(0xEE, 0, 0, b"x"),
            }[kind]

            def flood() -> Iterator[bytes]:
                while True:
                    yield one * 64

            send_until_closed(client, flood())
            codes.append(goaway_of(client).error_code)

    attack(daemon, play)
    assert codes == [ENHANCE_YOUR_CALM]


def test_hpack_bomb(daemon: Daemon) -> None:
    codes = []

    def play() -> None:
        with H2Client(daemon.port()) as client:
            value = b"b" * 4000
            # :method GET, :scheme http, :path /, then "x-bomb: bbbb..." added to the dynamic table
            # (literal with incremental indexing, RFC 7541 6.2.1), then 8000 references to it: 32 MB
            # decoded from 12 KB.
            length = len(value) - 127
            varint = b""
            while length >= 128:
                varint += bytes((length % 128 + 128,))
                length //= 128
            varint += bytes((length,))
            block = b"\x82\x86\x84\x41\x09localhost" + b"\x40\x06x-bomb\x7f" + varint + value + b"\xbe" * 8000
            first, rest = block[:16384], block[16384:]
            client.send_raw(frame(0x1, 0x1, 1, first) + frame(0x9, 0x4, 1, rest))
            event = goaway_of(client)
            codes.append(event.error_code)

    attack(daemon, play)
    assert codes and codes[0] != h2.errors.ErrorCodes.NO_ERROR


def raw_frames(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """``(type, stream id, payload)`` of whole frames in ``data``."""
    pos = 0
    while len(data) - pos >= 9:
        length = int.from_bytes(data[pos:pos + 3], "big")
        if len(data) - pos < 9 + length:
            return
        yield data[pos + 3], int.from_bytes(data[pos + 5:pos + 9], "big") & 0x7FFFFFFF, data[pos + 9:pos + 9 + length]
        pos += 9 + length


def test_made_you_reset(daemon: Daemon) -> None:
    """Each stream's WINDOW_UPDATE overflows its window: h2 resets the stream (FLOW_CONTROL_ERROR)
    while its application keeps running. Those applications still count against
    max_concurrent_streams (20 here), and the provoked resets spend the control budget."""
    outcome: dict[str, object] = {}

    def play() -> None:
        encoder = hpack.Encoder()
        with H2Client(daemon.port()) as client:
            # Frames are read raw: the client's own h2 state knows nothing of these streams.
            received = b""
            next_id = 1

            def read_until(predicate: Callable[[], bool]) -> None:
                nonlocal received
                client.sock.settimeout(5)
                while not predicate():
                    try:
                        more = client.sock.recv(1 << 20)
                    except (TimeoutError, ConnectionResetError):
                        return
                    if not more:
                        return
                    received += more

            def count(kind: int, code: int | None = None) -> int:
                return sum(1 for t, _, p in raw_frames(received) if t == kind and (code is None or int.from_bytes(p[:4], "big") == code))

            for round in range(1, 40):
                # 20 requests (the limit), then a PING: its ACK says they were read (and started) ...
                opened = []
                for _ in range(20):
                    block = encoder.encode([(b":method", b"GET"), (b":scheme", b"http"),
                                            (b":authority", b"localhost"), (b":path", b"/hold?s=2")])
                    opened.append(next_id)
                    client.sock.sendall(frame(0x1, 0x5, next_id, block))
                    next_id += 2
                client.sock.sendall(frame(0x6, 0, 0, b"%08d" % round))
                read_until(lambda: count(0x6) >= round or count(0x7) > 0)
                if count(0x7):
                    break
                # ... then each stream's window is overflowed: h2 resets them (FLOW_CONTROL_ERROR),
                # their applications run on, and the next round's requests are refused.
                try:
                    client.sock.sendall(b"".join(frame(0x8, 0, i, (0x7FFFFFFF).to_bytes(4, "big")) for i in opened))
                except (BrokenPipeError, ConnectionResetError):
                    break
            read_until(lambda: count(0x7) > 0)
            goaway = next((p for t, _, p in raw_frames(received) if t == 0x7), None)
            outcome["code"] = int.from_bytes(goaway[4:8], "big") if goaway else None
            outcome["refused"] = count(0x3, h2.errors.ErrorCodes.REFUSED_STREAM)
            outcome["provoked"] = count(0x3, h2.errors.ErrorCodes.FLOW_CONTROL_ERROR)
        with H2Client(daemon.port()) as client:
            outcome["held"] = json.loads(client.get("/held")[2])

    # Applications the earlier tests left running finish first; then the count starts afresh.
    with H2Client(daemon.port()) as client:
        wait_until(lambda: json.loads(client.get("/held")[2])["holding"] == 0, timeout=20, what="earlier /hold requests to end")
        client.get("/held?reset=1")
    attack(daemon, play)
    assert outcome["code"] == ENHANCE_YOUR_CALM
    held = outcome["held"]
    assert isinstance(held, dict)
    # No more applications ran at once than the limit allows, however many streams were reset.
    assert 0 < held["most_held"] <= 20
    assert outcome["refused"] and outcome["provoked"], outcome


def test_limits_are_configurable(tmp_path: Path) -> None:
    config = http_config(listener_extra="http2: {max_control_frames_per_second: 5000}")
    with Daemon(tmp_path, config) as daemon, H2Client(daemon.port()) as client:
        # 1000 PINGs are within this listener's budget: all answered, the connection stays open.
        client.send_raw(frame(0x6, 0, 0, b"12345678") * 1000)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            client.read(timeout=1)
            if sum(1 for e in client.events if isinstance(e, h2.events.PingAckReceived)) == 1000:
                break
        assert sum(1 for e in client.events if isinstance(e, h2.events.PingAckReceived)) == 1000
        assert client.get("/hello")[0] == 200
