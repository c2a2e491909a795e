"""``Deadlines``: equal deadlines on the reactor's clock for one timer."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock

from gateway.protocols.deadlines import Deadlines


def test_deadlines_fall_due_in_order_with_one_timer() -> None:
    clock = MemoryReactorClock()
    deadlines = Deadlines(clock, 10.0)
    fired: list[str] = []
    deadlines.add(lambda: fired.append("a"))
    clock.advance(3)
    deadlines.add(lambda: fired.append("b"))
    assert len(clock.getDelayedCalls()) == 1 and len(deadlines) == 2
    clock.advance(6.9)
    assert fired == []
    clock.advance(0.1)
    assert fired == ["a"] and len(clock.getDelayedCalls()) == 1  # re-armed for b
    clock.advance(3)
    assert fired == ["a", "b"] and not clock.getDelayedCalls() and len(deadlines) == 0


def test_a_cleared_deadline_is_not_called_and_drops_its_callback() -> None:
    clock = MemoryReactorClock()
    deadlines = Deadlines(clock, 5.0)
    fired: list[int] = []
    first = deadlines.add(lambda: fired.append(1))
    deadlines.add(lambda: fired.append(2))
    first.clear()
    assert not first.pending and first.callback is None and len(deadlines) == 1
    first.clear()  # twice: nothing more
    clock.advance(5)
    assert fired == [2]


def test_cleared_deadlines_are_swept_once_most_of_the_queue_is_stale() -> None:
    clock = MemoryReactorClock()
    deadlines = Deadlines(clock, 60.0)
    entries = [deadlines.add(lambda: None) for _ in range(1000)]
    for entry in entries[:-10]:
        entry.clear()
    assert len(deadlines.queue) < 200 and len(deadlines) == 10  # memory follows the pending ones


def test_a_deadline_set_while_others_fall_due_waits_its_full_time() -> None:
    clock = MemoryReactorClock()
    deadlines = Deadlines(clock, 4.0)
    fired: list[tuple[str, float]] = []

    def first() -> None:
        fired.append(("first", clock.seconds()))
        deadlines.add(lambda: fired.append(("third", clock.seconds())))

    deadlines.add(first)
    clock.advance(1)
    deadlines.add(lambda: fired.append(("second", clock.seconds())))
    for _ in range(10):
        clock.advance(1)
    assert fired == [("first", 4.0), ("second", 5.0), ("third", 8.0)]


def test_stop_forgets_everything() -> None:
    clock = MemoryReactorClock()
    deadlines = Deadlines(clock, 1.0)
    fired: list[int] = []
    deadlines.add(lambda: fired.append(1))
    deadlines.stop()
    clock.advance(2)
    assert fired == [] and not clock.getDelayedCalls() and len(deadlines) == 0


@given(st.lists(st.tuples(st.floats(0, 3, allow_nan=False), st.booleans()), max_size=60))
def test_each_pending_deadline_fires_once_when_due(plan: list[tuple[float, bool]]) -> None:
    """Whatever the times they are set at, and which are cleared: every deadline left pending is
    called once, never early, and no later than the clock step that passed its due time."""
    clock = MemoryReactorClock()
    deadlines = Deadlines(clock, 2.5)
    fired: dict[int, float] = {}
    expected: dict[int, float] = {}
    for index, (wait, keep) in enumerate(plan):
        clock.advance(wait)

        def call(index: int = index) -> None:
            assert index not in fired
            fired[index] = clock.seconds()

        deadline = deadlines.add(call)
        if keep:
            expected[index] = deadline.due
        else:
            deadline.clear()
    clock.advance(3)
    clock.pump([0.5] * 10)
    assert set(fired) == set(expected)
    step = max([wait for wait, _ in plan] + [3.0])
    for index, due in expected.items():
        assert due <= fired[index] <= due + step
    assert not clock.getDelayedCalls() and len(deadlines) == 0
