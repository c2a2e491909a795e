"""MqttServerConnection: CONNECT/CONNACK, keep-alive, timeouts, AUTH, DISCONNECT and errors.

Tests are named after the section of MQTT 5.0 (or 3.1.1) whose rule they check.
"""

from __future__ import annotations

import pytest

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.mqtt import (
    Auth,
    AuthReceived,
    ConnAck,
    Connect,
    ConnectionClosed,
    ConnectionState,
    ConnectReceived,
    ConnectReturnCode,
    Disconnect,
    DisconnectReceived,
    Event,
    MqttServerConnection,
    PingReq,
    PingResp,
    Properties,
    Publish,
    ReasonCode,
    ServerOptions,
    Subscribe,
    SubscribeReceived,
    Subscription,
    Will,
    encode,
)
from tests.unit.mqtt.helpers import Harness, props

R = ReasonCode
WILL = Will("clients/c/status", b"offline")


def closed_event(harness: Harness, events: list[Event] | None = None) -> ConnectionClosed:
    """The ConnectionClosed reported (the last of ``events``, or of the pending events)."""
    if events is None:
        events = harness.conn.events_received()
    assert events and isinstance(events[-1], ConnectionClosed), events
    assert harness.conn.closed
    return events[-1]


# -- §3.1 CONNECT first, protocol level negotiation ----------------------------------------------


def test_3_1_0_the_first_packet_must_be_connect() -> None:
    """[MQTT-3.1.0-1] anything else first: close without a reply (no level to answer in)."""
    harness = Harness()
    events = harness.send(PingReq())
    assert harness.received() == []
    closed = events[-1]
    assert isinstance(closed, ConnectionClosed)
    assert closed.error is not None and closed.error.hint == R.PROTOCOL_ERROR
    assert harness.conn.error == closed.error


@pytest.mark.parametrize("level", [4, 5])
def test_3_1_0_a_second_connect_is_a_protocol_error(level: int) -> None:
    """[MQTT-3.1.0-2] a second CONNECT: DISCONNECT 0x82 in 5.0, a plain close in 3.1.1."""
    harness = Harness(level)
    harness.connect()
    events = harness.send(Connect("c", level))
    assert isinstance(events[-1], ConnectionClosed)
    assert events[-1].reason_code == R.PROTOCOL_ERROR
    assert harness.received() == ([Disconnect(R.PROTOCOL_ERROR)] if level == 5 else [])


def test_3_1_2_2_unsupported_level_below_5_gets_a_3_1_1_connack_return_code_1() -> None:
    """3.1.1 §3.1.2.2: CONNACK return code 0x01 (unacceptable protocol level), then close."""
    conn = MqttServerConnection()
    conn.receive_data(b"\x10\x0d\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x00")  # an MQTT 3.1 client
    assert conn.data_to_send() == b"\x20\x02\x00\x01"
    assert conn.closed
    (event,) = conn.events_received()
    assert isinstance(event, ConnectionClosed) and event.error is not None
    assert event == ConnectionClosed(R.UNSUPPORTED_PROTOCOL_VERSION, False, event.error)


def test_3_1_2_2_unsupported_level_above_5_gets_a_5_0_connack_0x84() -> None:
    """5.0 §3.1.2.2: CONNACK 0x84 (Unsupported Protocol Version), then close."""
    conn = MqttServerConnection()
    conn.receive_data(b"\x10\x0b\x00\x04MQTT\x06\x02\x00\x3c\x00")
    assert conn.data_to_send() == encode(ConnAck(False, R.UNSUPPORTED_PROTOCOL_VERSION), 5)
    assert conn.closed


