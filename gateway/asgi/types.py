"""The scopes and events the gateway's protocols speak, as ``TypedDict`` s.

Each mapping's document is the specification (the ASGI HTTP and WebSocket spec 2.5 and lifespan
spec, ``docs/asgi-mqtt.md``, ``docs/asgi-email.md``, ``docs/asgi-sms.md``);
these types say the same for mypy: the pure ASGI modules of each protocol build scopes and events
as these types, in one place each. Keys that are Python keywords (the ``sms`` ``from``) force the
functional syntax.

A ``TypedDict`` is a ``Mapping[str, object]`` but not a ``MutableMapping``, so where one is handed
to code typed with :data:`gateway.asgi.app.Scope` or ``Message`` (the application instance, the
application itself) it is cast once, at that hand-over.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "ASGIVersions",
    "HTTPDisconnect",
    "HTTPRequest",
    "HTTPResponseBody",
    "HTTPResponseStart",
    "HTTPScope",
    "LifespanScope",
    "MqttConnectorInfo",
    "MqttScope",
    "WebSocketAccept",
    "WebSocketClose",
    "WebSocketConnect",
    "WebSocketDisconnect",
    "WebSocketReceive",
    "WebSocketScope",
    "WebSocketSend",
    "EmailAccept",
    "EmailConnection",
    "EmailDisconnect",
    "EmailProbe",
    "EmailReceive",
    "EmailReject",
    "EmailScope",
    "EmailSend",
    "EmailSendResult",
    "SmsAck",
    "SmsDisconnect",
    "SmsReceive",
    "SmsReply",
    "SmsScope",
    "SmsSend",
    "SmsSendError",
    "SmsSendResult",
    "SmsStatus",
    "TLSInfo",
]


class ASGIVersions(TypedDict):
    """``scope["asgi"]``."""

    version: str
    spec_version: str


#: The ASGI ``tls`` extension's fields (HTTP, WebSocket, SMTP), or the IMAP reader's view of the
#: server it reads from (``docs/asgi-email.md``).
TLSInfo = dict[str, Any]


# -- http (ASGI HTTP & WebSocket spec 2.5) --------------------------------------------------------


class HTTPScope(TypedDict):
    """One HTTP request (``type: "http"``), HTTP/1.1 or HTTP/2."""

    type: Literal["http"]
    asgi: ASGIVersions
    http_version: str
    method: str
    scheme: str
    path: str
    raw_path: bytes
    query_string: bytes
    root_path: str
    headers: list[tuple[bytes, bytes]]
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    extensions: dict[str, Any]
    state: NotRequired[dict[str, Any]]


class HTTPRequest(TypedDict):
    """A piece of the request body; the last one when ``more_body`` is false."""

    type: Literal["http.request"]
    body: bytes
    more_body: bool


class HTTPDisconnect(TypedDict):
    """The client left (or the response is complete)."""

    type: Literal["http.disconnect"]


class HTTPResponseStart(TypedDict):
    """The status and header fields of the response."""

    type: Literal["http.response.start"]
    status: int
    headers: NotRequired[list[tuple[bytes, bytes]]]
    trailers: NotRequired[bool]


class HTTPResponseBody(TypedDict):
    """A piece of the response body; the last one unless ``more_body``."""

    type: Literal["http.response.body"]
    body: NotRequired[bytes]
    more_body: NotRequired[bool]


# -- websocket (ASGI HTTP & WebSocket spec 2.5) ---------------------------------------------------


class WebSocketScope(TypedDict):
    """One WebSocket (``type: "websocket"``), over HTTP/1.1 or HTTP/2."""

    type: Literal["websocket"]
    asgi: ASGIVersions
    http_version: str
    scheme: str
    path: str
    raw_path: bytes
    query_string: bytes
    root_path: str
    headers: list[tuple[bytes, bytes]]
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    subprotocols: list[str]
    extensions: dict[str, Any]
    state: NotRequired[dict[str, Any]]


class WebSocketConnect(TypedDict):
    """The handshake request arrived: accept, close (403) or answer with a denial response."""

    type: Literal["websocket.connect"]


class WebSocketReceive(TypedDict):
    """A message from the client: exactly one of ``bytes`` and ``text``."""

    type: Literal["websocket.receive"]
    bytes: NotRequired[bytes | None]
    text: NotRequired[str | None]


class WebSocketDisconnect(TypedDict):
    """The connection closed: the close code and reason."""

    type: Literal["websocket.disconnect"]
    code: int
    reason: NotRequired[str]


class WebSocketAccept(TypedDict):
    """Complete the handshake."""

    type: Literal["websocket.accept"]
    subprotocol: NotRequired[str | None]
    headers: NotRequired[list[tuple[bytes, bytes]]]


class WebSocketSend(TypedDict):
    """A message to the client: exactly one of ``bytes`` and ``text``."""

    type: Literal["websocket.send"]
    bytes: NotRequired[bytes | None]
    text: NotRequired[str | None]


class WebSocketClose(TypedDict):
    """Close (or, before accepting, refuse with 403)."""

    type: Literal["websocket.close"]
    code: NotRequired[int]
    reason: NotRequired[str | None]


# -- lifespan (ASGI lifespan spec) ----------------------------------------------------------------


class LifespanScope(TypedDict):
    """The daemon's life (``type: "lifespan"``): startup and shutdown, with a shared ``state``."""

    type: Literal["lifespan"]
    asgi: ASGIVersions
    state: dict[str, Any]


