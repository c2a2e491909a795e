# -*- test-case-name: tests.unit.mqtt.test_asgi -*-
"""The ASGI ``mqtt`` mapping, pure: the connection scope, the events, and the rules of what
the application sends and when.

See ``docs/asgi-mqtt.md`` for the specification (version :data:`SPEC_VERSION`). MQTT 5.0
properties travel as dictionaries keyed by :class:`~.properties.Properties` field names
(``{"content_type": "text/plain", "user_properties": [["k", "v"]]}``); absent properties are
left out.

* :class:`ScopeState` is the message-order state machine of one connection
  (:class:`~gateway.asgi.instance.MessageOrder`): ``mqtt.accept`` / ``mqtt.close`` answer the
  CONNECT once; ``mqtt.publish``, ``mqtt.suback``, ``mqtt.unsuback`` and ``mqtt.puback`` come
  after ``mqtt.accept``; ``mqtt.auth`` any time; nothing after ``mqtt.close``. It returns the
  action to carry out (:class:`Accept`, :class:`Refuse`, :class:`Close`, :class:`Deliver`,
  :class:`AnswerSubscribe`, :class:`AnswerUnsubscribe`, :class:`AckPublish`, :class:`AuthStep`), with the properties
  converted once.
* :class:`HandlingRules` are the "acknowledged only once handled" rules: a QoS 1/2 publish is
  acknowledged when the application asks for its next event, or earlier with ``mqtt.puback``;
  a SUBSCRIBE the application moves past without ``mqtt.suback`` is refused (0x80), an
  UNSUBSCRIBE without ``mqtt.unsuback`` is confirmed. The daemon (:mod:`.adapter`) and the test
  communicator (:mod:`gateway.testing.mqtt`) both follow them through this one object.
"""

from __future__ import annotations

from collections import deque
from dataclasses import fields
from typing import Any, Generic, TypeVar

from gateway.asgi.types import MqttScope
from gateway.asgi.instance import ClientDisconnected
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.mqtt.packets import Connect, Publish, Subscribe, Unsubscribe, Will
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties
from gateway.protocols.mqtt.reasons import ReasonCode
from gateway.protocols.mqtt.topics import parse_shared_subscription

__all__ = [
    "SPEC_VERSION",
    "Accept",
    "AuthStep",
    "Close",
    "Deliver",
    "HandlingRules",
    "PropertiesDict",
    "AckPublish",
    "Refuse",
    "ScopeState",
    "AnswerSubscribe",
    "AnswerUnsubscribe",
    "broker_link",
    "connect_event",
    "disconnect_event",
    "mqtt_scope",
    "properties_from_dict",
    "properties_to_dict",
    "publish_event",
    "subscribe_event",
    "unsubscribe_event",
]

#: Version of the ``mqtt`` ASGI mapping (``scope["asgi"]["spec_version"]``).
SPEC_VERSION = "1.0"

_FIELDS = {f.name for f in fields(Properties)}
_PAIRS = "user_properties"
_TUPLES = ("subscription_identifiers",)
_PROTOCOL_VERSIONS = {4: "3.1.1", 5: "5.0"}


class PropertiesDict(dict[str, Any]):
    """The properties of an event as the application sees them: a plain ``dict``, which also
    remembers the :class:`Properties` it was made from, so that handing it back unchanged (a
    consumer forwarding a publish into the broker) costs no conversion. Any change made to the
    dict itself forgets the original; the two lists inside (``user_properties``,
    ``subscription_identifiers``) are compared with it when the dict comes back.
    """

    __slots__ = ("source",)

    source: Properties | None

    def __setitem__(self, key: str, value: Any) -> None:
        self.source = None
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.source = None
        super().__delitem__(key)

    def __ior__(self, other: Any) -> PropertiesDict:  # type: ignore[override,misc]
        self.source = None
        return super().__ior__(other)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.source = None
        super().update(*args, **kwargs)

    def pop(self, *args: Any) -> Any:
        self.source = None
        return super().pop(*args)

    def popitem(self) -> tuple[str, Any]:
        self.source = None
        return super().popitem()

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.source = None
        return super().setdefault(key, default)

    def clear(self) -> None:
        self.source = None
        super().clear()

    def unchanged_source(self) -> Properties | None:
        """The original :class:`Properties` if this dict still says exactly that, else None."""
        source = self.source
        if source is None:
            return None
        pairs = self.get(_PAIRS)
        if pairs is not None and (
            len(pairs) != len(source.user_properties)
            or any(list(pair) != [key, text] for pair, (key, text) in zip(pairs, source.user_properties))
        ):
            return None
        ids = self.get("subscription_identifiers")
        if ids is not None and tuple(ids) != source.subscription_identifiers:
            return None
        return source