@pytest.mark.parametrize(
    "enabled, level, reply",
    [({5}, 4, ConnAck(False, ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION)),
     ({4}, 5, ConnAck(False, R.UNSUPPORTED_PROTOCOL_VERSION))],
)
def test_3_1_2_2_a_disabled_level_is_refused_in_its_own_format(
    enabled: set[int], level: int, reply: ConnAck
) -> None:
    """With ServerOptions.protocol_levels, a disabled level is refused like an unknown one."""
    harness = Harness(level, ServerOptions(protocol_levels=frozenset(enabled)))
    events = harness.send(Connect("c", level))
    assert harness.received() == [reply]
    assert closed_event(harness, events).reason_code == R.UNSUPPORTED_PROTOCOL_VERSION


def test_3_1_3_1_empty_client_id_needs_clean_session_in_3_1_1() -> None:
    """3.1.1 [MQTT-3.1.3-8]: CONNACK return code 0x02 (identifier rejected), then close."""
    harness = Harness(4)
    harness.send(Connect("", 4, clean_start=False))
    assert harness.received() == [ConnAck(False, ConnectReturnCode.IDENTIFIER_REJECTED)]
    assert harness.conn.closed


def test_3_1_4_invalid_connect_in_3_1_1_is_closed_without_connack() -> None:
    """3.1.1 [MQTT-3.1.4-1]: a non-conforming CONNECT is closed without a CONNACK."""
    conn = MqttServerConnection()
    conn.receive_data(b"\x10\x0c\x00\x04MQTT\x04\x03\x00\x3c\x00\x00")  # reserved flag set
    assert conn.data_to_send() == b""
    assert conn.closed
    (event,) = conn.events_received()
    assert isinstance(event, ConnectionClosed)
    assert event.error is not None and event.error.hint == R.MALFORMED_PACKET


def test_4_13_1_invalid_connect_in_5_0_gets_connack_with_the_reason() -> None:
    """5.0 §4.13.1: CONNACK with the reason code (here 0x81) before closing."""
    conn = MqttServerConnection()
    conn.receive_data(b"\x10\x0d\x00\x04MQTT\x05\x03\x00\x3c\x00\x00\x00")
    assert conn.data_to_send() == encode(ConnAck(False, R.MALFORMED_PACKET), 5)


def test_3_1_2_11_4_oversized_connect_gets_0x95_without_buffering_it() -> None:
    """A CONNECT above max_packet_size is refused from its header (5.0: CONNACK 0x95)."""
    conn = MqttServerConnection(ServerOptions(max_packet_size=100))
    header = b"\x10\xc8\x01\x00\x04MQTT\x05"  # remaining length 200, level 5
    conn.receive_data(header)
    assert conn.data_to_send() == encode(ConnAck(False, R.PACKET_TOO_LARGE), 5)
    assert conn.closed


def test_3_1_4_packets_after_connect_wait_for_the_decision() -> None:
    """[MQTT-3.1.4-5]-like: nothing after the CONNECT is processed before the CONNACK, and
    the CONNACK is the first packet out; then the pipelined packets are processed."""
    harness = Harness()
    subscribe = Subscribe(1, (Subscription("a/#"),))
    events = harness.send(Connect("c", 5), subscribe, PingReq())
    assert [type(event) for event in events] == [ConnectReceived]
    assert harness.conn.paused and harness.conn.state is ConnectionState.CONNECTING
    assert harness.received() == []
    harness.conn.accept()
    assert harness.conn.events_received() == [SubscribeReceived(subscribe)]
    connack, pingresp = harness.received()
    assert isinstance(connack, ConnAck) and pingresp == PingResp()
    assert not harness.conn.paused


def test_3_2_2_rejected_connect_discards_the_pipelined_packets() -> None:
    """After reject(), the CONNACK failure is the last output; nothing else is processed."""
    harness = Harness()
    harness.send(Connect("c", 5, username="u", password=b"bad"), PingReq())
    harness.conn.reject(R.BAD_USER_NAME_OR_PASSWORD, props(reason_string="try again"))
    assert harness.received() == [
        ConnAck(False, R.BAD_USER_NAME_OR_PASSWORD, props(reason_string="try again"))
    ]
    assert closed_event(harness) == ConnectionClosed(R.BAD_USER_NAME_OR_PASSWORD, False, None)


