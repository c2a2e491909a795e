"""How long the broker's Redis store takes to work again once Redis is back.

``python -m tests.unit.mqtt.redis_store_recovery TMPDIR`` starts a redis-server, makes a store
with ``reconnect_max_delay=0.5``, kills Redis (SIGKILL), checks that calls fail at once while it
is down, waits until the backoff has grown to its maximum, restarts Redis on the same port and
prints ``RECOVERED <seconds>``: the time from the restart to the first call that succeeds.
Run by ``test_broker_redis.py`` (txredisapi needs the installed reactor, which pytest must not get).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from gateway.reactor import install_reactor, reactor_loop


def main(tmp: str) -> None:
    reactor = install_reactor("asyncio")
    loop = reactor_loop(reactor)
    result: list[BaseException | None] = []

    async def checks() -> None:
        from gateway.layers.redis.errors import RedisLayerError
        from gateway.protocols.mqtt.broker.redis_store import RedisStore
        from tests.unit.layers.redis_server import RedisServer

        server = RedisServer(Path(tmp)).start()
        store = RedisStore(server.url, name="r", loop=loop, reconnect_max_delay=0.5)
        try:
            await store.set_retained("a", b"")
            server.kill()
            started = time.monotonic()
            try:
                await store.match_retained("a")
            except RedisLayerError:
                pass
            else:
                raise AssertionError("a call succeeded with Redis down")
            assert time.monotonic() - started < 1.0, "a call waited while Redis was down"
            await asyncio.sleep(3.0)  # the backoff reaches reconnect_max_delay
            server.start()
            back = time.monotonic()
            while True:
                try:
                    await store.match_retained("a")
                    break
                except RedisLayerError:
                    await asyncio.sleep(0.01)
                if time.monotonic() - back > 10:
                    raise AssertionError("the store did not reconnect")
            print(f"RECOVERED {time.monotonic() - back:.3f}")
        finally:
            await store.close()
            server.stop()

    def finished(task: asyncio.Task[None]) -> None:
        result.append(task.exception())
        reactor.stop()

    reactor.callWhenRunning(lambda: asyncio.ensure_future(checks(), loop=loop).add_done_callback(finished))
    reactor.run()
    if result and result[0] is not None:
        raise result[0]


if __name__ == "__main__":
    main(sys.argv[1])