def properties_to_dict(properties: Properties) -> dict[str, Any]:
    """The set properties as a dict (``user_properties`` as a list of ``[name, value]``): a
    :class:`PropertiesDict` that remembers ``properties`` (no properties: a plain empty dict,
    which converts back for free)."""
    if properties is EMPTY_PROPERTIES:
        return {}
    result = PropertiesDict()
    result.source = properties
    for name in _FIELDS:
        value = getattr(properties, name)
        if value is None or value == ():
            continue
        if name == _PAIRS:
            value = [[key, text] for key, text in value]
        elif name in _TUPLES:
            value = list(value)
        dict.__setitem__(result, name, value)
    return result


def properties_from_dict(values: dict[str, Any] | Properties | None) -> Properties:
    """A :class:`Properties` from an application's dict (unknown names raise ValueError).

    A :class:`PropertiesDict` handed back unchanged gives its original back, unconverted.
    """
    if not values:
        return EMPTY_PROPERTIES
    if type(values) is PropertiesDict:
        source = values.unchanged_source()
        if source is not None:
            return source
    elif isinstance(values, Properties):
        return values
    if not isinstance(values, dict):
        raise TypeError(f"MQTT properties must be a dict, got {type(values).__name__}")
    unknown = set(values) - _FIELDS
    if unknown:
        raise ValueError(f"unknown MQTT properties: {', '.join(sorted(unknown))}")
    converted: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name == _PAIRS:
            value = tuple((str(key), str(text)) for key, text in value)
        elif name in _TUPLES:
            value = tuple(int(item) for item in value)
        converted[name] = value
    return Properties(**converted) if converted else EMPTY_PROPERTIES


def _will(will: Will | None) -> dict[str, Any] | None:
    if will is None:
        return None
    return {
        "topic": will.topic,
        "payload": will.payload,
        "qos": will.qos,
        "retain": will.retain,
        "properties": properties_to_dict(will.properties),
    }


def mqtt_scope(
    connect: Connect, *, client_id: str, assigned: bool, transport: str,
    client: Any, server: Any, tls: dict[str, Any] | None, state: dict[str, Any] | None,
    websocket: dict[str, Any] | None = None, link: Any = None,
) -> MqttScope:
    """The scope of one MQTT connection (never the password, nor authentication data)."""
    properties = properties_to_dict(connect.properties)
    properties.pop("authentication_data", None)
    extensions: dict[str, Any] = {}
    if link is not None:
        extensions["mqtt.broker"] = {"link": link}
    if tls is not None:
        extensions["tls"] = tls
    return {
        "type": "mqtt",
        "asgi": {"version": "3.0", "spec_version": SPEC_VERSION},
        "transport": transport,
        "protocol_level": connect.protocol_level,
        "protocol_version": _PROTOCOL_VERSIONS.get(connect.protocol_level, str(connect.protocol_level)),
        "client_id": client_id,
        "client_id_assigned": assigned,
        "clean_start": connect.clean_start,
        "keep_alive": connect.keep_alive,
        "username": connect.username,
        "will": _will(connect.will),
        "properties": properties,
        "client": list(client) if client is not None else None,
        "server": list(server) if server is not None else None,
        "tls": tls,
        "websocket": websocket,
        "state": dict(state) if state else {},
        "extensions": extensions,
    }