@pytest.mark.parametrize(
    "reason, code",
    [
        (R.BAD_USER_NAME_OR_PASSWORD, ConnectReturnCode.BAD_USER_NAME_OR_PASSWORD),
        (R.NOT_AUTHORIZED, ConnectReturnCode.NOT_AUTHORIZED),
        (R.BANNED, ConnectReturnCode.NOT_AUTHORIZED),
        (R.SERVER_BUSY, ConnectReturnCode.SERVER_UNAVAILABLE),
        (R.CLIENT_IDENTIFIER_NOT_VALID, ConnectReturnCode.IDENTIFIER_REJECTED),
        (R.QUOTA_EXCEEDED, ConnectReturnCode.SERVER_UNAVAILABLE),
    ],
)
def test_3_2_2_3_reject_speaks_3_1_1_return_codes(reason: int, code: int) -> None:
    """The upper layer uses 5.0 reasons; a 3.1.1 client gets the matching return code."""
    harness = Harness(4)
    harness.connect(accept=False)
    harness.conn.reject(reason)
    assert harness.received() == [ConnAck(False, code)]


def test_reject_needs_a_connack_failure_code() -> None:
    """reject() with a success or a non-CONNACK code is API misuse."""
    harness = Harness()
    harness.connect(accept=False)
    for reason in (R.SUCCESS, R.KEEP_ALIVE_TIMEOUT):
        with pytest.raises(LocalProtocolError):
            harness.conn.reject(reason)
    with pytest.raises(LocalProtocolError):
        Harness().conn.reject(R.NOT_AUTHORIZED)  # no CONNECT yet


# -- §3.2 CONNACK ---------------------------------------------------------------------------------


def test_3_2_2_3_connack_advertises_the_server_options() -> None:
    """A 5.0 CONNACK carries every limit that differs from the client's defaults."""
    options = ServerOptions(
        max_packet_size=2048,
        receive_maximum=10,
        topic_alias_maximum=4,
        maximum_qos=1,
        retain_available=False,
        wildcard_subscription_available=False,
        subscription_identifier_available=False,
        shared_subscription_available=False,
    )
    connack = Harness(5, options).connect()
    assert connack == ConnAck(
        False,
        R.SUCCESS,
        props(
            receive_maximum=10,
            maximum_packet_size=2048,
            topic_alias_maximum=4,
            maximum_qos=1,
            retain_available=False,
            wildcard_subscription_available=False,
            subscription_identifier_available=False,
            shared_subscription_available=False,
        ),
    )
    defaults = ServerOptions(
        receive_maximum=65535, max_packet_size=268_435_460, topic_alias_maximum=0
    )
    assert Harness(5, defaults).connect() == ConnAck()  # nothing differs from the defaults
    assert Harness(4, options).connect() == ConnAck()  # 3.1.1: no properties at all


def test_3_2_2_3_upper_layer_properties_are_merged_but_limits_are_ours() -> None:
    """Session expiry and user properties come from accept(); limits from ServerOptions."""
    harness = Harness(5, ServerOptions(topic_alias_maximum=0))
    harness.connect(accept=False)
    with pytest.raises(LocalProtocolError):
        harness.conn.accept(properties=props(receive_maximum=5))
    harness.conn.accept(properties=props(session_expiry_interval=60, user_properties=(("a", "b"),)))
    (connack,) = harness.received()
    assert connack == ConnAck(
        False,
        R.SUCCESS,
        props(session_expiry_interval=60, user_properties=(("a", "b"),), receive_maximum=64,
              maximum_packet_size=1_048_576),
    )


