# -*- test-case-name: tests.unit.mqtt -*-
"""The CONNECT / CONNACK / AUTH rules of a server connection, as pure functions (§3.1, §3.2,
§3.15, §4.12). Used by :class:`~gateway.protocols.mqtt.connection.MqttServerConnection`.
"""

from __future__ import annotations

from dataclasses import replace

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.mqtt.codec import MAX_PACKET_SIZE
from gateway.protocols.mqtt.events import ServerOptions
from gateway.protocols.mqtt.packets import Auth, ConnAck, Connect
from gateway.protocols.mqtt.properties import Properties
from gateway.protocols.mqtt.reasons import CONNACK_CODES, ReasonCode, to_connect_return_code

__all__ = ["check_client_auth", "check_connect", "connack_properties", "refusal"]

# CONNACK properties derived from ServerOptions; the upper layer may not set them.
_MANAGED = (
    "receive_maximum",
    "maximum_packet_size",
    "topic_alias_maximum",
    "maximum_qos",
    "retain_available",
    "wildcard_subscription_available",
    "subscription_identifier_available",
    "shared_subscription_available",
)


def check_connect(packet: Connect, options: ServerOptions) -> None:
    """Server-side rules on a decoded CONNECT.

    Raises:
        RemoteProtocolError: a disabled protocol level (0x84), or a 3.1.1 empty client id
            without clean session (0x85, sent as return code 2, [MQTT-3.1.3-8]).
    """
    if packet.protocol_level not in options.protocol_levels:
        raise RemoteProtocolError(
            f"protocol level {packet.protocol_level} is disabled",
            hint=ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
        )
    if packet.protocol_level == 4 and not packet.client_id and not packet.clean_start:
        raise RemoteProtocolError(
            "empty client id without clean session", hint=ReasonCode.CLIENT_IDENTIFIER_NOT_VALID
        )


def connack_properties(options: ServerOptions, connect: Connect, given: Properties) -> Properties:
    """The properties of a 5.0 CONNACK accepting ``connect``: ``given`` plus our limits.

    Raises:
        LocalProtocolError: ``given`` sets a limit the options own, or lacks the Assigned
            Client Identifier an empty client id requires [MQTT-3.2.2-16].
    """
    for name in _MANAGED:
        if getattr(given, name) is not None:
            raise LocalProtocolError(f"{name} is set by the connection from ServerOptions")
    if not connect.client_id and given.assigned_client_identifier is None:
        raise LocalProtocolError("assigned_client_identifier is needed for an empty client id")
    keep_alive = given.server_keep_alive
    maximum = options.max_keep_alive
    if keep_alive is None and maximum is not None:
        if connect.keep_alive == 0 or connect.keep_alive > maximum:
            keep_alive = maximum  # §3.2.2.3.14 Server Keep Alive
    # Advertise only what differs from the defaults a client assumes when absent (§3.2.2.3).
    return replace(
        given,
        server_keep_alive=keep_alive,
        receive_maximum=options.receive_maximum if options.receive_maximum < 65535 else None,
        maximum_packet_size=(
            options.max_packet_size if options.max_packet_size < MAX_PACKET_SIZE else None
        ),
        topic_alias_maximum=options.topic_alias_maximum or None,
        maximum_qos=options.maximum_qos if options.maximum_qos < 2 else None,
        retain_available=None if options.retain_available else False,
        wildcard_subscription_available=None if options.wildcard_subscription_available else False,
        subscription_identifier_available=(
            None if options.subscription_identifier_available else False
        ),
        shared_subscription_available=None if options.shared_subscription_available else False,
    )


def refusal(reason: int, level: int | None, valid_connect: bool) -> tuple[ConnAck, int] | None:
    """The CONNACK refusing a CONNECT and the level to encode it at, or None to just close.

    Args:
        reason: the 5.0 reason (>= 0x80; other codes become 0x80 Unspecified error).
        level: the level the CONNECT announced (levels above 5 get the 5.0 format, below 4
            the 3.1.1 one), or None when it is not even an MQTT CONNECT.
        valid_connect: the CONNECT was decoded (refused by policy, not for being invalid).
    """
    if level is None:
        return None
    if level >= 5:
        code = reason if reason in CONNACK_CODES and reason >= 0x80 else 0x80
        return ConnAck(False, code), 5
    if valid_connect or reason in (
        ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
        ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
    ):
        # 3.1.1 §3.1.4: a CONNECT that does not conform is closed without a CONNACK; a valid
        # but refused one (and return codes 1 and 2, §3.2.2.3) gets a return code.
        return ConnAck(False, to_connect_return_code(reason)), 4
    return None


def check_client_auth(packet: Auth, method: str | None, connected: bool) -> None:
    """Rules on an AUTH from the client (§4.12).

    Raises:
        RemoteProtocolError (0x82): no enhanced authentication was started by the CONNECT,
            another method, or a reason a client may not send now.
    """
    if method is None:
        raise RemoteProtocolError(
            "AUTH without an authentication method in CONNECT", hint=ReasonCode.PROTOCOL_ERROR
        )
    if packet.properties.authentication_method != method:
        # §4.12: "the same value as the Authentication Method in the CONNECT".
        raise RemoteProtocolError(
            "AUTH with another authentication method", hint=ReasonCode.PROTOCOL_ERROR
        )
    allowed = [ReasonCode.CONTINUE_AUTHENTICATION]
    if connected:
        allowed.append(ReasonCode.RE_AUTHENTICATE)  # §4.12.1, only after the CONNACK
    if packet.reason_code not in allowed:
        raise RemoteProtocolError(
            f"AUTH reason 0x{packet.reason_code:02X} from a client", hint=ReasonCode.PROTOCOL_ERROR
        )