# -- mqtt (docs/asgi-mqtt.md) ---------------------------------------------------------------------


class MqttConnectorInfo(TypedDict):
    """``scope["connector"]`` of an MQTT connector's connection to a broker."""

    name: str
    broker: str
    session_present: bool
    properties: dict[str, Any]
    subscriptions: list[dict[str, Any]]


class MqttScope(TypedDict):
    """One MQTT client connection (``type: "mqtt"``); with ``connector``, a connection of an
    MQTT connector to a broker (docs/asgi-mqtt.md, "Connecting to an existing broker")."""

    type: Literal["mqtt"]
    asgi: ASGIVersions
    transport: str
    protocol_level: int
    protocol_version: str
    client_id: str
    client_id_assigned: bool
    clean_start: bool
    keep_alive: int
    username: str | None
    will: dict[str, Any] | None
    properties: dict[str, Any]
    client: list[Any] | None
    server: list[Any] | None
    tls: TLSInfo | None
    websocket: dict[str, Any] | None
    state: dict[str, Any]
    extensions: dict[str, Any]
    connector: NotRequired[MqttConnectorInfo]


# -- email (docs/asgi-email.md) -------------------------------------------------------------------


class EmailConnection(TypedDict):
    """The keys of an SMTP connection: what an AUTH hook is given as its scope."""

    type: Literal["email"]
    asgi: ASGIVersions
    source: Literal["smtp", "imap"]
    helo: str | None
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    tls: TLSInfo | None
    auth_user: str | None


class EmailProbe(EmailConnection):
    """What the SMTP listener asks ``matches(app, probe)`` at each ``RCPT TO``: the connection's
    keys, the transaction's sender and the one recipient being checked."""

    sender: str
    recipients: list[str]


class EmailScope(EmailProbe):
    """One message (``type: "email"``), from the SMTP listener or the IMAP reader."""

    size: int
    state: dict[str, Any]
    extensions: dict[str, Any]
    # SMTP only
    esmtp: NotRequired[bool]
    smtputf8: NotRequired[bool]
    body: NotRequired[str | None]
    # IMAP only
    mailbox: NotRequired[str]
    uid: NotRequired[int]
    uidvalidity: NotRequired[int | None]


