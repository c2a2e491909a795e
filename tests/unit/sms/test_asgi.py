"""The ``sms`` mapping, pure: ``SmsOrder`` (what an application may send, and when an event counts
as handled) driven by hypothesis in any order, as the bridge drives it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.sms.asgi import ACK, Held, Send, SmsOrder
from gateway.protocols.sms.core import InboundMessage, StatusUpdate
from gateway.protocols.sms.phone import normalize

US = normalize("+441134960000")
EVENTS = {
    "phone": InboundMessage(provider="generic", message_id="m", from_=normalize("+447400123456"), to=US, text="hi",
                            encoding="GSM-7", segments=1),
    "brand": InboundMessage(provider="generic", message_id="m", from_=normalize("MyBrand"), to=US, text="hi",
                            encoding="GSM-7", segments=1),
    "status": StatusUpdate(provider="generic", message_id="m", status="delivered", provider_status="delivered"),
}


def refuse_nul(texts: Sequence[str]) -> None:
    """An inline answer that cannot carry a NUL (as XML answers cannot)."""
    if any("\x00" in text for text in texts):
        raise LocalProtocolError("not in XML")


def test_a_reply_to_a_status_or_a_brand_is_refused() -> None:
    for kind in ("status", "brand"):
        order = SmsOrder(EVENTS[kind], inline=True)
        with pytest.raises(LocalProtocolError):
            order.app_send({"type": "sms.reply", "text": "x"})
        assert order.held == [] and order.handled is None
    assert isinstance(SmsOrder(EVENTS["status"], inline=True).app_send({"type": "sms.send", "to": "+1555", "text": "x"}), Send)


texts = st.one_of(st.text(max_size=6), st.just("bad\x00"), st.integers(), st.none())
ids = st.one_of(st.none(), st.text(max_size=4), st.integers())


class SmsMessageOrder(RuleBasedStateMachine):
    """A model of docs/asgi-sms.md, as the bridge drives the machine: the event is handled by the
    first sms.ack or by the instance returning, not handled when it fails; the webhook is answered
    once (inline only once handled, the retry status otherwise); every reply accepted goes exactly
    one way: in the success answer, by REST (only once handled), or dropped (not handled)."""

    def __init__(self) -> None:
        super().__init__()
        self.order: SmsOrder
        self.handled: bool | None = None
        self.answer: str | None = None
        self.replies: list[str] = []  # accepted by the machine
        self.inline: list[str] = []  # travelled in the success answer
        self.rest: list[str] = []  # sent by REST
        self.dropped: list[str] = []  # replies to an event that was not handled

    @initialize(kind=st.sampled_from(sorted(EVENTS)), inline=st.booleans())
    def start(self, kind: str, inline: bool) -> None:
        self.kind = kind
        self.inline_allowed = inline
        self.order = SmsOrder(EVENTS[kind], inline=inline, check_inline=refuse_nul)

    def _sent(self, sends: list[Send]) -> None:
        for send in sends:
            assert send.message.to == EVENTS["phone"].from_.value and send.message.from_ == US.value
            self.rest.append(send.message.text)

    def _refused(self, message: Any) -> None:
        state = (self.order.handled, list(self.order.held), self.order.answer)
        with pytest.raises(LocalProtocolError):
            self.order.app_send(message)
        assert (self.order.handled, self.order.held, self.order.answer) == state

    @rule()
    def ack(self) -> None:
        action = self.order.app_send({"type": "sms.ack"})
        if self.handled is None:
            assert action is ACK and self.order.handled is True
            self.handled = True
            self._sent(self.order.after_outcome())
        else:
            assert action is None and self.order.handled is self.handled

    @rule(text=texts, ident=ids)
    def reply(self, text: Any, ident: Any) -> None:
        message: dict[str, Any] = {"type": "sms.reply", "text": text}
        if ident is not None:
            message["id"] = ident
        if not isinstance(text, str) or self.kind != "phone" or (
                self.handled is None and self.inline_allowed and "\x00" in text):
            self._refused(message)
            return
        action = self.order.app_send(message)
        self.replies.append(text)
        if self.handled is None:
            assert isinstance(action, Held) and (action.id, action.text) == (ident, text)
        elif self.handled is False:
            assert action is None
            self.dropped.append(text)
        else:
            assert isinstance(action, Send) and action.id == ident
            self._sent([action])

    @rule(text=texts)
    def send(self, text: Any) -> None:
        message = {"type": "sms.send", "to": "+15550100", "text": text}
        if not isinstance(text, str):
            self._refused(message)
            return
        action = self.order.app_send(message)
        assert isinstance(action, Send) and action.message.to == "+15550100"

    @rule(message=st.one_of(st.just({"type": "sms.receive"}), st.just({"type": "http.response.start"}),
                            st.just({}), st.none(), st.just([])))
    def other(self, message: Any) -> None:
        self._refused(message)

    @precondition(lambda self: self.handled is None)
    @rule(returned=st.booleans())
    def instance_ends(self, returned: bool) -> None:
        held = [text for _, text in self.order.held]
        self._sent(self.order.settle(returned))
        self.handled = returned
        if not returned:
            self.dropped.extend(held)
        assert self.order.settle(not returned) == []  # the first outcome stands

    @precondition(lambda self: self.answer is None and self.handled is True)
    @rule()
    def answer_inline(self) -> None:
        self.answer = "inline"
        self.inline.extend(self.order.answer_inline())

    @precondition(lambda self: self.answer is None and self.handled is not True)
    @rule()
    def answer_retry(self) -> None:
        self.answer = "retry"
        self._sent(self.order.answer_retry())

    @invariant()
    def every_reply_goes_one_way(self) -> None:
        held = [text for _, text in self.order.held]
        assert sorted(held + self.inline + self.rest + self.dropped) == sorted(self.replies)

    @invariant()
    def nothing_goes_before_the_event_is_handled(self) -> None:
        if not self.handled:
            assert self.rest == [] and self.inline == []

    @invariant()
    def held_replies_wait_only_for_an_inline_answer(self) -> None:
        if self.order.held:
            assert self.handled is None or (self.handled and self.answer is None and self.inline_allowed)


TestSmsMessageOrder = SmsMessageOrder.TestCase