def broker_link(scope: dict[str, Any]) -> Any:
    """The :class:`~.broker.link.BrokerLink` of a scope, or None without a broker."""
    extension = scope.get("extensions", {}).get("mqtt.broker")
    return extension.get("link") if extension else None


def connect_event(connect: Connect) -> dict[str, Any]:
    """``mqtt.connect``: the credentials for the application to check."""
    props = connect.properties
    return {
        "type": "mqtt.connect",
        "password": connect.password,
        "authentication_method": props.authentication_method,
        "authentication_data": props.authentication_data,
    }


def publish_event(packet: Publish) -> dict[str, Any]:
    """``mqtt.publish`` from the client."""
    return {
        "type": "mqtt.publish",
        "topic": packet.topic,
        "payload": packet.payload,
        "qos": packet.qos,
        "retain": packet.retain,
        "dup": packet.dup,
        "packet_id": packet.packet_id,
        "properties": properties_to_dict(packet.properties),
    }


def subscribe_event(packet: Subscribe) -> dict[str, Any]:
    """``mqtt.subscribe``: one entry per requested filter."""
    subscriptions = []
    for sub in packet.subscriptions:
        share, inner = parse_shared_subscription(sub.topic_filter)
        subscriptions.append({
            "topic_filter": sub.topic_filter,
            "filter": inner,
            "share_name": share,
            "qos": sub.qos,
            "no_local": sub.no_local,
            "retain_as_published": sub.retain_as_published,
            "retain_handling": int(sub.retain_handling),
        })
    return {
        "type": "mqtt.subscribe",
        "packet_id": packet.packet_id,
        "subscriptions": subscriptions,
        "properties": properties_to_dict(packet.properties),
    }


def unsubscribe_event(packet: Unsubscribe) -> dict[str, Any]:
    """``mqtt.unsubscribe``."""
    return {
        "type": "mqtt.unsubscribe",
        "packet_id": packet.packet_id,
        "topic_filters": list(packet.topic_filters),
        "properties": properties_to_dict(packet.properties),
    }


def disconnect_event(reason_code: int | None, by_client: bool, will: bool, properties: Properties) -> dict[str, Any]:
    """``mqtt.disconnect``: the connection is over."""
    return {
        "type": "mqtt.disconnect",
        "reason_code": reason_code,
        "by_client": by_client,
        "publish_will": will,
        "properties": properties_to_dict(properties),
    }


# -- what the application sends: the actions the adapter carries out ------------------------

class Accept:
    """``mqtt.accept``: CONNACK success (``session_present`` None: the broker session says)."""

    __slots__ = ("properties", "session_present")

    def __init__(self, session_present: bool | None, properties: Properties) -> None:
        self.session_present = session_present
        self.properties = properties


class Refuse:
    """``mqtt.close`` before ``mqtt.accept``: CONNACK with a failure reason, then close."""

    __slots__ = ("properties", "reason_code")

    def __init__(self, reason_code: int, properties: Properties) -> None:
        self.reason_code = reason_code
        self.properties = properties


class Close:
    """``mqtt.close`` after ``mqtt.accept``: DISCONNECT with the reason (5.0), then close."""

    __slots__ = ("properties", "reason_code")

    def __init__(self, reason_code: int, properties: Properties) -> None:
        self.reason_code = reason_code
        self.properties = properties


