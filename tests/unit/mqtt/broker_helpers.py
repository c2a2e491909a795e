"""A fake connection that drives a :class:`BrokerLink` the way the adapter does."""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.internet.testing import MemoryReactorClock

from gateway.protocols.mqtt import Connect, Properties, SessionState, Subscribe, Subscription, Will
from gateway.protocols.mqtt.broker import Authenticator, Broker, BrokerLink
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES

#: Wall-clock origin of the fake clock (message expiry compares wall-clock times).
EPOCH = 1_700_000_000.0


def make_broker(loop: asyncio.AbstractEventLoop, reactor: MemoryReactorClock | None = None, **options: Any) -> Broker:
    """A broker on a fake clock (``broker.reactor.advance(seconds)`` moves time)."""
    clock = reactor or MemoryReactorClock()
    return Broker(clock, loop, clock=lambda: EPOCH + clock.seconds(), **options)


def finish(coro: Any) -> Any:
    """Run a broker coroutine that must complete without waiting (the memory store)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("the coroutine waited for something")


class FakeConn:
    """A client connection as the broker sees it: deliveries are recorded."""

    def __init__(
        self, broker: Broker, client_id: str, *, clean_start: bool = True, expiry: int = 0,
        level: int = 5, will: Will | None = None, username: str | None = None,
        auth: Authenticator | None = None,
    ) -> None:
        self.broker = broker
        self.level = level
        props = Properties(session_expiry_interval=expiry) if level == 5 and expiry else EMPTY_PROPERTIES
        connect = Connect(client_id, level, clean_start, 60, username, None, will, props)
        self.link = BrokerLink(broker, auth or Authenticator(), self, connect, client_id)
        self.received: list[dict[str, Any]] = []
        self.taken_over = False
        self.resumed: SessionState | None = None
        self.open_state: SessionState = SessionState()
        self.acks: list[asyncio.Future[Any]] = []  #: (cluster) publishes waiting for the broadcast

    # -- the broker's interface -----------------------------------------------------------

    def deliver(self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties, wire: Any = None) -> bool:
        self.received.append({"topic": topic, "payload": payload, "qos": qos, "retain": retain, "properties": properties})
        return True

    def deliver_qos0(self, message: Any, retain: bool) -> bool:
        return self.deliver(message.topic, message.payload, 0, retain, message.properties)

    def flush_output(self) -> None:
        pass

    def take_over(self) -> None:
        self.taken_over = True
        self.close(publish_will=True)

    # -- what a client does ---------------------------------------------------------------

    def connect(self) -> bool:
        """Open the session and accept (CONNACK); return Session Present."""
        present = finish(self.link.open_session())
        self.resumed = self.link.resume_state()
        self.link.accepted()
        return bool(present)

    def subscribe(self, *subs: Subscription | str, sub_id: int | None = None) -> list[int]:
        requests = tuple(Subscription(s, 2) if isinstance(s, str) else s for s in subs)
        props = Properties(subscription_identifiers=(sub_id,)) if sub_id else EMPTY_PROPERTIES
        packet = Subscribe(1, requests, props)
        codes = self.link.grant(requests)
        self.link.subscribed(packet, codes)
        return codes

    def unsubscribe(self, *filters: str) -> list[int]:
        codes = self.link.unsubscribe_codes(filters)
        self.link.unsubscribed(filters, codes)
        return codes

    def publish(self, topic: str, payload: bytes = b"x", qos: int = 0, retain: bool = False,
                properties: Properties = EMPTY_PROPERTIES) -> int:
        reason, pending = self.link.publish_now(topic, payload, qos, retain, properties)
        if pending is not None:
            if self.broker.cluster is not None:  # acknowledged once the broadcast went out
                self.acks.append(asyncio.ensure_future(pending))
            else:
                finish(pending)
        self.broker.flush()
        return int(reason)

    def close(self, publish_will: bool = False, expiry: int | None = None) -> None:
        """The connection ends (``publish_will``: an abnormal end)."""
        self.link.closed(publish_will, self.open_state, expiry)

    def topics(self) -> list[tuple[str, bytes]]:
        return [(m["topic"], m["payload"]) for m in self.received]
