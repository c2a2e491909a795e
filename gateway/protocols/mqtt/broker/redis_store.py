# -*- test-case-name: tests.unit.mqtt.test_broker_redis -*-
"""``RedisStore``: what the broker keeps beyond one process, in Redis.

Several gateway processes on one Redis (with the Redis channel layer for the publishes, see
:mod:`.cluster`) are then one broker. Keys, under ``{prefix}:{{name}}`` (the broker's name is the
hash tag: on a Redis Cluster every key of one broker lives in one slot):

* ``retained`` - a hash, topic -> serialised message (expired ones are dropped when read: each
  message carries its expiry time);
* ``session:{client id}`` - a session saved by a node that stopped, with the Session Expiry
  Interval as the key's TTL (Redis forgets expired sessions by itself);
* ``record:{client id}`` - the live record of a persistent session (subscriptions, expiry, the
  unacknowledged messages of its last connection), written whenever they change, so that a
  node that dies does not take the session with it;
* ``queue:{client id}`` - a list: the QoS 1/2 messages waiting for an absent persistent
  session (bounded, with the session's expiry as TTL);
* ``owner:{client id}`` - the node holding the client's session; ``clients:{node}`` - a set,
  the sessions a node took (for whoever takes over after it);
* ``will:{node}`` - a hash, client id -> the Will Message of a client connected to ``node``;
* ``nodes`` - a set of node names; ``alive:{node}`` - a node's heartbeat (a key with a TTL);
  ``lock:{name}`` - ``SET NX PX`` locks (one node takes over a dead one).

Commands go through the channel layer's Redis client (:func:`gateway.layers.redis.client.open_client`):
one pipelined connection that reconnects with the layer's backoff (``reconnect_max_delay``) and
raises ``RedisLayerUnavailable`` at once while Redis is down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

from gateway.protocols.mqtt.broker.session import load_message
from gateway.protocols.mqtt.broker.store import BrokerStore
from gateway.protocols.mqtt.topics import topic_matches

__all__ = ["RedisStore", "parse_redis_url"]

# Delete the owner key only if it still names the releasing node (no race with a new owner).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('srem', KEYS[2], ARGV[2])
  return redis.call('del', KEYS[1])
end
return 0
"""
# GET then DEL in one step (GETDEL exists from Redis 6.2; this works everywhere).
_TAKE = "local v = redis.call('get', KEYS[1]); if v then redis.call('del', KEYS[1]) end; return v"
# The whole list, emptied.
_DRAIN = "local v = redis.call('lrange', KEYS[1], 0, -1); redis.call('del', KEYS[1]); return v"
# KEYS: queue. ARGV: message, limit, ttl ms (0: none). Returns 1 if kept, 0 if the queue was full.
_PUSH = """
if redis.call('llen', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('rpush', KEYS[1], ARGV[1])
if tonumber(ARGV[3]) > 0 then redis.call('pexpire', KEYS[1], ARGV[3]) end
return 1
"""


def parse_redis_url(url: str) -> dict[str, Any]:
    """``redis://[:password@]host[:port][/db]`` or ``unix:///path[?db=N]`` -> connection kwargs."""
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        db = parse_qs(parsed.query).get("db", ["0"])[0]
        return {"path": parsed.path, "dbid": int(db), "password": parsed.password}
    if parsed.scheme not in ("redis", "rediss"):
        raise ValueError(f"{url!r} is not a redis:// or unix:// URL")
    db = parsed.path.lstrip("/") or "0"
    return {
        "host": parsed.hostname or "127.0.0.1",
        "port": parsed.port or 6379,
        "dbid": int(db),
        "password": parsed.password,
        "ssl": parsed.scheme == "rediss",
    }


def _ms(seconds: float | None) -> int:
    return 0 if seconds is None else max(1, int(seconds * 1000))