def test_3_2_2_3_7_empty_client_id_needs_an_assigned_client_identifier() -> None:
    """[MQTT-3.2.2-16] a 5.0 client with an empty id gets an Assigned Client Identifier."""
    harness = Harness()
    harness.connect(accept=False, client_id="")
    with pytest.raises(LocalProtocolError):
        harness.conn.accept()
    harness.conn.accept(properties=props(assigned_client_identifier="auto-1"))
    (connack,) = harness.received()
    assert isinstance(connack, ConnAck)
    assert connack.properties.assigned_client_identifier == "auto-1"


def test_3_2_2_2_session_present_rules() -> None:
    """[MQTT-3.2.2-2] no session present on a clean start; a resumed session needs it set."""
    harness = Harness()
    harness.connect(accept=False, clean_start=True)
    with pytest.raises(LocalProtocolError):
        harness.conn.accept(session_present=True)
    harness = Harness()
    harness.connect(accept=False, clean_start=False)
    with pytest.raises(LocalProtocolError):
        harness.conn.accept(session=harness.conn.session_state())
    harness.conn.accept(session_present=True)
    assert harness.received()[0] == ConnAck(True, R.SUCCESS, harness_props())


def harness_props() -> Properties:
    """The CONNACK properties of the default ServerOptions."""
    return props(receive_maximum=64, maximum_packet_size=1_048_576, topic_alias_maximum=10)


# -- §3.1.2.10 keep-alive and the connect timeout -------------------------------------------------


@pytest.mark.parametrize("level", [4, 5])
def test_3_1_2_10_keep_alive_closes_after_one_and_a_half_times(level: int) -> None:
    """No packet within 1.5x Keep Alive: close (5.0: DISCONNECT 0x8D first), Will published."""
    harness = Harness(level)
    harness.connect(keep_alive=10, will=WILL)
    assert harness.conn.next_deadline(harness.now) == 15.0
    harness.advance(9)
    harness.send(PingReq())  # activity at t=9
    assert harness.received() == [PingResp()]
    assert harness.conn.next_deadline(harness.now) == 24.0
    harness.advance(14.9)
    assert not harness.conn.closed
    harness.advance(0.1)
    assert harness.received() == ([Disconnect(R.KEEP_ALIVE_TIMEOUT)] if level == 5 else [])
    event = closed_event(harness)
    assert event.reason_code == R.KEEP_ALIVE_TIMEOUT and event.publish_will
    assert harness.conn.next_deadline(harness.now) is None


def test_3_1_2_10_keep_alive_zero_means_no_deadline() -> None:
    """A Keep Alive of 0 turns the mechanism off."""
    harness = Harness()
    harness.connect(keep_alive=0)
    assert harness.conn.next_deadline(harness.now) is None


@pytest.mark.parametrize(
    "client, expected_property, deadline",
    [(0, 30, 45.0), (60, 30, 45.0), (20, None, 30.0)],
)
def test_3_2_2_3_14_server_keep_alive_caps_the_client(
    client: int, expected_property: int | None, deadline: float
) -> None:
    """max_keep_alive becomes the 5.0 Server Keep Alive when the client asks for 0 or more."""
    harness = Harness(5, ServerOptions(max_keep_alive=30))
    connack = harness.connect(keep_alive=client)
    assert connack is not None
    assert connack.properties.server_keep_alive == expected_property
    assert harness.conn.keep_alive == deadline / 1.5
    assert harness.conn.next_deadline(harness.now) == deadline


def test_3_1_2_10_a_3_1_1_client_keeps_its_own_keep_alive() -> None:
    """3.1.1 cannot tell the client another keep-alive, so the cap does not apply."""
    harness = Harness(4, ServerOptions(max_keep_alive=30))
    harness.connect(keep_alive=60)
    assert harness.conn.next_deadline(harness.now) == 90.0


def test_connect_timeout_closes_a_silent_connection() -> None:
    """No CONNECT within connect_timeout (from the first next_deadline): close silently."""
    harness = Harness(5, ServerOptions(connect_timeout=5.0))
    assert harness.conn.next_deadline(0.0) == 5.0
    harness.advance(4.9)
    assert not harness.conn.closed
    harness.advance(0.1)
    assert harness.received() == []
    event = closed_event(harness)
    assert event.reason_code is None and not event.publish_will
    assert Harness(5, ServerOptions(connect_timeout=None)).conn.next_deadline(100.0) is None


