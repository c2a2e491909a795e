"""The MQTT application rules as a state machine: what may be sent when (``ScopeState``) and
"acknowledged only once handled" (``HandlingRules``), against a model, in any order."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gateway.asgi.instance import ClientDisconnected
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.mqtt.asgi import (
    Accept, AckPublish, AnswerSubscribe, AnswerUnsubscribe, AuthStep, Close, Deliver, PropertiesDict, Refuse,
    ScopeState, properties_from_dict, properties_to_dict,
)
from gateway.protocols.mqtt.packets import Subscribe, Subscription, Unsubscribe
from gateway.protocols.mqtt.properties import Properties

CONNECTING, CONNECTED, CLOSED = "connecting", "connected", "closed"


class MqttRules(RuleBasedStateMachine):
    """Model: the events queued (in order), the one the application holds, what is owed."""

    @initialize()
    def start(self) -> None:
        self.state: ScopeState[Any] = ScopeState()
        self.model = CONNECTING
        self.events: list[tuple[str, int] | None] = []  # queued, in order
        self.held = -1  # index of the event the application holds (-1: it has not asked yet)
        self.owed: dict[tuple[str, int], Any] = {}  # (kind, packet id) -> request
        self.answered: list[tuple[str, int]] = []
        self.next_id = 0

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    # -- the client's side ---------------------------------------------------------------------

    @rule(qos=st.sampled_from([0, 1, 2]))
    def client_publishes(self, qos: int) -> None:
        if self.model == CLOSED:
            return
        packet_id = self._new_id() if qos else None
        self.state.rules.put_publish(packet_id)
        if packet_id is None:
            self.events.append(None)
        else:
            self.events.append(("publish", packet_id))
            self.owed[("publish", packet_id)] = None

    @rule(count=st.integers(1, 3))
    def client_subscribes(self, count: int) -> None:
        if self.model == CLOSED:
            return
        packet_id = self._new_id()
        request = Subscribe(packet_id, tuple(Subscription(f"t/{i}", 1) for i in range(count)))
        self.state.rules.put_subscribe(packet_id, request)
        self.events.append(("subscribe", packet_id))
        self.owed[("subscribe", packet_id)] = request

    @rule()
    def client_unsubscribes(self) -> None:
        if self.model == CLOSED:
            return
        packet_id = self._new_id()
        request = Unsubscribe(packet_id, ("t/0",))
        self.state.rules.put_unsubscribe(packet_id, request)
        self.events.append(("unsubscribe", packet_id))
        self.owed[("unsubscribe", packet_id)] = request

    @rule()
    def client_authenticates(self) -> None:
        if self.model != CLOSED:
            self.state.rules.put_other()
            self.events.append(None)

    @rule()
    def connection_ends(self) -> None:
        self.state.closed()
        self.model = CLOSED
        self.owed.clear()
        self.events.clear()
        self.held = -1

    # -- the application's side ----------------------------------------------------------------

    @precondition(lambda self: self.held == -1 or bool(self.events))  # else it waits
    @rule()
    def application_asks_for_the_next_event(self) -> None:
        answer = self.state.rules.next_asked()
        if self.held == -1:
            assert answer is None
            self.held = 0
            return
        entry = self.events.pop(0)  # the one it held is handled; the next is now held
        expected = entry if entry is not None and entry in self.owed else None
        if expected is None:
            assert answer is None
            return
        request = self.owed.pop(expected)
        self.answered.append(expected)
        kind, packet_id = expected
        assert answer is not None and answer.packet_id == packet_id
        if kind == "publish":
            assert isinstance(answer, AckPublish) and answer.reason_code == 0
        elif kind == "subscribe":
            assert isinstance(answer, AnswerSubscribe) and answer.request is request
            assert answer.reason_codes == [0x80] * len(request.subscriptions)  # refused
        else:
            assert isinstance(answer, AnswerUnsubscribe) and answer.reason_codes is None  # confirmed

    def _send(self, message: Any) -> Any:
        before = (self.state.state, dict(self.state.rules.publishes), dict(self.state.rules.subscribes),
                  dict(self.state.rules.unsubscribes))
        try:
            return self.state.app_send(message)
        except (LocalProtocolError, ClientDisconnected):
            after = (self.state.state, dict(self.state.rules.publishes), dict(self.state.rules.subscribes),
                     dict(self.state.rules.unsubscribes))
            assert after == before  # a refused message changes nothing
            raise

    @rule(present=st.sampled_from([None, True, False]))
    def application_accepts(self, present: bool | None) -> None:
        if self.model == CONNECTING:
            action = self._send({"type": "mqtt.accept", "session_present": present})
            assert isinstance(action, Accept) and action.session_present == present
            self.model = CONNECTED
        else:
            self._expect_refusal({"type": "mqtt.accept"})

    @rule(code=st.sampled_from([None, 0x80, 0x87, 0x8B]))
    def application_closes(self, code: int | None) -> None:
        message: dict[str, Any] = {"type": "mqtt.close"}
        if code is not None:
            message["reason_code"] = code
        if self.model == CLOSED:
            self._expect_refusal(message)
            return
        action = self._send(message)
        if self.model == CONNECTING:
            assert isinstance(action, Refuse) and action.reason_code == (0x87 if code is None else code)
        else:
            assert isinstance(action, Close) and action.reason_code == (0 if code is None else code)
        self.connection_ends()

    @rule(qos=st.sampled_from([0, 1, 2, 3, "1"]))
    def application_publishes(self, qos: Any) -> None:
        message = {"type": "mqtt.publish", "topic": "down", "payload": b"x", "qos": qos}
        if self.model != CONNECTED or qos not in (0, 1, 2):
            self._expect_refusal(message)
            return
        action = self._send(message)
        assert isinstance(action, Deliver) and (action.topic, action.payload, action.qos) == ("down", b"x", qos)

    @rule(kind=st.sampled_from(["publish", "subscribe", "unsubscribe"]), by_id=st.booleans(),
          stale=st.booleans())
    def application_answers(self, kind: str, by_id: bool, stale: bool) -> None:
        message_type = {"publish": "mqtt.puback", "subscribe": "mqtt.suback", "unsubscribe": "mqtt.unsuback"}[kind]
        pending = [pid for (k, pid) in self.owed if k == kind]
        message: dict[str, Any] = {"type": message_type}
        if kind == "subscribe":
            message["reason_codes"] = [1]
        if stale:
            message["packet_id"] = 10_000 + self.next_id  # never used
            target = None
        elif by_id and pending:
            message["packet_id"] = pending[0]
            target = pending[0]
        else:
            held = self.events[0] if self.held == 0 and self.events else None
            if held is not None and held[0] == kind and held in self.owed:
                target = held[1]
            elif len(pending) == 1:
                target = pending[0]
            else:
                target = None
        if self.model != CONNECTED or target is None:
            self._expect_refusal(message)
            return
        action = self._send(message)
        assert action.packet_id == target
        self.owed.pop((kind, target))
        self.answered.append((kind, target))

    @rule(kind=st.sampled_from(["mqtt.subscribe", "http.response.start", "mqtt.ack", 42]))
    def application_sends_nonsense(self, kind: Any) -> None:
        self._expect_refusal({"type": kind})

    @rule()
    def application_authenticates(self) -> None:
        if self.model == CLOSED:
            self._expect_refusal({"type": "mqtt.auth"})
        else:
            assert isinstance(self._send({"type": "mqtt.auth"}), AuthStep)

    def _expect_refusal(self, message: Any) -> None:
        expected = ClientDisconnected if self.model == CLOSED else LocalProtocolError
        with pytest.raises(expected):
            self._send(message)

    # -- what always holds ---------------------------------------------------------------------

    @invariant()
    def owed_is_what_the_rules_keep(self) -> None:
        rules = self.state.rules
        assert {("publish", pid) for pid in rules.publishes} | {("subscribe", pid) for pid in rules.subscribes} | {
            ("unsubscribe", pid) for pid in rules.unsubscribes} == set(self.owed)

    @invariant()
    def nothing_is_answered_twice(self) -> None:
        assert len(self.answered) == len(set(self.answered))


TestMqttRules = MqttRules.TestCase


def test_properties_handed_back_unchanged_are_not_converted_again() -> None:
    original = Properties(content_type="text/plain", user_properties=(("k", "v"),))
    as_dict = properties_to_dict(original)
    assert isinstance(as_dict, PropertiesDict) and as_dict == {"content_type": "text/plain", "user_properties": [["k", "v"]]}
    assert properties_from_dict(as_dict) is original
    as_dict["user_properties"][0][1] = "changed"  # a change inside is seen
    assert properties_from_dict(as_dict) == Properties(content_type="text/plain", user_properties=(("k", "changed"),))
    again = properties_to_dict(original)
    again["content_type"] = "application/json"  # and a change of the dict itself
    assert properties_from_dict(again).content_type == "application/json"


def test_an_answer_without_packet_id_goes_to_the_held_event_else_the_only_one_waiting() -> None:
    state: ScopeState[Any] = ScopeState()
    rules = state.rules
    state.app_send({"type": "mqtt.accept"})
    rules.put_publish(1)
    rules.put_publish(2)
    assert rules.next_asked() is None  # the application holds publish 1
    assert state.app_send({"type": "mqtt.puback"}).packet_id == 1  # the held one
    with pytest.raises(LocalProtocolError, match="no mqtt.publish awaits an answer"):
        state.app_send({"type": "mqtt.puback", "packet_id": 1})  # answered already
    assert state.app_send({"type": "mqtt.puback"}).packet_id == 2  # the only one waiting
    assert rules.next_asked() is None  # publish 1 was answered: nothing more is owed for it
    assert rules.publishes == {}
