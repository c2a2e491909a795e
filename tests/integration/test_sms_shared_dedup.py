"""Two daemons behind one "load balancer" share SMS de-duplication through their Redis layer: a
provider's redelivery of a handled webhook that lands on the other daemon is acknowledged there
without reaching the application again."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.protocols.sms.testhook import sign_test_webhook
from tests.integration.daemon import Daemon
from tests.unit.layers.redis_server import REDIS_SERVER, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PUBLIC = "https://sms.example.test"


def config(redis_url: str) -> str:
    return f"""
application: tests.sms_apps:app
listeners:
  - name: sms
    protocol: sms
    endpoint: "tcp:0:interface=127.0.0.1"
    public_url: {PUBLIC}
    accounts:
      - {{name: tw, provider: twilio, path: /twilio, auth_token: tw-token}}
layers:
  default: {{backend: redis, hosts: ["{redis_url}"], reconnect_max_delay: 300ms}}
lifespan: "off"
"""


@pytest.fixture()
def daemons(tmp_path: Path) -> Iterator[tuple[RedisServer, Daemon, Daemon, Path]]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    redis = RedisServer(tmp_path).start()
    log = tmp_path / "deliveries.jsonl"
    started: list[Daemon] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            started.append(Daemon(tmp_path / name, config(redis.url), env={"GATEWAY_SMS_LOG": str(log)}).start())
        yield redis, started[0], started[1], log
    finally:
        for daemon in started:
            daemon.stop()
        redis.stop()


def handled(log: Path, message_id: str) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return [line for line in lines if line["scope"]["message_id"] == message_id]


def test_a_redelivery_to_the_other_daemon_is_acknowledged_without_a_second_delivery(
        daemons: tuple[RedisServer, Daemon, Daemon, Path]) -> None:
    redis, a, b, log = daemons
    for attempt in range(3):
        ident = f"SM{time.time_ns()}{attempt}"
        hook = sign_test_webhook("twilio", f"{PUBLIC}/twilio", auth_token="tw-token", text="hello",
                                 message_id=ident, from_="+447400123456")
        first, second = (a, b) if attempt % 2 == 0 else (b, a)
        for daemon in (first, second, second, first):  # the provider retries, the balancer alternates
            answer = httpx.post(hook.url.replace(PUBLIC, daemon.url("sms")), content=hook.body,
                                headers=list(hook.headers), timeout=10)
            assert answer.status_code == 200
        assert len(handled(log, ident)) == 1
        assert redis.command("EXISTS", f"asgi:marks:sms:sms:tw:twilio:message:{ident}") == 1