def test_keep_alive_is_suspended_while_waiting_for_the_upper_layer() -> None:
    """While paused (CONNECT decision, full inbound window) no keep-alive deadline runs."""
    harness = Harness(4, ServerOptions(receive_maximum=1))
    harness.connect(accept=False, keep_alive=10)
    assert harness.conn.next_deadline(harness.now) is None
    harness.conn.accept()
    harness.send(Publish("t", b"", 1, packet_id=1))
    assert harness.conn.paused
    assert harness.conn.next_deadline(harness.now) is None
    harness.advance(100)
    harness.conn.ack_publish(1)
    assert harness.conn.next_deadline(harness.now) == 115.0  # resuming counts as activity


def test_3_12_4_pingreq_is_answered_inside_the_core() -> None:
    """[MQTT-3.12.4-1] PINGREQ gets PINGRESP without any event for the upper layer."""
    harness = Harness(4)
    harness.connect()
    assert harness.send(PingReq(), PingReq()) == []
    assert harness.received() == [PingResp(), PingResp()]


# -- §3.14 DISCONNECT, the Will, and the end of the connection ------------------------------------


@pytest.mark.parametrize(
    "level, reason, publish_will",
    [(4, R.NORMAL_DISCONNECTION, False), (5, R.NORMAL_DISCONNECTION, False),
     (5, R.DISCONNECT_WITH_WILL_MESSAGE, True), (5, R.UNSPECIFIED_ERROR, True)],
)
def test_3_14_4_client_disconnect_and_the_will(
    level: int, reason: ReasonCode, publish_will: bool
) -> None:
    """[MQTT-3.14.4-3] DISCONNECT 0x00 discards the Will; other 5.0 reasons keep it."""
    harness = Harness(level)
    harness.connect(will=WILL)
    events = harness.send(Disconnect(reason))
    assert events == [DisconnectReceived(reason), ConnectionClosed(reason, publish_will, None)]
    assert harness.received() == []


@pytest.mark.parametrize(
    "will, accepted, expected", [(WILL, True, True), (None, True, False), (WILL, False, False)]
)
def test_3_1_2_5_connection_lost_publishes_the_will(
    will: Will | None, accepted: bool, expected: bool
) -> None:
    """EOF without DISCONNECT publishes the Will of an accepted connection."""
    harness = Harness()
    harness.connect(accept=accepted, will=will)
    harness.conn.receive_data(b"")
    assert closed_event(harness) == ConnectionClosed(None, expected, None)
    harness.conn.receive_data(b"\xc0\x00")  # ignored once closed
    assert harness.conn.events_received() == [] and harness.received() == []


def test_3_14_2_2_2_session_expiry_on_disconnect_after_zero_is_a_protocol_error() -> None:
    """[MQTT-3.14.2-2] a session that expired at once cannot be extended on DISCONNECT."""
    harness = Harness()
    harness.connect()
    harness.send(Disconnect(properties=props(session_expiry_interval=60)))
    assert harness.received() == [Disconnect(R.PROTOCOL_ERROR)]
    harness = Harness()
    harness.connect(properties=props(session_expiry_interval=10))
    events = harness.send(Disconnect(properties=props(session_expiry_interval=60)))
    assert isinstance(events[0], DisconnectReceived)


