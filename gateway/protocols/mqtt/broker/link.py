# -*- test-case-name: tests.unit.mqtt.test_broker -*-
"""``BrokerLink``: one client connection's handle on the built-in broker.

The gateway makes one per connection when the listener has a broker. In ``consumer: broker``
mode the gateway drives it itself; in ``consumer: application`` mode the application reaches it
through the scope (``scope["extensions"]["mqtt.broker"]["link"]``, or ``self.broker`` in an
:class:`~gateway.consumers.mqtt.AsyncMqttConsumer`) and decides what to use:

* ``await link.authenticate()`` - the configured users (hashed passwords);
* ``link.may_publish(topic)`` / ``link.may_subscribe(filter)`` - the configured access rules;
* ``await link.open_session()`` - attach the connection to its broker session (takes it over
  from an older connection, resumes it unless Clean Start); returns Session Present. From then
  on the broker delivers matching messages to the client by itself, and every SUBACK /
  UNSUBACK the connection sends (whoever decided it) updates the broker's subscriptions;
* ``await link.publish(topic, payload, qos, retain, properties)`` - publish into the broker as
  this client (access rules checked unless ``check=False``); returns the reason code.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any

from gateway.protocols.mqtt.broker.auth import Authenticator
from gateway.protocols.mqtt.broker.core import Broker, Subscribed
from gateway.protocols.mqtt.broker.session import NEVER_EXPIRES, Message, Session
from gateway.protocols.mqtt.events import SessionState
from gateway.protocols.mqtt.packets import Connect, Subscribe, Subscription
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties
from gateway.protocols.mqtt.reasons import ReasonCode

__all__ = ["BrokerLink"]


class BrokerLink:
    """Ties one connection to the broker (see the module documentation).

    Args:
        broker: the broker.
        auth: the listener's users and access rules.
        conn: the connection (the broker delivers to it).
        connect: the client's CONNECT.
        client_id: the client identifier in use (assigned by the server if the client sent none).
        maximum_qos: the highest QoS the listener grants.
        retain: whether retained messages are supported (else the RETAIN flag is ignored).
    """

    def __init__(
        self, broker: Broker, auth: Authenticator, conn: Any, connect: Connect, client_id: str,
        maximum_qos: int = 2, retain: bool = True,
    ) -> None:
        self.broker = broker
        self.auth = auth
        self.conn = conn
        self.connect = connect
        self.client_id = client_id
        self.username = connect.username
        self.maximum_qos = maximum_qos
        self.retain = retain
        self.session: Session | None = None
        self.ended = False
        level = connect.protocol_level
        if level == 5:
            requested = connect.properties.session_expiry_interval or 0
        else:
            requested = 0 if connect.clean_start else NEVER_EXPIRES  # 3.1.1 Clean Session 0
        #: The Session Expiry Interval granted (the broker may cap it).
        self.expiry = broker.session_expiry(requested)
        #: True when a 5.0 CONNACK must tell the client its expiry was reduced (§3.2.2.3.2).
        self.expiry_changed = level == 5 and self.expiry != requested

    # -- policy -------------------------------------------------------------------------------

    async def authenticate(self, username: str | None = None, password: bytes | None = None) -> bool:
        """Check credentials against the configured users (default: the CONNECT's)."""
        if username is None and password is None:
            username, password = self.connect.username, self.connect.password
        return await self.auth.authenticate(username, password, self.broker.loop)

    def may_publish(self, topic: str) -> bool:
        """Whether the access rules let this client publish to ``topic``."""
        return self.auth.may_publish(self.username, self.client_id, topic)

    def may_subscribe(self, topic_filter: str) -> bool:
        """Whether the access rules let this client subscribe to ``topic_filter``."""
        return self.auth.may_subscribe(self.username, self.client_id, topic_filter)

    def grant(self, subscriptions: Sequence[Subscription | tuple[str, int]]) -> list[int]:
        """SUBACK reason codes for a SUBSCRIBE under the access rules: the granted QoS (at most
        the listener's maximum), or 0x87 Not authorized. Items are :class:`Subscription` or
        ``(topic filter, qos)`` pairs."""
        codes = []
        for sub in subscriptions:
            topic_filter, qos = (sub.topic_filter, sub.qos) if isinstance(sub, Subscription) else sub
            if self.may_subscribe(topic_filter):
                codes.append(min(qos, self.maximum_qos))
            else:
                codes.append(ReasonCode.NOT_AUTHORIZED)
        return codes

    # -- session ------------------------------------------------------------------------------

    async def open_session(self) -> bool:
        """Attach this connection to the client's session; return Session Present."""
        if self.session is not None:
            return self.session.present
        connect = self.connect
        session = await self.broker.open_session(
            self.conn, self.client_id, clean_start=connect.clean_start, expiry=self.expiry,
            level=connect.protocol_level, username=self.username,
        )
        self.session = session
        if self.auth.read_denials_possible:
            self._apply_read_denials(session)
        if self.ended:  # the client left while we waited
            self.broker.connection_closed(session, self.conn, will=None, publish_will=False, state=None)
        return session.present

    def _apply_read_denials(self, session: Session) -> None:
        """A resumed session follows this client's deny rules: its subscriptions skip the
        denied topics, and what waited for it on them is dropped."""
        auth, username, client_id = self.auth, self.username, self.client_id
        for sub in session.subscriptions.values():
            sub.deny = auth.read_denials(username, client_id, sub.filter)
        if session.queue:
            kept = [item for item in session.queue if auth.may_read(username, client_id, item[0].topic)]
            if len(kept) != len(session.queue):
                session.queue.clear()
                session.queue.extend(kept)

    def resume_state(self) -> SessionState | None:
        """The protocol state to resume in ``accept()`` (once), or None."""
        session = self.session
        if session is None or not session.present:
            return None
        state, session.state = session.state, None
        return state

    def accepted(self) -> None:
        """The CONNACK went out: deliver what waited."""
        if self.session is not None:
            self.broker.attach(self.session)

    def subscribed(self, packet: Subscribe, codes: Sequence[int]) -> None:
        """A SUBACK went out: register what it granted, then send retained messages."""
        session = self.session
        if session is None:
            return
        ids = packet.properties.subscription_identifiers
        sub_id = ids[0] if ids else None
        added: list[Subscribed] = []
        auth = self.auth
        for request, code in zip(packet.subscriptions, codes):
            if code < 0x80:
                deny = auth.read_denials(self.username, self.client_id, request.topic_filter)
                added.append(self.broker.subscribe(session, request, code, sub_id, deny))
        if added:
            self.broker.run(self.broker.send_retained(session, added), "retained delivery")

    def unsubscribe_codes(self, topic_filters: Sequence[str]) -> list[int]:
        """UNSUBACK codes: 0x00 for an existing subscription, 0x11 No subscription existed."""
        subs = self.session.subscriptions if self.session is not None else {}
        return [0 if f in subs else ReasonCode.NO_SUBSCRIPTION_EXISTED for f in topic_filters]

    def unsubscribed(self, topic_filters: Sequence[str], codes: Sequence[int] | None) -> None:
        """An UNSUBACK went out: remove the subscriptions it confirmed."""
        session = self.session
        if session is None:
            return
        for index, topic_filter in enumerate(topic_filters):
            if codes is None or index >= len(codes) or codes[index] < 0x80:
                self.broker.unsubscribe(session, topic_filter)

    def closed(self, publish_will: bool, state: SessionState | None, expiry: int | None) -> None:
        """The connection ended (``publish_will``: per §3.1.2.5; ``expiry``: from DISCONNECT)."""
        if self.ended:
            return
        self.ended = True
        session = self.session
        if session is None:
            return
        will = self.connect.will
        if will is not None and not self.may_publish(will.topic):
            will = None  # the access rules apply to the Will Message too
        self.broker.connection_closed(session, self.conn, will=will, publish_will=publish_will, state=state, expiry=expiry)

    # -- messages -----------------------------------------------------------------------------

    def publish_now(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
        properties: Properties = EMPTY_PROPERTIES, *, check: bool = True,
    ) -> tuple[int, Coroutine[Any, Any, None] | None]:
        """Publish as this client without waiting: ``(reason code, retained-store update)``.

        The caller must run the returned coroutine (if any) and call ``broker.flush()``.
        """
        if check and self.auth.rules and not self.may_publish(topic):
            return ReasonCode.NOT_AUTHORIZED, None
        broker = self.broker
        retain = retain and self.retain
        message = Message.from_publish(topic, payload, qos, retain, properties, self.client_id, broker.clock())
        return ReasonCode.SUCCESS, broker.publish(message)

    async def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
        properties: Properties | dict[str, Any] | None = None, *, check: bool = True,
    ) -> int:
        """Publish into the broker as this client; return the PUBACK reason code."""
        if isinstance(properties, dict):
            from gateway.protocols.mqtt.asgi import properties_from_dict

            properties = properties_from_dict(properties)
        reason, pending = self.publish_now(
            topic, payload, qos, retain, properties or EMPTY_PROPERTIES, check=check
        )
        self.broker.flush()
        if pending is not None:
            await pending
        return reason
