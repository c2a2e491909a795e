# -*- test-case-name: tests.unit.mqtt.test_broker_redis -*-
"""``RedisStore``: the broker's retained messages, sessions and session owners in Redis.

Several gateway processes on one Redis (with the Redis channel layer for the publishes, see
:mod:`.cluster`) are then one broker. Keys, under ``prefix`` (default ``gateway-mqtt``) and the
broker's name:

* ``{prefix}:{name}:retained`` - a hash, topic -> serialised message (expired ones are dropped
  when read: each message carries its expiry time);
* ``{prefix}:{name}:session:{client id}`` - a saved session, with the Session Expiry Interval as
  the key's TTL (Redis forgets expired sessions by itself);
* ``{prefix}:{name}:owner:{client id}`` - the node holding the client's live session.

Written with txredisapi (Twisted), which uses the global reactor: the daemon's asyncio reactor.
txredisapi is imported when the store is built, never at configuration time.
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
_RELEASE = b"if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
# GET then DEL in one step (GETDEL exists from Redis 6.2; this works everywhere).
_TAKE = b"local v = redis.call('get', KEYS[1]); if v then redis.call('del', KEYS[1]) end; return v"


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


class RedisStore(BrokerStore):
    """Broker storage in Redis (see the module documentation).

    Args:
        url: the Redis URL.
        name: the broker's name (part of every key).
        prefix: the key prefix.
        loop: the asyncio loop under the reactor.
        poolsize: connections in the pool.
    """

    shared = True

    def __init__(
        self, url: str, *, name: str = "default", prefix: str = "gateway-mqtt",
        loop: asyncio.AbstractEventLoop | None = None, poolsize: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        import txredisapi

        self._loop = loop
        self._clock = clock
        self._base = f"{prefix}:{name}"
        options = parse_redis_url(url)
        common = {"dbid": options["dbid"], "poolsize": poolsize, "reconnect": True, "charset": None,
                  "password": options["password"], "convertNumbers": False}
        if "path" in options:
            self._redis = txredisapi.lazyUnixConnectionPool(options["path"], **common)
        else:
            self._redis = txredisapi.lazyConnectionPool(
                options["host"], options["port"], ssl_context_factory=options["ssl"], **common
            )

    async def _call(self, deferred: Any) -> Any:
        loop = self._loop or asyncio.get_running_loop()
        return await deferred.asFuture(loop)

    def _key(self, kind: str, client_id: str = "") -> str:
        return f"{self._base}:{kind}:{client_id}" if client_id else f"{self._base}:{kind}"

    async def set_retained(self, topic: str, data: bytes | None, ttl: float | None = None) -> None:
        if not data:
            await self._call(self._redis.hdel(self._key("retained"), topic))
        else:
            await self._call(self._redis.hset(self._key("retained"), topic, data))

    async def match_retained(self, topic_filter: str) -> list[bytes]:
        key = self._key("retained")
        if "+" not in topic_filter and "#" not in topic_filter:
            value = await self._call(self._redis.hget(key, topic_filter))
            entries = {topic_filter.encode(): value} if value is not None else {}
        else:
            entries = await self._call(self._redis.hgetall(key))
        found: list[bytes] = []
        expired: list[bytes] = []
        now = self._clock()
        for raw_topic, data in entries.items():
            topic = raw_topic.decode("utf-8") if isinstance(raw_topic, bytes) else raw_topic
            if topic_matches(topic_filter, topic):
                expires = load_message(data).expires_at
                if expires is not None and expires <= now:
                    expired.append(raw_topic)
                else:
                    found.append(data)
        if expired:
            await self._call(self._redis.hdel(key, expired))
        return found

    async def save_session(self, client_id: str, data: bytes, ttl: float | None) -> None:
        expire = max(1, int(ttl + 0.999)) if ttl is not None else None
        await self._call(self._redis.set(self._key("session", client_id), data, expire=expire))

    async def load_session(self, client_id: str) -> bytes | None:
        result = await self._call(self._redis.eval(_TAKE, [self._key("session", client_id)]))
        return result or None

    async def delete_session(self, client_id: str) -> None:
        await self._call(self._redis.delete(self._key("session", client_id)))

    async def get_owner(self, client_id: str) -> str | None:
        value = await self._call(self._redis.get(self._key("owner", client_id)))
        return value.decode("utf-8") if value else None

    async def set_owner(self, client_id: str, node: str) -> None:
        await self._call(self._redis.set(self._key("owner", client_id), node))

    async def release_owner(self, client_id: str, node: str) -> None:
        await self._call(self._redis.eval(_RELEASE, [self._key("owner", client_id)], [node]))

    async def flush(self) -> None:
        """Delete every key of this broker (tests)."""
        keys = await self._call(self._redis.keys(f"{self._base}:*"))
        if keys:
            await self._call(self._redis.delete(keys))

    async def close(self) -> None:
        await self._call(self._redis.disconnect())