def test_3_14_server_disconnect() -> None:
    """5.0: DISCONNECT with the reason; 3.1.1 has none, the connection just closes."""
    harness = Harness(5)
    harness.connect(will=WILL)
    with pytest.raises(LocalProtocolError):
        harness.conn.disconnect(R.DISCONNECT_WITH_WILL_MESSAGE)  # client-only reason
    harness.conn.disconnect(R.SERVER_SHUTTING_DOWN, props(reason_string="bye"))
    assert harness.received() == [Disconnect(R.SERVER_SHUTTING_DOWN, props(reason_string="bye"))]
    assert closed_event(harness) == ConnectionClosed(R.SERVER_SHUTTING_DOWN, True, None)
    harness.conn.disconnect()  # no-op once closed
    harness = Harness(4)
    harness.connect()
    harness.conn.disconnect(R.SESSION_TAKEN_OVER)
    assert harness.received() == [] and harness.conn.closed


def test_disconnect_while_connecting_refuses_the_connect() -> None:
    """disconnect() before accept() is a reject(), with 0x80 for non-CONNACK reasons."""
    harness = Harness()
    harness.connect(accept=False)
    harness.conn.disconnect(R.SERVER_SHUTTING_DOWN)
    assert harness.received() == [ConnAck(False, R.UNSPECIFIED_ERROR)]
    silent = Harness()
    silent.conn.disconnect(R.SERVER_SHUTTING_DOWN)
    assert silent.received() == [] and silent.conn.closed


# -- §4.12 enhanced authentication ----------------------------------------------------------------


def test_4_12_enhanced_authentication_exchange() -> None:
    """CONNECT with a method -> AUTH 0x18 <-> AUTH 0x18 ... -> CONNACK, all decided above."""
    harness = Harness()
    method = "SCRAM-SHA-256"
    continue_ = R.CONTINUE_AUTHENTICATION
    harness.connect(
        accept=False, properties=props(authentication_method=method, authentication_data=b"c1")
    )
    harness.conn.auth(continue_, props(authentication_data=b"s1"))
    assert harness.received() == [
        Auth(continue_, props(authentication_method=method, authentication_data=b"s1"))
    ]
    step = props(authentication_method=method, authentication_data=b"c2")
    assert harness.send(Auth(continue_, step)) == [AuthReceived(continue_, step)]
    harness.conn.accept(properties=props(authentication_method=method, authentication_data=b"s2"))
    (connack,) = harness.received()
    assert isinstance(connack, ConnAck) and connack.properties.authentication_data == b"s2"


def test_4_12_1_re_authentication() -> None:
    """After the CONNACK the client may re-authenticate (0x19); the server ends it with 0x00."""
    harness = Harness()
    method = "token"
    harness.connect(properties=props(authentication_method=method))
    events = harness.send(Auth(R.RE_AUTHENTICATE, props(authentication_method=method)))
    assert events == [AuthReceived(R.RE_AUTHENTICATE, props(authentication_method=method))]
    harness.conn.auth(R.SUCCESS)
    assert harness.received() == [Auth(R.SUCCESS, props(authentication_method=method))]


@pytest.mark.parametrize(
    "connect_method, auth",
    [
        (None, Auth(R.CONTINUE_AUTHENTICATION, props(authentication_method="m"))),
        ("m", Auth(R.CONTINUE_AUTHENTICATION, props(authentication_method="other"))),
        ("m", Auth(R.SUCCESS, props(authentication_method="m"))),
    ],
)
def test_4_12_invalid_auth_from_the_client_is_a_protocol_error(
    connect_method: str | None, auth: Auth
) -> None:
    """AUTH without a method in the CONNECT, with another method, or with reason 0x00."""
    harness = Harness()
    harness.connect(properties=props(authentication_method=connect_method))
    events = harness.send(auth)
    assert harness.received() == [Disconnect(R.PROTOCOL_ERROR)]
    assert closed_event(harness, events).error == harness.conn.error


def test_4_12_re_authenticate_before_connack_is_a_protocol_error() -> None:
    """0x19 is only valid once connected: before the CONNACK it is refused with CONNACK 0x82."""
    harness = Harness()
    harness.connect(accept=False, properties=props(authentication_method="m"))
    harness.send(Auth(R.RE_AUTHENTICATE, props(authentication_method="m")))
    assert harness.received() == [ConnAck(False, R.PROTOCOL_ERROR)]


