"""``MqttCommunicator``: drive an MQTT application (an ``mqtt`` scope) without a server.

It plays the gateway's side of ``docs/asgi-mqtt.md``: it builds the connection scope, sends
client events and reads the application's answers. It follows the daemon's own rules, through
the same pure objects (:class:`~gateway.protocols.mqtt.asgi.ScopeState` and its
:class:`~gateway.protocols.mqtt.asgi.HandlingRules`): a message sent out of order raises the
same :class:`~gateway.protocols.errors.LocalProtocolError` in the application, and "handled"
means what the gateway means by it: the application asked for the next event (or answered with
``mqtt.puback`` / ``mqtt.suback`` / ``mqtt.unsuback``). Answers are what :meth:`publish`,
:meth:`subscribe` and :meth:`unsubscribe` return; :meth:`receive_output` gives the rest (the
CONNECT's answer, messages for the client, ``mqtt.close``, ``mqtt.auth``)::

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
from typing import TYPE_CHECKING, Any

from gateway.asgi.app import ASGIApp, Message as AsgiMessage
from gateway.protocols.mqtt.asgi import (
    Accept, AckPublish, AnswerSubscribe, AnswerUnsubscribe, Close, Refuse, ScopeState, connect_event, mqtt_scope,
    properties_from_dict, properties_to_dict,
)
from gateway.protocols.mqtt.broker.session import Message
from gateway.protocols.mqtt.packets import Connect, Subscribe, Subscription, Unsubscribe, Will
from gateway.protocols.mqtt.properties import Properties
from gateway.testing.application import ProtocolCommunicator, UnexpectedMessage

if TYPE_CHECKING:
    from gateway.protocols.mqtt.broker.auth import Authenticator
    from gateway.protocols.mqtt.broker.core import Broker
    from gateway.protocols.mqtt.broker.link import BrokerLink

__all__ = ["MqttCommunicator"]

#: What an answer is recorded under: (kind, packet id).
_PUBACK, _SUBACK, _UNSUBACK = "puback", "suback", "unsuback"


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
        #: The daemon's rules for this connection: what the application may send, what it owes.
        self.state: ScopeState[Subscribe | Unsubscribe] = ScopeState()
        self.rules = self.state.rules
        #: Answers by (kind, packet id): a reason code, or the list of reason codes.
        self.answers: dict[tuple[str, int], Any] = {}
        self._changed: asyncio.Event | None = None
        self._events = 0  # events queued for the application
        self._asks = 0  # receive() calls of the application
        self._packet_id = 0
        self.link: BrokerLink | None = None
        if broker is not None:
            from gateway.protocols.mqtt.broker.auth import Authenticator
            from gateway.protocols.mqtt.broker.link import BrokerLink

            self.link = BrokerLink(broker, auth or Authenticator(), _Recorder(self), self.connect_packet, client_id)
        super().__init__(application, scope_overrides=scope_overrides, link=self.link)

    def build_scope(self, *, link: BrokerLink | None = None) -> dict[str, Any]:
        """The ``mqtt`` scope the gateway would build for this CONNECT."""
        connect = self.connect_packet
        scope: Any = mqtt_scope(
            connect, client_id=connect.client_id, assigned=False, transport="tcp",
            client=("127.0.0.1", 50000), server=("127.0.0.1", 1883), tls=None, state=None, link=link,
        )
        return scope

    # -- plumbing: the application's receive and send, under the daemon's rules ----------------

    @property
    def future(self) -> asyncio.Task[None]:
        if self._future is None:
            # A fresh context, as asgiref's communicator: the test's context variables stay out.
            self._future = asyncio.create_task(self._run(), context=contextvars.Context())
        return self._future

    async def _run(self) -> None:
        await self.application(self.scope, self._receive, self._send)

    def _record(self, key: tuple[str, int], value: Any) -> None:
        self.answers[key] = value
        if self._changed is not None:
            self._changed.set()

    async def _receive(self) -> AsgiMessage:
        """The application asks for its next event: the one it held was handled."""
        answer = self.rules.next_asked()
        if answer is not None:
            self._answered(answer)
        self._asks += 1
        if self._changed is not None:
            self._changed.set()
        message: AsgiMessage = await self.input_queue.get()
        return message

    def _answered(self, action: Any) -> None:
        kind = action.__class__
        link = self.link
        if kind is AckPublish:
            self._record((_PUBACK, action.packet_id), action.reason_code)
        elif kind is AnswerSubscribe:
            if link is not None:
                link.subscribed(action.request, action.reason_codes)
            self._record((_SUBACK, action.packet_id), action.reason_codes)
        elif kind is AnswerUnsubscribe:
            if link is not None:
                link.unsubscribed(action.request.topic_filters, action.reason_codes)
            self._record((_UNSUBACK, action.packet_id), action.reason_codes)

    async def _send(self, message: AsgiMessage) -> None:
        """The application's send: checked as the daemon checks it, then carried out."""
        action = self.state.app_send(message)
        kind = action.__class__
        if kind is AckPublish or kind is AnswerSubscribe or kind is AnswerUnsubscribe:
            self._answered(action)
            return
        link = self.link
        if link is not None:
            if kind is Accept:
                link.accepted()
            elif (kind is Refuse or kind is Close) and link.session is not None:
                link.closed(False, None, None)
        await self.output_queue.put(message)

    async def _queue(self, message: dict[str, Any]) -> None:
        self._events += 1
        await self.send_input(message)

    async def _answer(self, key: tuple[str, int], timeout: float) -> Any:
        """Wait for the answer recorded under ``key`` (the application ending first raises)."""
        await self._until(lambda: key in self.answers, key[0], timeout)
        return self.answers.pop(key)

    async def _until(self, condition: Any, what: str, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            if self.future.done():
                self.future.result()
                raise UnexpectedMessage(f"the application ended before handling the event ({what})")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"the application did not handle the event in {timeout}s ({what})")
            changed = self._changed = asyncio.Event()
            ended: asyncio.Future[None] = asyncio.ensure_future(asyncio.shield(self.future))
            waiter: asyncio.Future[Any] = asyncio.ensure_future(changed.wait())
            await asyncio.wait([waiter, ended], timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            ended.cancel()

    def _next_id(self) -> int:
        self._packet_id = self._packet_id % 65535 + 1
        return self._packet_id

    # -- client actions -----------------------------------------------------------------------

    async def connect(self, timeout: float = 1) -> tuple[bool, Any]:
        """Send ``mqtt.connect``; ``(True, session_present)`` or ``(False, reason_code)``."""
        self.rules.put_other()
        await self._queue(connect_event(self.connect_packet))
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
        packet_id = self._next_id() if qos else None
        self.rules.put_publish(packet_id)
        await self._queue({
            "type": "mqtt.publish", "topic": topic, "payload": payload, "qos": qos, "retain": retain,
            "dup": False, "packet_id": packet_id,
            "properties": properties_to_dict(properties_from_dict(properties)),
        })
        if packet_id is None:
            handled = self._events + 1  # asking again after this event means it was handled
            await self._until(lambda: self._asks >= handled, "publish", timeout)
            return None
        return int(await self._answer((_PUBACK, packet_id), timeout))

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
        packet_id = self._next_id()
        request = Subscribe(packet_id, tuple(
            Subscription(e["topic_filter"], e["qos"], e["no_local"], e["retain_as_published"], e["retain_handling"])
            for e in entries
        ), properties_from_dict(properties))
        self.rules.put_subscribe(packet_id, request)
        await self._queue({"type": "mqtt.subscribe", "packet_id": packet_id,
                           "subscriptions": entries, "properties": properties or {}})
        return [int(code) for code in await self._answer((_SUBACK, packet_id), timeout)]

    async def unsubscribe(self, topic_filters: list[str], timeout: float = 1) -> list[int]:
        """Unsubscribe; return the UNSUBACK reason codes (0x00 each when the application
        confirmed without codes)."""
        packet_id = self._next_id()
        self.rules.put_unsubscribe(packet_id, Unsubscribe(packet_id, tuple(topic_filters)))
        await self._queue({"type": "mqtt.unsubscribe", "packet_id": packet_id,
                           "topic_filters": list(topic_filters), "properties": {}})
        codes = await self._answer((_UNSUBACK, packet_id), timeout)
        return [0] * len(topic_filters) if codes is None else [int(code) for code in codes]

    async def receive_publish(self, timeout: float = 1) -> AsgiMessage:
        """The next ``mqtt.publish`` the application sent to the client."""
        return await self.expect("mqtt.publish", timeout)

    async def disconnect(self, reason_code: int = 0, timeout: float = 1) -> None:
        """The client disconnects: send ``mqtt.disconnect`` and wait for the application."""
        self.state.closed()
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

    def deliver(self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties,
                wire: tuple[bytes, bytes] | None = None) -> bool:
        self.communicator.output_queue.put_nowait({
            "type": "mqtt.publish", "topic": topic, "payload": payload, "qos": qos, "retain": retain,
            "properties": properties_to_dict(properties),
        })
        return True

    def deliver_qos0(self, message: Message, retain: bool) -> bool:
        return self.deliver(message.topic, message.payload, 0, retain, message.properties)

    def flush_output(self) -> None:
        pass

    def take_over(self) -> None:
        self.taken_over = True
        link = self.communicator.link
        if link is not None:
            link.closed(True, None, None)
