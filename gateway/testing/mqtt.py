"""``MqttCommunicator``: drive an MQTT application (an ``mqtt`` scope) without a server.

It plays the gateway's side of ``docs/asgi-mqtt.md``: it builds the connection scope, sends
client events and reads the application's answers. "Handled" means what the gateway means by
it: the application asked for the next event (or answered with ``mqtt.puback``)::

    comm = MqttCommunicator(Temperatures.as_asgi(), client_id="sensor-1", username="alice")
    assert await comm.connect() == (True, False)
    assert await comm.publish("sensors/1/temperature", b"21.5", qos=1) == 0   # acknowledged
    assert await comm.subscribe([("alerts/#", 1)]) == [1]
    message = await comm.receive_publish()       # what the application sent to the client
    await comm.disconnect()

Pass ``broker=`` (a :class:`~gateway.protocols.mqtt.broker.core.Broker`) to test an application
that uses the built-in broker: the communicator gives the scope a broker link (``auth=`` for
users and access rules), applies ``mqtt.accept`` / ``mqtt.suback`` / ``mqtt.unsuback`` to it as
the gateway does, and the messages the broker delivers to this client come out of
:meth:`~MqttCommunicator.receive_publish` like the application's own.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from typing import TYPE_CHECKING, Any

from gateway.protocols.mqtt.asgi import connect_event, mqtt_scope, properties_from_dict, properties_to_dict
from gateway.protocols.mqtt.packets import Connect, Subscribe, Subscription, Will
from gateway.asgi.app import ASGIApp, Message
from gateway.testing.application import ProtocolCommunicator, UnexpectedMessage

if TYPE_CHECKING:
    from gateway.protocols.mqtt.broker.auth import Authenticator
    from gateway.protocols.mqtt.broker.core import Broker
    from gateway.protocols.mqtt.broker.link import BrokerLink

__all__ = ["MqttCommunicator"]


class MqttCommunicator(ProtocolCommunicator):
    """One simulated MQTT client connection (see the module documentation).

    Args:
        application: the ASGI application.
        client_id, protocol_level, clean_start, keep_alive, username, password: the CONNECT.
        will: ``{"topic", "payload", "qos", "retain", "properties"}`` or None.
        properties: the CONNECT properties as a dict.
        broker: a :class:`~gateway.protocols.mqtt.broker.core.Broker` to connect to.
        auth: its :class:`~gateway.protocols.mqtt.broker.auth.Authenticator` (default: open).
        scope_overrides: extra or replaced scope keys.
    """

    scope_type = "mqtt"

    def __init__(
        self, application: ASGIApp, client_id: str = "test-client", *, protocol_level: int = 5,
        clean_start: bool = True, keep_alive: int = 60, username: str | None = None,
        password: bytes | None = None, will: dict[str, Any] | None = None,
        properties: dict[str, Any] | None = None, broker: Broker | None = None, auth: Authenticator | None = None,
        scope_overrides: dict[str, Any] | None = None,
    ) -> None:
        will_packet = None
        if will is not None:
            will_packet = Will(will["topic"], will.get("payload", b""), will.get("qos", 0),
                               will.get("retain", False), properties_from_dict(will.get("properties")))
        self.connect_packet = Connect(
            client_id, protocol_level, clean_start, keep_alive, username, password, will_packet,
            properties_from_dict(properties),
        )
        self._sent = 0
        self._asked = 0
        self._asked_event: asyncio.Event | None = None
        self._stash: deque[Message] = deque()
        self._packet_id = 0
        self._requests: dict[int, Subscribe | list[str]] = {}
        self.link: BrokerLink | None = None
        if broker is not None:
            from gateway.protocols.mqtt.broker.auth import Authenticator
            from gateway.protocols.mqtt.broker.link import BrokerLink

            self.link = BrokerLink(broker, auth or Authenticator(), _Recorder(self), self.connect_packet, client_id)
        super().__init__(application, scope_overrides=scope_overrides, link=self.link)

    def build_scope(self, *, link: BrokerLink | None = None) -> dict[str, Any]:
        """The ``mqtt`` scope the gateway would build for this CONNECT."""
        connect = self.connect_packet
        return mqtt_scope(
            connect, client_id=connect.client_id, assigned=False, transport="tcp",
            client=("127.0.0.1", 50000), server=("127.0.0.1", 1883), tls=None, state=None, link=link,
        )

    # -- plumbing: know when the application asks for its next event -------------------------

    @property
    def future(self) -> asyncio.Task[None]:
        if self._future is None:
            # A fresh context, as asgiref's communicator: the test's context variables stay out.
            self._future = asyncio.create_task(self._run(), context=contextvars.Context())
        return self._future

    async def _run(self) -> None:
        await self.application(self.scope, self._receive, self._send)

    async def _send(self, message: Message) -> None:
        """The application's send: the gateway's side effects on the broker link, then out."""
        link = self.link
        kind = message.get("type")
        if link is not None:
            if kind == "mqtt.accept":
                link.accepted()
            elif kind == "mqtt.suback":
                request = self._requests.pop(int(message.get("packet_id") or 0), None)
                if isinstance(request, Subscribe):
                    link.subscribed(request, list(message["reason_codes"]))
            elif kind == "mqtt.unsuback":
                request = self._requests.pop(int(message.get("packet_id") or 0), None)
                if isinstance(request, list):
                    link.unsubscribed(request, message.get("reason_codes"))
            elif kind == "mqtt.close" and link.session is not None:
                link.closed(False, None, None)
        await self.output_queue.put(message)

    async def _receive(self) -> Message:
        self._asked += 1
        if self._asked_event is not None:
            self._asked_event.set()
        return await self.input_queue.get()

    async def send_input(self, message: Message) -> None:
        """Send one event to the application."""
        self._sent += 1
        await super().send_input(message)

    async def receive_output(self, timeout: float = 1) -> Message:
        """The next message the application sent (messages set aside while waiting first)."""
        if self._stash:
            return self._stash.popleft()
        return await super().receive_output(timeout)

    async def _handled_or(self, wanted: str, timeout: float) -> Message | None:
        """Wait until the last event sent was handled (None) or ``wanted`` comes out."""
        index = self._sent
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while not self.output_queue.empty():  # what was sent before the next ask
                self._stash.append(self.output_queue.get_nowait())
            for position, message in enumerate(self._stash):
                if message.get("type") == wanted:
                    del self._stash[position]
                    return message
            if self._asked > index:
                return None
            if self.future.done():
                self.future.result()
                raise UnexpectedMessage(f"the application ended before handling the event (waiting for {wanted})")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"the application neither handled the event nor sent {wanted}")
            self._asked_event = asyncio.Event()
            getter = asyncio.ensure_future(self.output_queue.get())
            asker = asyncio.ensure_future(self._asked_event.wait())
            done, _ = await asyncio.wait({getter, asker}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            asker.cancel()
            if getter in done:
                self._stash.append(getter.result())
            else:
                getter.cancel()
                try:
                    await getter
                except asyncio.CancelledError:
                    pass

    # -- client actions -----------------------------------------------------------------------

    async def connect(self, timeout: float = 1) -> tuple[bool, Any]:
        """Send ``mqtt.connect``; ``(True, session_present)`` or ``(False, reason_code)``."""
        await self.send_input(connect_event(self.connect_packet))
        answer = await self.expect(("mqtt.accept", "mqtt.close"), timeout)
        if answer["type"] == "mqtt.close":
            return False, answer.get("reason_code", 0x87)
        return True, bool(answer.get("session_present", False))

    async def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False,
                      properties: dict[str, Any] | None = None, timeout: float = 1) -> int | None:
        """Publish as the client; wait until it was handled. Returns the acknowledgement's
        reason code for QoS 1/2 (0 unless the application refused with ``mqtt.puback``)."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        packet_id = None
        if qos:
            self._packet_id = self._packet_id % 65535 + 1
            packet_id = self._packet_id
        await self.send_input({
            "type": "mqtt.publish", "topic": topic, "payload": payload, "qos": qos, "retain": retain,
            "dup": False, "packet_id": packet_id, "properties": properties or {},
        })
        answer = await self._handled_or("mqtt.puback", timeout)
        if not qos:
            return None
        return 0 if answer is None else int(answer.get("reason_code", 0))

    async def subscribe(self, subscriptions: list[tuple[str, int] | str | dict[str, Any]],
                        properties: dict[str, Any] | None = None, timeout: float = 1) -> list[int]:
        """Subscribe; return the SUBACK reason codes (granted QoS or >= 0x80)."""
        entries = []
        for sub in subscriptions:
            if isinstance(sub, str):
                sub = (sub, 0)
            if isinstance(sub, tuple):
                sub = {"topic_filter": sub[0], "qos": sub[1]}
            topic_filter = sub["topic_filter"]
            share, inner = None, topic_filter
            if topic_filter.startswith("$share/"):
                share, _, inner = topic_filter[7:].partition("/")
            entries.append({"filter": inner, "share_name": share, "no_local": False,
                            "retain_as_published": False, "retain_handling": 0, **sub})
        self._packet_id = self._packet_id % 65535 + 1
        self._requests[self._packet_id] = Subscribe(self._packet_id, tuple(
            Subscription(e["topic_filter"], e["qos"], e["no_local"], e["retain_as_published"], e["retain_handling"])
            for e in entries
        ))
        await self.send_input({"type": "mqtt.subscribe", "packet_id": self._packet_id,
                               "subscriptions": entries, "properties": properties or {}})
        answer = await self._handled_or("mqtt.suback", timeout)
        if answer is None:
            return [0x80] * len(entries)  # the gateway refuses an unanswered SUBSCRIBE
        return [int(code) for code in answer["reason_codes"]]

    async def unsubscribe(self, topic_filters: list[str], timeout: float = 1) -> list[int]:
        """Unsubscribe; return the UNSUBACK reason codes."""
        self._packet_id = self._packet_id % 65535 + 1
        self._requests[self._packet_id] = list(topic_filters)
        await self.send_input({"type": "mqtt.unsubscribe", "packet_id": self._packet_id,
                               "topic_filters": list(topic_filters), "properties": {}})
        answer = await self._handled_or("mqtt.unsuback", timeout)
        if answer is None or answer.get("reason_codes") is None:
            return [0] * len(topic_filters)
        return [int(code) for code in answer["reason_codes"]]

    async def receive_publish(self, timeout: float = 1) -> Message:
        """The next ``mqtt.publish`` the application sent to the client."""
        return await self.expect("mqtt.publish", timeout)

    async def disconnect(self, reason_code: int = 0, timeout: float = 1) -> None:
        """The client disconnects: send ``mqtt.disconnect`` and wait for the application."""
        if self.link is not None:
            self.link.closed(reason_code != 0, None, None)
        await self.send_input({"type": "mqtt.disconnect", "reason_code": reason_code, "by_client": True,
                               "publish_will": reason_code != 0, "properties": {}})
        await self.wait(timeout)


class _Recorder:
    """The communicator's stand-in connection for the broker: deliveries become outputs."""

    level = 5

    def __init__(self, communicator: MqttCommunicator) -> None:
        self.communicator = communicator
        self.taken_over = False

    def deliver(self, topic: str, payload: bytes, qos: int, retain: bool, properties: Any, wire: Any = None) -> bool:
        self.communicator.output_queue.put_nowait({
            "type": "mqtt.publish", "topic": topic, "payload": payload, "qos": qos, "retain": retain,
            "properties": properties_to_dict(properties),
        })
        return True

    def deliver_qos0(self, message: Any, retain: bool) -> bool:
        return self.deliver(message.topic, message.payload, 0, retain, message.properties)

    def flush_output(self) -> None:
        pass

    def take_over(self) -> None:
        self.taken_over = True
        link = self.communicator.link
        if link is not None:
            link.closed(True, None, None)
