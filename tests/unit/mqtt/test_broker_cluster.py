"""Two broker nodes on one in-memory channel layer and one store act as one broker.

This is the cross-process design (see ``gateway/protocols/mqtt/broker/cluster.py``) exercised in
one process: the nodes only talk through the channel layer API and the store, exactly as two
daemons would through the Redis layer and the Redis store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.testing import MemoryReactorClock

from gateway.layers import InMemoryChannelLayer
from gateway.protocols.mqtt import Subscription
from gateway.protocols.mqtt.broker import Broker, Cluster, MemoryStore
from tests.unit.mqtt.broker_helpers import EPOCH, FakeConn


async def settle(rounds: int = 30) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def connect(conn: FakeConn) -> bool:
    present = await conn.link.open_session()
    conn.resumed = conn.link.resume_state()
    conn.link.accepted()
    return bool(present)


def run(scenario: Callable[[Broker, Broker, Any], Awaitable[None]], **options: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        reactor = MemoryReactorClock()
        layer = InMemoryChannelLayer()
        store = MemoryStore(lambda: EPOCH + reactor.seconds())
        nodes = []
        for _ in range(2):
            broker = Broker(reactor, loop, name="one", store=store, clock=lambda: EPOCH + reactor.seconds())
            Cluster(broker, layer, **options)
            await broker.start()
            nodes.append(broker)
        await settle()
        try:
            await scenario(nodes[0], nodes[1], store)
        finally:
            for broker in nodes:
                await broker.stop()

    asyncio.run(main())


def test_publish_reaches_subscribers_on_every_node() -> None:
    async def scenario(a: Broker, b: Broker, store: Any) -> None:
        on_a, on_b = FakeConn(a, "sa"), FakeConn(b, "sb")
        await connect(on_a)
        await connect(on_b)
        on_a.subscribe("t/#")
        on_b.subscribe("t/#")
        pub = FakeConn(a, "pub")
        await connect(pub)
        pub.publish("t/1", b"from-a")
        other = FakeConn(b, "pub2")
        await connect(other)
        other.publish("t/2", b"from-b")
        await settle()
        # Once each (the origin node does not get its own broadcast back); the order of two
        # publishers' messages is not defined.
        assert sorted(on_a.topics()) == [("t/1", b"from-a"), ("t/2", b"from-b")]
        assert sorted(on_b.topics()) == [("t/1", b"from-a"), ("t/2", b"from-b")]

    run(scenario)


def test_retained_messages_are_shared() -> None:
    async def scenario(a: Broker, b: Broker, store: Any) -> None:
        pub = FakeConn(a, "pub")
        await connect(pub)
        pub.publish("r/1", b"kept", qos=1, retain=True)
        await settle()  # (a publish still in flight would also reach a new subscriber live)
        sub = FakeConn(b, "sub")
        await connect(sub)
        sub.subscribe("r/#")
        await settle()
        assert sub.topics() == [("r/1", b"kept")] and sub.received[0]["retain"]

    run(scenario)


def test_persistent_session_moves_to_the_node_the_client_returns_to() -> None:
    async def scenario(a: Broker, b: Broker, store: Any) -> None:
        dev = FakeConn(a, "dev", clean_start=False, expiry=600)
        assert await connect(dev) is False
        dev.subscribe(Subscription("cmd/#", 1))
        dev.close()
        pub = FakeConn(b, "pub")
        await connect(pub)
        pub.publish("cmd/1", b"queued-on-a", qos=1)
        await settle()
        assert "dev" in a.sessions and dev.received == []
        back = FakeConn(b, "dev", clean_start=False, expiry=600)
        assert await connect(back) is True
        assert back.topics() == [("cmd/1", b"queued-on-a")]
        assert "dev" not in a.sessions and "dev" in b.sessions
        assert store.owners["dev"] == b.cluster.node
        pub.publish("cmd/2", b"live", qos=1)  # the subscription moved with the session
        await settle()
        assert back.topics()[-1] == ("cmd/2", b"live")
        assert len(back.received) == 2

    run(scenario)


def test_live_connection_is_taken_over_across_nodes() -> None:
    async def scenario(a: Broker, b: Broker, store: Any) -> None:
        first = FakeConn(a, "dev", clean_start=False, expiry=60)
        await connect(first)
        second = FakeConn(b, "dev", clean_start=False, expiry=60)
        assert await connect(second) is True
        assert first.taken_over

    run(scenario)


def test_shared_subscription_delivers_each_message_once_across_nodes() -> None:
    async def scenario(a: Broker, b: Broker, store: Any) -> None:
        members = [FakeConn(a, "m1"), FakeConn(a, "m2"), FakeConn(b, "m3")]
        for member in members:
            await connect(member)
            member.subscribe(Subscription("$share/workers/jobs/#", 1))
        await settle()
        pub = FakeConn(a, "pub")
        await connect(pub)
        for n in range(20):
            pub.publish("jobs/x", str(n).encode(), qos=1)
            await settle(5)
        await settle()
        got = sorted(int(m["payload"]) for member in members for m in member.received)
        assert got == list(range(20))
        assert members[2].received and (members[0].received or members[1].received)

    run(scenario)


def test_a_node_that_starts_later_learns_the_share_groups() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        reactor = MemoryReactorClock()
        layer = InMemoryChannelLayer()
        store = MemoryStore()
        first = Broker(reactor, loop, name="one", store=store)
        Cluster(first, layer)
        await first.start()
        member = FakeConn(first, "m")
        await connect(member)
        member.subscribe(Subscription("$share/g/q", 0))
        await settle()
        late = Broker(reactor, loop, name="one", store=store)
        Cluster(late, layer)
        await late.start()
        await settle()
        pub = FakeConn(late, "p")
        await connect(pub)
        pub.publish("q", b"hello")
        await settle()
        assert member.topics() == [("q", b"hello")]
        await late.stop()
        await first.stop()

    asyncio.run(main())


def test_sessions_saved_by_a_stopping_node_are_picked_up() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        reactor = MemoryReactorClock()
        layer = InMemoryChannelLayer()
        store = MemoryStore()
        old = Broker(reactor, loop, name="one", store=store)
        Cluster(old, layer)
        await old.start()
        dev = FakeConn(old, "dev", clean_start=False, expiry=600)
        await connect(dev)
        dev.subscribe(Subscription("t", 1))
        dev.close()
        node = old.cluster.node
        await old.stop()
        # saved; the owner record stays, for the node that takes over to find it by
        assert "dev" in store.sessions and store.owners["dev"] == node
        new = Broker(reactor, loop, name="one", store=store)
        Cluster(new, layer, takeover_timeout=0.2)
        await new.start()
        back = FakeConn(new, "dev", clean_start=False, expiry=600)
        assert await connect(back) is True
        pub = FakeConn(new, "p")
        await connect(pub)
        pub.publish("t", b"after-restart", qos=1)
        assert back.topics() == [("t", b"after-restart")]
        await new.stop()

    asyncio.run(main())


def _die(broker: Broker) -> None:
    """The node stops without a word (SIGKILL): its tasks and timers end, nothing is saved."""
    cluster = broker.cluster
    for task in list(cluster._tasks):
        task.cancel()
    if cluster._heartbeat is not None and cluster._heartbeat.active():
        cluster._heartbeat.cancel()
    broker.cluster = None
    broker.sessions.clear()


def test_a_dead_node_is_taken_over_by_one_survivor() -> None:
    from gateway.protocols.mqtt import Properties, Will

    async def scenario(a: Broker, b: Broker, store: Any) -> None:
        watcher = FakeConn(b, "watcher")
        await connect(watcher)
        watcher.subscribe(Subscription("wills/#", 1))
        delayed = Will("wills/dev", b"dev gone", 1, properties=Properties(will_delay_interval=30))
        dev = FakeConn(a, "dev", clean_start=False, expiry=600, will=delayed)
        await connect(dev)
        dev.subscribe(Subscription("cmd/#", 1))
        plain = FakeConn(a, "plain", will=Will("wills/plain", b"plain gone", 1))
        await connect(plain)
        await settle()
        dead = a.cluster.node
        assert set(store.node_wills[dead]) == {"dev", "plain"}  # kept while connected
        assert store.records["dev"]  # subscriptions recorded with the SUBACK
        _die(a)
        store.heartbeats[dead] = 0.0  # its heartbeat ran out
        pub = FakeConn(b, "pub")
        await connect(pub)
        pub.publish("cmd/1", b"while-dead", qos=1)  # still broadcast to the dead node's channel
        await settle()
        await asyncio.gather(b.cluster.adopt(dead), b.cluster.adopt(dead))  # one of them works
        await settle()
        assert watcher.topics() == [("wills/plain", b"plain gone")]  # no delay: at once
        assert "dev" in b.sessions and store.owners["dev"] == b.cluster.node
        assert dead not in store.heartbeats and dead not in store.node_wills
        pub.publish("cmd/2", b"after", qos=1)
        await settle()
        assert len(store.queues["dev"]) == 2  # queued in the store for the absent session
        b.reactor.advance(30)  # the Will Delay
        await settle()
        assert watcher.topics()[-1] == ("wills/dev", b"dev gone")
        back = FakeConn(b, "dev", clean_start=False, expiry=600)
        assert await connect(back) is True
        assert back.topics() == [("cmd/1", b"while-dead"), ("cmd/2", b"after")]

    run(scenario, heartbeat_interval=1.0)


def test_a_normal_disconnect_removes_the_will_from_the_store() -> None:
    from gateway.protocols.mqtt import Will

    async def scenario(a: Broker, b: Broker, store: Any) -> None:
        dev = FakeConn(a, "dev", will=Will("wills/dev", b"x", 1))
        await connect(dev)
        assert "dev" in store.node_wills[a.cluster.node]
        dev.close(publish_will=False)
        await settle()
        assert "dev" not in store.node_wills[a.cluster.node]

    run(scenario)
