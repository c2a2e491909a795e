"""The shared layer contract against the Redis layer on a real redis-server.

The scenarios run on the Twisted asyncio reactor's loop, as in the daemon (a thread runs the
reactor); the contract's ``async_to_sync`` case exercises calls from another thread's loop.
Three shapes: one host; two shards (two databases of one server: the sharded paths and the Lua
consistent hash); and encrypted JSON bodies with per-channel capacities (group_send's two-step
path).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.layers.contract import ChannelLayerContract
from gateway.layers.redis import RedisChannelLayer
from tests.unit.layers.conftest import on_reactor
from tests.unit.layers.redis_server import RedisServer

pytestmark = pytest.mark.redis


class RedisContract(ChannelLayerContract):
    short_expiry = 0.4
    timeout = 5.0
    hosts: list[str]
    extra: dict[str, Any] = {}

    @pytest.fixture(autouse=True)
    def _setup(self, redis_server: RedisServer, reactor_loop: asyncio.AbstractEventLoop) -> None:
        self.loop = reactor_loop
        self.hosts = self.make_hosts(redis_server)

    def make_hosts(self, server: RedisServer) -> list[str]:
        return [server.url]

    def make_layer(self, **options: Any) -> RedisChannelLayer:
        return RedisChannelLayer(hosts=self.hosts, **{**self.extra, **options})

    def run(self, scenario: Callable[[Any], Awaitable[None]], **options: Any) -> None:
        async def main() -> None:
            layer = self.make_layer(**options)
            try:
                await scenario(layer)
            finally:
                await self.cleanup(layer)

        on_reactor(self.loop, main)


class TestRedisLayerContract(RedisContract):
    pass


_ROUND_ROBIN = ("with several hosts, sends to a normal channel cycle over the servers as channels_redis' do "
                "(so its workers find them): capacity and order hold per server; test_redis_layer.py covers it")


class TestShardedRedisLayerContract(RedisContract):
    def make_hosts(self, server: RedisServer) -> list[str]:
        return [f"redis://127.0.0.1:{server.port}/1", f"redis://127.0.0.1:{server.port}/2"]

    @pytest.mark.skip(reason=_ROUND_ROBIN)
    def test_capacity(self) -> None: ...

    @pytest.mark.skip(reason=_ROUND_ROBIN)
    def test_channel_capacity_patterns(self) -> None: ...

    @pytest.mark.skip(reason=_ROUND_ROBIN)
    def test_expired_messages_free_capacity(self) -> None: ...

    @pytest.mark.skip(reason=_ROUND_ROBIN)
    def test_wait_for_timeout_loses_nothing(self) -> None: ...

    @pytest.mark.skip(reason=_ROUND_ROBIN)
    def test_concurrent_senders_one_receiver_keeps_each_senders_order(self) -> None: ...

    @pytest.mark.skip(reason=_ROUND_ROBIN)
    def test_fifo_order(self) -> None: ...


class TestEncryptedRedisLayerContract(RedisContract):
    extra = {"symmetric_encryption_keys": ["k1", "k2"], "serializer_format": "json"}

    def test_nested_values_round_trip(self) -> None:
        pytest.skip("JSON bodies carry no bytes (as channels_redis' json serializer); msgpack runs it")
