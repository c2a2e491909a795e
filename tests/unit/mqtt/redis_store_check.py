"""Exercise ``RedisStore`` against a real Redis, on the asyncio reactor (a process of its own).

``python -m tests.unit.mqtt.redis_store_check REDIS_URL`` prints ``OK`` or fails. Run by
``test_broker_redis.py``: txredisapi needs an installed, running reactor, which the pytest
process must not get.
"""

from __future__ import annotations

import asyncio
import sys

from gateway.reactor import install_reactor, reactor_loop


def main(url: str) -> None:
    reactor = install_reactor("asyncio")
    loop = reactor_loop(reactor)
    result: list[BaseException | None] = []

    async def checks() -> None:
        from gateway.protocols.mqtt import Properties, Subscription
        from gateway.protocols.mqtt.broker import Broker, Message
        from gateway.protocols.mqtt.broker.redis_store import RedisStore
        from gateway.protocols.mqtt.broker.session import Session, dump_message, load_message

        clock = [1_700_000_000.0]
        store = RedisStore(url, name="t", loop=loop, clock=lambda: clock[0])
        other = RedisStore(url, name="t", loop=loop, clock=lambda: clock[0])  # "another process"
        try:
            await store.flush()
            kept = Message("a/b", b"kept", 1, True, Properties(content_type="c"), received_at=clock[0])
            short = Message("a/c", b"short", 0, True, expires_at=clock[0] + 5, received_at=clock[0])
            await store.set_retained("a/b", dump_message(kept))
            await store.set_retained("a/c", dump_message(short), 5)
            await store.set_retained("x", dump_message(Message("x", b"1", retain=True)))
            found = sorted(load_message(d).payload for d in await other.match_retained("a/#"))
            assert found == [b"kept", b"short"], found
            assert [load_message(d).properties.content_type for d in await other.match_retained("a/b")] == ["c"]
            clock[0] += 10
            assert [load_message(d).payload for d in await other.match_retained("a/+")] == [b"kept"]
            await store.set_retained("a/b", None)
            assert await other.match_retained("a/#") == []
            assert await other.match_retained("never") == []

            session = Session("dev", expiry=60)
            blob = session.dump(clock[0])
            await store.save_session("dev", blob, 60)
            assert await other.load_session("dev") == blob
            assert await other.load_session("dev") is None  # taken: it is the loader's now
            await store.save_session("dev", blob, 60)
            await store.delete_session("dev")
            assert await other.load_session("dev") is None

            await store.set_owner("dev", "node-a")
            assert await other.get_owner("dev") == "node-a"
            await other.release_owner("dev", "node-b")  # not the owner: no effect
            assert await store.get_owner("dev") == "node-a"
            await other.release_owner("dev", "node-a")
            assert await store.get_owner("dev") is None

            # What a cluster keeps: records, queues, wills, heartbeats, locks.
            await store.set_record("dev", b"rec")
            assert await other.get_record("dev") == b"rec"
            await store.set_record("dev", None)
            assert await other.get_record("dev") is None
            assert await store.push_queued("dev", b"1", 2, 60) is True
            assert await store.push_queued("dev", b"2", 2, None) is True
            assert await store.push_queued("dev", b"3", 2, None) is False  # bounded
            assert await other.take_queued("dev") == [b"1", b"2"]
            assert await other.take_queued("dev") == []
            await store.set_owner("dev", "node-a")
            assert await other.node_clients("node-a") == ["dev"]
            await store.set_will("node-a", "dev", b"will")
            assert await other.wills("node-a") == {"dev": b"will"}
            await store.heartbeat("node-a", 30)
            await store.heartbeat("node-b", 0.001)
            await asyncio.sleep(0.01)
            assert await other.nodes() == {"node-a": True, "node-b": False}
            assert await other.alive("node-a") and not await other.alive("node-b")
            assert await store.lock("adopt:node-b", "node-a", 30) is True
            assert await other.lock("adopt:node-b", "node-c", 30) is False
            await other.forget_node("node-a")
            assert await store.wills("node-a") == {} and await store.node_clients("node-a") == []
            assert "node-a" not in await store.nodes()
            await store.release_owner("dev", "node-a")

            # A broker on the Redis store keeps absent sessions there when it stops, and a new
            # broker (another process, after a restart) resumes them.
            broker = Broker(reactor, loop, name="t", store=store, clock=lambda: clock[0])
            from tests.unit.mqtt.broker_helpers import FakeConn

            dev = FakeConn(broker, "dev", clean_start=False, expiry=600)
            assert await dev.link.open_session() is False
            dev.link.accepted()
            dev.subscribe(Subscription("cmd/#", 1))
            dev.close()
            await broker.stop()
            store = RedisStore(url, name="t", loop=loop, clock=lambda: clock[0])
            again_broker = Broker(reactor, loop, name="t", store=store, clock=lambda: clock[0])
            back = FakeConn(again_broker, "dev", clean_start=False, expiry=600)
            assert await back.link.open_session() is True
            back.link.accepted()
            pub = FakeConn(again_broker, "pub")
            await pub.link.open_session()
            pub.link.accepted()
            reason, pending = pub.link.publish_now("cmd/x", b"resumed", 1, True)
            await pending
            again_broker.flush()
            assert back.topics() == [("cmd/x", b"resumed")], back.received
            assert [load_message(d).payload for d in await other.match_retained("cmd/#")] == [b"resumed"]
            await store.flush()
            await again_broker.stop()
        finally:
            await other.close()

    def finished(task: asyncio.Task[None]) -> None:
        result.append(task.exception())
        reactor.stop()

    reactor.callWhenRunning(lambda: asyncio.ensure_future(checks(), loop=loop).add_done_callback(finished))
    reactor.run()
    if result and result[0] is not None:
        raise result[0]
    print("OK")


if __name__ == "__main__":
    main(sys.argv[1])