class Deliver:
    """``mqtt.publish`` from the application: a message for the client."""

    __slots__ = ("payload", "properties", "qos", "retain", "topic")

    def __init__(self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties


R = TypeVar("R")


class AnswerSubscribe(Generic[R]):
    """SUBACK for ``request`` (the SUBSCRIBE, as the rules were given it)."""

    __slots__ = ("packet_id", "properties", "reason_codes", "request")

    def __init__(self, packet_id: int, request: R, reason_codes: list[int], properties: Properties) -> None:
        self.packet_id = packet_id
        self.request = request
        self.reason_codes = reason_codes
        self.properties = properties


class AnswerUnsubscribe(Generic[R]):
    """UNSUBACK for ``request`` (``reason_codes`` None: every filter confirmed)."""

    __slots__ = ("packet_id", "properties", "reason_codes", "request")

    def __init__(self, packet_id: int, request: R, reason_codes: list[int] | None, properties: Properties) -> None:
        self.packet_id = packet_id
        self.request = request
        self.reason_codes = reason_codes
        self.properties = properties


class AckPublish:
    """PUBACK / PUBREC for the client's QoS 1/2 publish ``packet_id``."""

    __slots__ = ("packet_id", "properties", "reason_code")

    def __init__(self, packet_id: int, reason_code: int, properties: Properties) -> None:
        self.packet_id = packet_id
        self.reason_code = reason_code
        self.properties = properties


class AuthStep:
    """``mqtt.auth``: an AUTH packet (5.0 enhanced authentication)."""

    __slots__ = ("properties", "reason_code")

    def __init__(self, reason_code: int, properties: Properties) -> None:
        self.reason_code = reason_code
        self.properties = properties


Action = Accept | Refuse | Close | Deliver | AnswerSubscribe[Any] | AnswerUnsubscribe[Any] | AckPublish | AuthStep

#: The implicit answer to a SUBSCRIBE the application moved past without answering.
REFUSED = ReasonCode.UNSPECIFIED_ERROR

# What an event awaiting an answer is (entries of HandlingRules.handed).
_PUBLISH = 1
_SUBSCRIBE = 2
_UNSUBSCRIBE = 3
_WHAT = {_PUBLISH: "mqtt.publish", _SUBSCRIBE: "mqtt.subscribe", _UNSUBSCRIBE: "mqtt.unsubscribe"}


class HandlingRules(Generic[R]):
    """"Acknowledged only once handled", for one connection (see the module documentation).

    The side that feeds the application tells the rules about every event it queues, in
    order (:meth:`put_publish`, :meth:`put_subscribe`, :meth:`put_unsubscribe`,
    :meth:`put_other`), and calls :meth:`next_asked` each time the application asks for an
    event: events are handed out in the order they were queued, so asking again means the one
    handed before was handled, and :meth:`next_asked` returns the answer it is still owed, if
    any (the caller sends it). An explicit answer resolves its request with :meth:`answer`.
    ``R`` is whatever the caller keeps per SUBSCRIBE/UNSUBSCRIBE (the daemon: the packet).
    """

    __slots__ = ("asked", "handed", "publishes", "subscribes", "unsubscribes")

    def __init__(self) -> None:
        #: Events queued and not yet known to be handled, in order: ``(what, packet id)``,
        #: ``None`` for an event that awaits no answer.
        self.handed: deque[tuple[int, int] | None] = deque()
        #: Whether the application asked for an event yet (then the head of ``handed`` is the
        #: event it holds).
        self.asked = False
        #: Unanswered QoS 1/2 publishes, SUBSCRIBEs and UNSUBSCRIBEs by packet id.
        self.publishes: dict[int, None] = {}
        self.subscribes: dict[int, R] = {}
        self.unsubscribes: dict[int, R] = {}

    # -- the events given to the application -------------------------------------------------

    def put_publish(self, packet_id: int | None) -> None:
        """A publish was queued (``packet_id`` None: QoS 0, nothing to acknowledge)."""
        if packet_id is None:
            self.handed.append(None)
        else:
            self.publishes[packet_id] = None
            self.handed.append((_PUBLISH, packet_id))

    def put_subscribe(self, packet_id: int, request: R) -> None:
        """A SUBSCRIBE was queued."""
        self.subscribes[packet_id] = request
        self.handed.append((_SUBSCRIBE, packet_id))

    def put_unsubscribe(self, packet_id: int, request: R) -> None:
        """An UNSUBSCRIBE was queued."""
        self.unsubscribes[packet_id] = request
        self.handed.append((_UNSUBSCRIBE, packet_id))

    def put_other(self) -> None:
        """An event that awaits no answer was queued (``mqtt.connect``, ``mqtt.auth``)."""
        self.handed.append(None)

    def next_asked(self) -> AckPublish | AnswerSubscribe[R] | AnswerUnsubscribe[R] | None:
        """The application asks for its next event: the answer the one it held is still owed."""
        if not self.asked:
            self.asked = True
            return None
        handed = self.handed
        if not handed:
            return None
        entry = handed.popleft()
        if entry is None:
            return None
        what, packet_id = entry
        if what == _PUBLISH:
            if packet_id in self.publishes:
                del self.publishes[packet_id]
                return AckPublish(packet_id, ReasonCode.SUCCESS, EMPTY_PROPERTIES)
        elif what == _SUBSCRIBE:
            request = self.subscribes.pop(packet_id, None)
            if request is not None:
                count = len(request.subscriptions) if hasattr(request, "subscriptions") else 1
                return AnswerSubscribe(packet_id, request, [REFUSED] * count, EMPTY_PROPERTIES)
        else:
            request = self.unsubscribes.pop(packet_id, None)
            if request is not None:
                return AnswerUnsubscribe(packet_id, request, None, EMPTY_PROPERTIES)
        return None

    def answer(self, what: int, packet_id: Any) -> tuple[int, R | None]:
        """Resolve an explicit answer to the request with ``packet_id`` (None: the event the
        application holds, else the only one waiting); returns ``(packet id, request)``.

        Raises:
            LocalProtocolError: no such request awaits an answer.
        """
        pending: dict[int, Any] = (
            self.publishes if what == _PUBLISH else self.subscribes if what == _SUBSCRIBE else self.unsubscribes
        )
        if packet_id is None:
            current = self.handed[0] if self.asked and self.handed else None
            if current is not None and current[0] == what and current[1] in pending:
                packet_id = current[1]
            elif len(pending) == 1:
                packet_id = next(iter(pending))
        elif type(packet_id) is not int:
            raise LocalProtocolError(f"'packet_id' must be an int, got {packet_id!r}")
        if packet_id is None or packet_id not in pending:
            raise LocalProtocolError(f"no {_WHAT[what]} awaits an answer (packet_id={packet_id!r})")
        return packet_id, pending.pop(packet_id)

    def clear(self) -> None:
        """The connection closed: nothing is owed any more (unacknowledged publishes are sent
        again by the client)."""
        self.handed.clear()
        self.publishes.clear()
        self.subscribes.clear()
        self.unsubscribes.clear()


# Connection states of ScopeState.
CONNECTING = 0
CONNECTED = 1
CLOSED = 2


def _properties(message: Any) -> Properties:
    try:
        return properties_from_dict(message.get("properties"))
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"{message.get('type')} 'properties': {exc}") from None


