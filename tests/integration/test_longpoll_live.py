"""Long polling and server-sent events over a real daemon, with real clients (httpx, curl).

The consumers are in ``tests/longpoll_apps.py``: Channels' documented ``LongPollConsumer``
(in a group) and an event stream; a second request triggers them through the channel layer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.daemon import Daemon, http_config, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = Daemon(tmp_path_factory.mktemp("longpoll"), http_config(app="tests.longpoll_apps:application")).start()
    yield running
    running.stop()


def _stats(base: str) -> dict[str, int]:
    return httpx.get(base + "/stats/", timeout=10).json()  # type: ignore[no-any-return]


def test_documented_long_poll_over_http(daemon: Daemon) -> None:
    base = f"http://{daemon.addresses['web']}"
    with httpx.Client(timeout=10) as client, client.stream("GET", base + "/poll/") as poll:
        # The headers arrive with the first (empty) body chunk, after the consumer joined "poll".
        assert poll.status_code == 200
        assert poll.headers["content-type"] == "application/json"
        sent = httpx.post(base + "/send/poll/", json={"type": "chat.message", "text": "hello"}, timeout=10)
        assert sent.status_code == 202
        assert json.loads(poll.read()) == {"type": "chat.message", "text": "hello"}
    wait_until(lambda: _stats(base)["poll"] >= 1, what="the long-poll consumer's disconnect()")


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_server_sent_events_with_curl(daemon: Daemon, tmp_path: Path) -> None:
    base = f"http://{daemon.addresses['web']}"
    before = _stats(base)["events"]
    headers = tmp_path / "headers.txt"
    with subprocess.Popen(["curl", "-sN", "-D", str(headers), base + "/events/"], stdout=subprocess.PIPE) as curl:
        try:
            assert curl.stdout is not None
            assert curl.stdout.readline() == b": connected\n"  # the consumer is in group "events" now
            assert curl.stdout.readline() == b"\n"
            for n in range(3):
                httpx.post(base + "/send/events/", json={"type": "event.message", "data": {"n": n}}, timeout=10)
                assert curl.stdout.readline() == f'data: {{"n": {n}}}\n'.encode()
                assert curl.stdout.readline() == b"\n"
            head = headers.read_text().lower()
            assert "content-type: text/event-stream" in head and "transfer-encoding: chunked" in head
        finally:
            curl.terminate()  # the client leaves in the middle of the stream
    wait_until(lambda: _stats(base)["events"] == before + 1, what="the event stream's disconnect() after curl left")


def test_event_stream_ends_when_the_body_is_complete(daemon: Daemon) -> None:
    base = f"http://{daemon.addresses['web']}"
    with httpx.Client(timeout=10) as client, client.stream("GET", base + "/events/") as stream:
        lines = stream.iter_lines()
        assert next(lines) == ": connected"
        httpx.post(base + "/send/events/", json={"type": "event.message", "data": "one"}, timeout=10)
        httpx.post(base + "/send/events/", json={"type": "event.end"}, timeout=10)
        assert [line for line in lines if line] == ['data: "one"', "event: end", "data: {}"]