class EmailReceive(TypedDict):
    """The message: the first event."""

    type: Literal["email.receive"]
    raw: bytes


class EmailSendResult(TypedDict):
    """The outcome of one ``email.send``."""

    type: Literal["email.send.result"]
    id: str
    ok: bool
    code: int | None
    text: str
    temporary: bool
    refused: dict[str, str]


class EmailDisconnect(TypedDict):
    """Nothing more will come (the message was answered, no send is in flight)."""

    type: Literal["email.disconnect"]


class EmailAccept(TypedDict):
    """Take the message (250)."""

    type: Literal["email.accept"]
    text: NotRequired[str]


class EmailReject(TypedDict):
    """Refuse the message: a 4xx or 5xx reply."""

    type: Literal["email.reject"]
    code: NotRequired[int]
    text: NotRequired[str]


EmailSend = TypedDict("EmailSend", {
    "type": Literal["email.send"],
    "id": NotRequired[str],
    "to": NotRequired[str | list[str]],
    "cc": NotRequired[str | list[str]],
    "bcc": NotRequired[str | list[str]],
    "from": NotRequired[str],
    "subject": NotRequired[str],
    "body": NotRequired[str],
    "html": NotRequired[str],
    "headers": NotRequired[dict[str, str] | list[tuple[str, str]]],
    "message": NotRequired[bytes],
})
EmailSend.__doc__ = "Send a message through the listener's smarthost (any time, any number)."


# -- sms (docs/asgi-sms.md) -----------------------------------------------------------------------


SmsScope = TypedDict("SmsScope", {
    "type": Literal["sms"],
    "asgi": ASGIVersions,
    "kind": Literal["message", "status"],
    "provider": str,
    "account": str,
    "provider_account": str | None,
    "from": str | None,
    "from_kind": str | None,
    "to": str | None,
    "to_kind": str | None,
    "country": str | None,
    "message_id": str,
    "extensions": dict[str, Any],
    "state": NotRequired[dict[str, Any]],
})
SmsScope.__doc__ = "One verified webhook event (``type: \"sms\"``)."


class SmsReceive(TypedDict):
    """An inbound text: the first event of a ``message`` scope."""

    type: Literal["sms.receive"]
    text: str
    encoding: str
    segments: int
    media: list[dict[str, Any]]
    raw: dict[str, Any]


class SmsStatus(TypedDict):
    """A delivery report: the first event of a ``status`` scope."""

    type: Literal["sms.status"]
    message_id: str
    status: str
    provider_status: str | None
    error_code: str | None
    error_message: str | None
    to: str | None
    segments: int | None
    raw: dict[str, Any]


class SmsSendError(TypedDict):
    """``sms.send.result["error"]``."""

    http_status: int | None
    code: str | None
    message: str
    retryable: bool


class SmsSendResult(TypedDict):
    """The provider's answer to one ``sms.send`` (or an ``sms.reply`` sent by REST)."""

    type: Literal["sms.send.result"]
    id: Any
    ok: bool
    message_ids: list[str]
    status: str
    provider_status: str | None
    segments: int | None
    error: SmsSendError | None


class SmsDisconnect(TypedDict):
    """The event has an outcome, nothing is in flight and nothing is left to read."""

    type: Literal["sms.disconnect"]


class SmsAck(TypedDict):
    """The event is handled: answer the webhook now."""

    type: Literal["sms.ack"]


class SmsReply(TypedDict):
    """Answer the sender (inline in the webhook answer where possible, else by REST)."""

    type: Literal["sms.reply"]
    text: str
    id: NotRequired[Any]


SmsSend = TypedDict("SmsSend", {
    "type": Literal["sms.send"],
    "to": str,
    "text": str,
    "from": NotRequired[str | None],
    "media_urls": NotRequired[list[str]],
    "status_callback": NotRequired[str | None],
    "id": NotRequired[Any],
})
SmsSend.__doc__ = "Send a text through the provider's REST API."