def _code(message: Any, name: str, default: int) -> int:
    code = message.get(name, default)
    if type(code) is not int:
        if isinstance(code, int):  # an IntEnum member
            return int(code)
        raise LocalProtocolError(f"{message.get('type')} {name!r} must be an int, got {code!r}")
    return code


def _codes(message: Any, required: bool) -> list[int] | None:
    codes = message.get("reason_codes")
    if codes is None:
        if required:
            raise LocalProtocolError(f"{message.get('type')} needs 'reason_codes'")
        return None
    try:
        return [int(code) for code in codes]
    except (TypeError, ValueError):
        raise LocalProtocolError(f"{message.get('type')} 'reason_codes' must be a list of ints, got {codes!r}") from None


class ScopeState(Generic[R]):
    """The message-order state machine of one ``mqtt`` scope::

        CONNECTING ──mqtt.accept──> CONNECTED ──mqtt.close──> CLOSED
             └──────────mqtt.close (refusal)──────────────────┘

    ``mqtt.auth`` is allowed before CLOSED; ``mqtt.publish``, ``mqtt.suback``,
    ``mqtt.unsuback`` and ``mqtt.puback`` only while CONNECTED (the last three resolve their
    request through :attr:`rules`). :meth:`app_send` raises :class:`LocalProtocolError` for a
    malformed, unknown or out-of-order message (changing nothing), and
    :class:`~gateway.asgi.instance.ClientDisconnected` in CLOSED. :meth:`closed` moves to CLOSED
    when the connection ends for another reason.
    """

    __slots__ = ("rules", "state")

    def __init__(self, rules: HandlingRules[R] | None = None) -> None:
        self.state = CONNECTING
        self.rules: HandlingRules[R] = rules if rules is not None else HandlingRules()

    @property
    def answered(self) -> bool:
        """Whether the CONNECT was answered (or the connection is over)."""
        return self.state != CONNECTING

    def closed(self) -> None:
        """The connection is over: nothing may be sent any more."""
        self.state = CLOSED
        self.rules.clear()

    def app_send(self, message: Any) -> Action:
        """Check one message from the application; returns the action to carry out."""
        try:
            kind = message["type"]
        except (TypeError, KeyError, IndexError):
            raise LocalProtocolError(f"an ASGI message must be a dict with a 'type', got {message!r}") from None
        state = self.state
        if state == CLOSED:
            raise ClientDisconnected("the MQTT connection is closed")
        if kind == "mqtt.publish":
            if state != CONNECTED:
                raise LocalProtocolError("mqtt.publish before mqtt.accept")
            topic = message.get("topic")
            if type(topic) is not str or not topic:
                raise LocalProtocolError(f"mqtt.publish 'topic' must be a topic name, got {topic!r}")
            payload = message.get("payload", b"")
            if type(payload) is not bytes:
                if isinstance(payload, (bytearray, memoryview)):
                    payload = bytes(payload)
                elif isinstance(payload, str):
                    payload = payload.encode("utf-8")
                else:
                    raise LocalProtocolError(f"mqtt.publish 'payload' must be bytes, got {type(payload).__name__}")
            qos = message.get("qos", 0)
            if qos != 0 and qos != 1 and qos != 2:
                raise LocalProtocolError(f"mqtt.publish 'qos' must be 0, 1 or 2, got {qos!r}")
            properties = message.get("properties")
            return Deliver(topic, payload, int(qos), bool(message.get("retain", False)),
                           EMPTY_PROPERTIES if not properties else _properties(message))
        if kind == "mqtt.puback":
            if state != CONNECTED:
                raise LocalProtocolError("mqtt.puback before mqtt.accept")
            code = _code(message, "reason_code", ReasonCode.SUCCESS)
            properties = _properties(message)
            packet_id, _ = self.rules.answer(_PUBLISH, message.get("packet_id"))
            return AckPublish(packet_id, code, properties)
        if kind == "mqtt.suback":
            if state != CONNECTED:
                raise LocalProtocolError("mqtt.suback before mqtt.accept")
            codes = _codes(message, True)
            properties = _properties(message)
            packet_id, request = self.rules.answer(_SUBSCRIBE, message.get("packet_id"))
            return AnswerSubscribe(packet_id, request, codes or [], properties)
        if kind == "mqtt.unsuback":
            if state != CONNECTED:
                raise LocalProtocolError("mqtt.unsuback before mqtt.accept")
            codes = _codes(message, False)
            properties = _properties(message)
            packet_id, request = self.rules.answer(_UNSUBSCRIBE, message.get("packet_id"))
            return AnswerUnsubscribe(packet_id, request, codes, properties)
        if kind == "mqtt.accept":
            if state != CONNECTING:
                raise LocalProtocolError("mqtt.connect was answered already")
            present = message.get("session_present")
            properties = _properties(message)
            self.state = CONNECTED
            return Accept(None if present is None else bool(present), properties)
        if kind == "mqtt.close":
            if state == CONNECTING:
                code = _code(message, "reason_code", ReasonCode.NOT_AUTHORIZED)
                action: Action = Refuse(code, _properties(message))
            else:
                action = Close(_code(message, "reason_code", ReasonCode.NORMAL_DISCONNECTION), _properties(message))
            self.closed()
            return action
        if kind == "mqtt.auth":
            return AuthStep(_code(message, "reason_code", ReasonCode.CONTINUE_AUTHENTICATION), _properties(message))
        raise LocalProtocolError(f"unexpected ASGI message type {kind!r} for an mqtt scope")
