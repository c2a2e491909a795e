"""``RedisStore`` against a real ``redis-server`` started on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.mqtt.redis_server import REDIS_SERVER, redis_server

REPO = Path(__file__).resolve().parents[3]

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(not os.path.exists(REDIS_SERVER), reason="needs redis-server"),
]


def test_redis_store(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        done = subprocess.run(
            [sys.executable, "-m", "tests.unit.mqtt.redis_store_check", url],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("OK")


def test_parse_redis_url() -> None:
    from gateway.protocols.mqtt.broker.redis_store import parse_redis_url

    assert parse_redis_url("redis://:pw@example.org:6380/2") == {
        "host": "example.org", "port": 6380, "dbid": 2, "password": "pw", "ssl": False}
    assert parse_redis_url("unix:///run/redis.sock?db=3") == {"path": "/run/redis.sock", "dbid": 3, "password": None}
    with pytest.raises(ValueError):
        parse_redis_url("http://x")


def test_redis_store_recovers_within_a_second_of_redis_coming_back(tmp_path: Path) -> None:
    """The store reconnects on the layer's backoff (``reconnect_max_delay`` 0.5 s here), not
    txredisapi's own (up to 10 s): working again under 1 s after Redis returns (measured)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.unit.mqtt.redis_store_recovery", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seconds = float(done.stdout.split("RECOVERED")[1].split()[0])
    assert seconds < 1.0, seconds