def test_auth_needs_a_5_0_connect_with_a_method() -> None:
    """auth() on a 3.1.1 connection or without a method is API misuse."""
    for level in (4, 5):
        harness = Harness(level)
        harness.connect()
        with pytest.raises(LocalProtocolError):
            harness.conn.auth(R.CONTINUE_AUTHENTICATION)


# -- errors are reported, not raised --------------------------------------------------------------


def test_peer_errors_are_reported_with_a_fresh_remote_protocol_error() -> None:
    """receive_data() never raises for bad input; the error is in ConnectionClosed.error."""
    harness = Harness()
    harness.connect()
    harness.conn.receive_data(b"\x00\x00")  # reserved packet type
    event = closed_event(harness)
    assert isinstance(event.error, RemoteProtocolError)
    assert event.error.hint == R.MALFORMED_PACKET and event.error.__traceback__ is None
    assert harness.received() == [Disconnect(R.MALFORMED_PACKET)]


@pytest.mark.parametrize("packet", [ConnAck(), PingResp()])
def test_server_to_client_packets_from_a_client_are_protocol_errors(packet: object) -> None:
    """CONNACK, SUBACK, UNSUBACK and PINGRESP never go from client to server."""
    harness = Harness()
    harness.connect()
    harness.send(packet)  # type: ignore[arg-type]
    assert harness.received() == [Disconnect(R.PROTOCOL_ERROR)]


def test_decisions_in_the_wrong_state_are_local_errors() -> None:
    """accept() twice, publish() before accept(), suback() for nothing: LocalProtocolError."""
    harness = Harness()
    with pytest.raises(LocalProtocolError):
        harness.conn.accept()
    harness.connect(accept=False)
    with pytest.raises(LocalProtocolError):
        harness.conn.publish("t", b"")
    harness.conn.accept()
    with pytest.raises(LocalProtocolError):
        harness.conn.accept()
    with pytest.raises(LocalProtocolError):
        harness.conn.suback(1, [0])
    with pytest.raises(LocalProtocolError):
        harness.conn.unsuback(1)
    with pytest.raises(LocalProtocolError):
        harness.conn.ack_publish(1)


def test_server_options_reject_impossible_values() -> None:
    """ServerOptions validates what the protocol can express."""
    for bad in (
        {"receive_maximum": 0},
        {"max_packet_size": 1},
        {"maximum_qos": 3},
        {"max_keep_alive": 0},
        {"protocol_levels": frozenset({3})},
        {"topic_alias_maximum": 70000},
        {"max_outbound_inflight": 0},
    ):
        with pytest.raises(ValueError):
            ServerOptions(**bad)


def test_accept_or_reject_after_the_connection_closed_do_nothing() -> None:
    """The client may leave while the upper layer decides: its answer is then ignored."""
    harness = Harness()
    harness.connect(accept=False, will=WILL)
    harness.conn.receive_data(b"")
    harness.conn.accept()
    harness.conn.reject(R.NOT_AUTHORIZED)
    assert harness.received() == []
    assert closed_event(harness) == ConnectionClosed(None, False, None)


def test_3_1_4_a_3_1_1_client_has_nothing_processed_before_the_connack() -> None:
    """Only a 5.0 AUTH is read before the CONNACK; for 3.1.1 even type 15 waits (and is
    malformed once processed after accept())."""
    harness = Harness(4)
    events = harness.send(Connect("c", 4))
    harness.conn.receive_data(b"\xf0\x00")
    assert [type(event) for event in events] == [ConnectReceived]
    assert harness.conn.events_received() == [] and not harness.conn.closed
    harness.conn.accept()
    assert isinstance(harness.conn.events_received()[-1], ConnectionClosed)
    assert harness.received() == [ConnAck()]  # 3.1.1: no DISCONNECT from a server
