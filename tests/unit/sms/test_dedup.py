"""DedupCache and ConcatBuffer: windows, bounds, joining parts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.protocols.sms.dedup import ConcatBuffer, DedupCache
from gateway.protocols.sms.core import Concat, InboundMessage
from gateway.protocols.sms.phone import normalize


def test_remembered_keys_are_seen_within_the_window_only() -> None:
    cache = DedupCache(window=10, max_entries=100)
    assert not cache.seen("a", 0)
    cache.remember("a", 0)
    assert cache.seen("a", 9.9)
    assert not cache.seen("a", 10)
    assert len(cache) == 0  # expired entries are dropped, not kept


def test_forget_drops_a_key() -> None:
    cache = DedupCache(window=10, max_entries=100)
    cache.remember("a", 0)
    cache.forget("a")
    assert not cache.seen("a", 1)


def test_invalid_limits() -> None:
    with pytest.raises(ValueError):
        DedupCache(0, 1)
    with pytest.raises(ValueError):
        ConcatBuffer(1, 0)


@given(st.lists(st.tuples(st.text(max_size=3), st.floats(0, 5)), max_size=200), st.integers(1, 20))
def test_memory_is_bounded_and_the_newest_are_kept(events: list[tuple[str, float]], limit: int) -> None:
    cache = DedupCache(window=1000, max_entries=limit)
    now = 0.0
    for key, step in events:
        now += step
        cache.remember(key, now)
        assert len(cache) <= limit
        assert cache.seen(key, now)


def part(number: int, total: int = 3, text: str = "", ref: str = "r1", sender: str = "447400123456") -> InboundMessage:
    return InboundMessage(provider="vonage", message_id=f"p{number}", from_=normalize("+" + sender),
                          to=normalize("+441134960000"), text=text or f"<{number}>", encoding="GSM-7", segments=1,
                          concat=Concat(ref, total, number))


def test_parts_join_in_order_once_all_are_in() -> None:
    buffer = ConcatBuffer(window=60)
    key, joined, lost = buffer.add("acct", part(3), 0)
    assert joined is None and lost == []
    assert buffer.add("acct", part(1), 1)[1] is None
    assert buffer.add("acct", part(1), 1)[1] is None  # a repeated part changes nothing
    key, joined, _ = buffer.add("acct", part(2), 2)
    assert joined is not None and joined.text == "<1><2><3>" and joined.segments == 3 and joined.concat is None
    assert joined.message_id == "p1"
    # Kept until discarded, so that a failed hand-over can be retried.
    assert buffer.add("acct", part(2), 3)[1] is not None
    buffer.discard(key)
    assert len(buffer) == 0


def test_sets_are_kept_apart_by_sender_account_and_reference() -> None:
    buffer = ConcatBuffer(window=60)
    buffer.add("a", part(1, 2), 0)
    buffer.add("b", part(1, 2), 0)
    buffer.add("a", part(1, 2, ref="r2"), 0)
    buffer.add("a", part(1, 2, sender="447400999999"), 0)
    assert len(buffer) == 4


def test_stale_and_excess_sets_are_given_up() -> None:
    buffer = ConcatBuffer(window=10, max_sets=2)
    buffer.add("a", part(1, ref="old"), 0)
    _, _, lost = buffer.add("a", part(1, ref="new"), 11)
    assert [len(s.parts) for s in lost] == [1] and len(buffer) == 1
    buffer.add("a", part(1, ref="x"), 12)
    _, _, lost = buffer.add("a", part(1, ref="y"), 12)
    assert len(lost) == 1 and len(buffer) == 2


def test_inconsistent_numbering_drops_the_set() -> None:
    buffer = ConcatBuffer(window=10)
    buffer.add("a", part(1, 3), 0)
    with pytest.raises(ValueError):
        buffer.add("a", part(2, 4), 0)
    assert len(buffer) == 0
    plain = InboundMessage(provider="vonage", message_id="x", from_=normalize("+447400123456"),
                           to=normalize("+441134960000"), text="", encoding="GSM-7", segments=1)
    with pytest.raises(ValueError):
        buffer.add("a", plain, 0)
