"""Connecting the Redis layer: ACL users and passwords, unix sockets, TLS with certificate
verification (a TLS redis-server with trustme certificates), Sentinel discovery and failover."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.layers.redis import RedisChannelLayer, RedisLayerUnavailable
from tests.unit.layers.conftest import recv, until
from tests.unit.layers.redis_server import free_port

pytestmark = pytest.mark.redis


def test_acl_user_and_password(spawn: Any, run: Any) -> None:
    server = spawn(password="defaultpw",
                   args=("--requirepass", "defaultpw", "--user", "app", "on", ">apppw", "~*", "&*", "+@all"))

    async def main() -> None:
        for url in (f"redis://app:apppw@127.0.0.1:{server.port}/2", f"redis://:defaultpw@127.0.0.1:{server.port}/2"):
            layer = RedisChannelLayer(hosts=[url])
            await layer.send("acl", {"type": "m"})
            assert (await recv(layer, "acl"))["type"] == "m"
            await layer.close()
        assert server.command("SELECT", 2) == "OK"
        wrong = RedisChannelLayer(hosts=[f"redis://app:nope@127.0.0.1:{server.port}/0"])
        with pytest.raises(RedisLayerUnavailable, match="(?i)auth"):
            await wrong.send("acl", {"type": "m"})
        await wrong.close()

    run(main)


def test_unix_socket(spawn: Any, tmp_path: Path, run: Any) -> None:
    sock = tmp_path / "redis.sock"
    spawn(args=("--unixsocket", str(sock), "--unixsocketperm", "700"))

    async def main() -> None:
        layer = RedisChannelLayer(hosts=[f"unix://{sock}?db=1"])
        channel = await layer.new_channel()
        other = RedisChannelLayer(hosts=[f"unix://{sock}?db=1"])
        await other.send(channel, {"type": "m", "via": "unix"})
        assert (await recv(layer, channel))["via"] == "unix"
        await other.close()
        await layer.close()

    run(main)


@pytest.fixture()
def tls_server(spawn: Any, tmp_path: Path) -> Any:
    """A redis-server with a TLS port whose certificate (for ``localhost``) a trustme CA issued."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    tls_port = free_port()
    spawn(args=(
        "--tls-port", str(tls_port), "--tls-cert-file", str(tmp_path / "server.pem"),
        "--tls-key-file", str(tmp_path / "server.key"), "--tls-ca-cert-file", str(tmp_path / "ca.pem"),
        "--tls-auth-clients", "no"))
    return tls_port, tmp_path


def test_tls_verifies_the_server_certificate(tls_server: tuple[int, Path], run: Any) -> None:
    port, tmp = tls_server

    async def attempt(url: str) -> None:
        layer = RedisChannelLayer(hosts=[url], connect_timeout=3)
        try:
            await layer.send("tls", {"type": "m"})
            assert (await recv(layer, "tls"))["type"] == "m"
        finally:
            await layer.flush() if layer.stats()["shards_down"] == 0 else None
            await layer.close()

    async def main() -> None:
        await attempt(f"rediss://localhost:{port}/0?ssl_ca_certs={tmp / 'ca.pem'}")
        with pytest.raises(RedisLayerUnavailable, match="(?i)certificate verify failed"):
            await attempt(f"rediss://localhost:{port}/0?ssl_ca_certs={tmp / 'other-ca.pem'}")
        with pytest.raises(RedisLayerUnavailable):  # the certificate names localhost, not 127.0.0.1
            await attempt(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={tmp / 'ca.pem'}")
        with pytest.raises(RedisLayerUnavailable):  # the system trust store does not know this CA
            await attempt(f"rediss://localhost:{port}/0")
        await attempt(f"rediss://localhost:{port}/0?ssl_cert_reqs=none")  # explicitly unverified

    run(main)


def test_sentinel_discovers_the_master(spawn: Any, run: Any) -> None:
    master = spawn()
    sentinel_port = free_port()
    spawn(port=sentinel_port, args=("--sentinel",), config=(
        f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds mymaster 5000\n"))

    async def main() -> None:
        layer = RedisChannelLayer(hosts=["redis://mymaster/0"], sentinels=[f"127.0.0.1:{sentinel_port}"])
        other = RedisChannelLayer(hosts=[{"sentinels": [("127.0.0.1", sentinel_port)], "master_name": "mymaster"}])
        channel = await layer.new_channel()
        await other.send(channel, {"type": "m", "via": "sentinel"})
        assert (await recv(layer, channel))["via"] == "sentinel"
        assert master.command("KEYS", "asgi*") == []  # drained, but it went through the master:
        assert master.command("INFO", "commandstats").count(b"cmdstat_evalsha") == 1
        await layer.close()
        await other.close()

    run(main)


@pytest.mark.slow
def test_sentinel_failover_moves_the_layer_to_the_new_master(spawn: Any, run: Any) -> None:
    """~20 s: Sentinel needs ~10 s to learn the replica and ~10 s to fail over."""
    master = spawn()
    replica = spawn(args=("--replicaof", "127.0.0.1", str(master.port)))
    sentinel_port = free_port()
    sentinel = spawn(port=sentinel_port, args=("--sentinel",), config=(
        f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds mymaster 5000\n"))

    async def main() -> None:
        await until(lambda: b"master_link_status:up" in replica.command("INFO", "replication"), 30)
        # Sentinel asks the master for its replicas every 10 s: a 10 s wait lost that race.
        await until(lambda: len(sentinel.command("SENTINEL", "REPLICAS", "mymaster")) == 1, 30)
        layer = RedisChannelLayer(hosts=["redis://mymaster/0"], sentinels=[f"127.0.0.1:{sentinel_port}"],
                                  reconnect_max_delay=0.2)
        channel = await layer.new_channel()
        other = RedisChannelLayer(hosts=["redis://mymaster/0"], sentinels=[f"127.0.0.1:{sentinel_port}"],
                                  reconnect_max_delay=0.2)
        await other.send(channel, {"type": "m", "n": 1})
        assert (await recv(layer, channel))["n"] == 1
        assert sentinel.command("SENTINEL", "FAILOVER", "mymaster") == "OK"
        await until(lambda: b"role:master" in replica.command("INFO", "replication")
                    and b"role:slave" in master.command("INFO", "replication"), 30)
        deadline = time.monotonic() + 30
        while True:  # the old master answers READONLY: the layer reconnects to the new one
            try:
                await other.send(channel, {"type": "m", "n": 2})
                break
            except RedisLayerUnavailable:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        assert (await recv(layer, channel, 15))["n"] == 2
        await layer.close()
        await other.close()

    run(main)