class RedisStore(BrokerStore):
    """Broker storage in Redis (see the module documentation).

    Args:
        url: the Redis URL (``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``...).
        name: the broker's name (part of every key).
        prefix: the key prefix.
        loop: the asyncio loop under the reactor.
        reconnect_max_delay: the longest wait between reconnection attempts (seconds).
        clock: wall-clock time.
    """

    shared = True

    def __init__(
        self, url: str, *, name: str = "default", prefix: str = "gateway-mqtt",
        loop: asyncio.AbstractEventLoop | None = None, reconnect_max_delay: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from gateway.layers.redis.client import hash_tagged, open_client
        from gateway.layers.redis.connection import ConnectionSettings

        self._clock = clock
        self._tag = (prefix, name)
        self._hash_tagged = hash_tagged
        reactor = None
        if loop is not None:
            from twisted.internet import reactor as installed

            reactor = installed
        settings = ConnectionSettings(reconnect_max_delay=reconnect_max_delay)
        self.client = open_client([url], reactor=reactor, loop=loop, settings=settings)
        self._scripts: dict[str, Any] = {}

    def _key(self, kind: str, client_id: str = "") -> bytes:
        prefix, name = self._tag
        return self._hash_tagged(prefix, name, kind, client_id) if client_id else self._hash_tagged(prefix, name, kind)

    async def _do(self, key: bytes, *args: Any) -> Any:
        return await self.client.execute(key, *args)

    async def _eval(self, source: str, keys: list[bytes], args: list[Any]) -> Any:
        from gateway.layers.redis.scripts import Script

        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = Script("mqtt-store", source)
        return await self.client.evalsha(script, keys, args)

    # -- retained -----------------------------------------------------------------------------

    async def set_retained(self, topic: str, data: bytes | None, ttl: float | None = None) -> None:
        key = self._key("retained")
        if not data:
            await self._do(key, "HDEL", key, topic)
        else:
            await self._do(key, "HSET", key, topic, data)

    async def match_retained(self, topic_filter: str) -> list[bytes]:
        key = self._key("retained")
        if "+" not in topic_filter and "#" not in topic_filter:
            value = await self._do(key, "HGET", key, topic_filter)
            entries = [(topic_filter.encode(), value)] if value is not None else []
        else:
            flat = await self._do(key, "HGETALL", key) or []
            entries = list(_pairs(flat))
        found: list[bytes] = []
        expired: list[bytes] = []
        now = self._clock()
        for raw_topic, data in entries:
            topic = raw_topic.decode("utf-8") if isinstance(raw_topic, bytes) else raw_topic
            if topic_matches(topic_filter, topic):
                expires = load_message(data).expires_at
                if expires is not None and expires <= now:
                    expired.append(raw_topic)
                else:
                    found.append(data)
        if expired:
            await self._do(key, "HDEL", key, *expired)
        return found

    # -- sessions -----------------------------------------------------------------------------

    async def save_session(self, client_id: str, data: bytes, ttl: float | None) -> None:
        key = self._key("session", client_id)
        if ttl is None:
            await self._do(key, "SET", key, data)
        else:
            await self._do(key, "SET", key, data, "EX", max(1, int(ttl + 0.999)))

    async def load_session(self, client_id: str) -> bytes | None:
        key = self._key("session", client_id)
        result = await self._eval(_TAKE, [key], [])
        return result or None

    async def delete_session(self, client_id: str) -> None:
        key = self._key("session", client_id)
        await self._do(key, "DEL", key)

    async def set_record(self, client_id: str, data: bytes | None, ttl: float | None = None) -> None:
        key = self._key("record", client_id)
        if data is None:
            await self._do(key, "DEL", key)
        elif ttl is None:
            await self._do(key, "SET", key, data)
        else:
            await self._do(key, "SET", key, data, "PX", _ms(ttl))

    async def get_record(self, client_id: str) -> bytes | None:
        key = self._key("record", client_id)
        return await self._do(key, "GET", key) or None

    async def push_queued(self, client_id: str, data: bytes, limit: int, ttl: float | None) -> bool:
        key = self._key("queue", client_id)
        return bool(await self._eval(_PUSH, [key], [data, limit, _ms(ttl)]))

    async def take_queued(self, client_id: str) -> list[bytes]:
        key = self._key("queue", client_id)
        return list(await self._eval(_DRAIN, [key], []) or [])

    async def delete_queued(self, client_id: str) -> None:
        key = self._key("queue", client_id)
        await self._do(key, "DEL", key)

    # -- owners, nodes, wills -----------------------------------------------------------------

    async def get_owner(self, client_id: str) -> str | None:
        key = self._key("owner", client_id)
        value = await self._do(key, "GET", key)
        return value.decode("utf-8") if value else None

    async def set_owner(self, client_id: str, node: str) -> None:
        key = self._key("owner", client_id)
        clients = self._key("clients", node)
        await self._do(key, "SET", key, node)
        await self._do(clients, "SADD", clients, client_id)

    async def release_owner(self, client_id: str, node: str) -> None:
        await self._eval(_RELEASE, [self._key("owner", client_id), self._key("clients", node)], [node, client_id])

    async def node_clients(self, node: str) -> list[str]:
        key = self._key("clients", node)
        return sorted(m.decode("utf-8") for m in await self._do(key, "SMEMBERS", key) or [])

    async def heartbeat(self, node: str, ttl: float) -> None:
        nodes, alive = self._key("nodes"), self._key("alive", node)
        await self._do(alive, "SET", alive, b"1", "PX", _ms(ttl))
        await self._do(nodes, "SADD", nodes, node)

    async def node_gone(self, node: str) -> None:
        alive = self._key("alive", node)
        await self._do(alive, "DEL", alive)

    async def nodes(self) -> dict[str, bool]:
        key = self._key("nodes")
        names = sorted(m.decode("utf-8") for m in await self._do(key, "SMEMBERS", key) or [])
        result = {}
        for name in names:
            alive = self._key("alive", name)
            result[name] = bool(await self._do(alive, "EXISTS", alive))
        return result

    async def alive(self, node: str) -> bool:
        key = self._key("alive", node)
        return bool(await self._do(key, "EXISTS", key))

    async def lock(self, name: str, holder: str, ttl: float) -> bool:
        key = self._key("lock", name)
        return await self._do(key, "SET", key, holder, "NX", "PX", _ms(ttl)) is not None

    async def forget_node(self, node: str) -> None:
        nodes = self._key("nodes")
        for kind in ("clients", "will"):
            key = self._key(kind, node)
            await self._do(key, "DEL", key)
        await self._do(nodes, "SREM", nodes, node)

    async def set_will(self, node: str, client_id: str, data: bytes | None) -> None:
        key = self._key("will", node)
        if data is None:
            await self._do(key, "HDEL", key, client_id)
        else:
            await self._do(key, "HSET", key, client_id, data)

    async def wills(self, node: str) -> dict[str, bytes]:
        key = self._key("will", node)
        return {k.decode("utf-8"): v for k, v in _pairs(await self._do(key, "HGETALL", key) or [])}

    async def flush(self) -> None:
        """Delete every key of this broker (tests; one server only)."""
        pattern = self._key("*").replace(b"{", b"\\{").replace(b"}", b"\\}")
        key = self._key("retained")
        keys = await self._do(key, "KEYS", pattern)
        if keys:
            await self._do(key, "DEL", *keys)

    async def close(self) -> None:
        await self.client.close()


def _pairs(flat: Any) -> Any:
    if isinstance(flat, dict):
        return flat.items()
    return zip(flat[0::2], flat[1::2])
