"""The broker's topic index and filter coverage, against the reference matcher."""

from __future__ import annotations

from hypothesis import given, strategies as st

from gateway.protocols.mqtt import topic_matches
from gateway.protocols.mqtt.broker.index import TopicTree, filter_covers
from tests.strategies.mqtt import _plain_filters, topic_names

plain_filters = _plain_filters()


@given(st.lists(plain_filters, max_size=12, unique=True), topic_names)
def test_match_finds_exactly_the_matching_filters(filters: list[str], topic: str) -> None:
    tree: TopicTree[str] = TopicTree()
    for index, topic_filter in enumerate(filters):
        tree.add(topic_filter, index, topic_filter)
    found = sorted(value for table in tree.match(topic) for value in table.values())
    assert found == sorted(f for f in filters if topic_matches(f, topic))


@given(st.lists(plain_filters, min_size=1, max_size=10, unique=True), st.data())
def test_remove_prunes_and_keeps_the_rest(filters: list[str], data: st.DataObject) -> None:
    tree: TopicTree[str] = TopicTree()
    for topic_filter in filters:
        tree.add(topic_filter, "k", topic_filter)
    gone = data.draw(st.sampled_from(filters))
    assert tree.remove(gone, "k") == gone
    assert tree.remove(gone, "k") is None
    assert len(tree) == len(filters) - 1
    assert sorted(f for f, _key, _value in tree.items()) == sorted(f for f in filters if f != gone)
    assert tree.get(gone, "k") is None


def test_entries_per_key_and_counts() -> None:
    tree: TopicTree[int] = TopicTree()
    assert tree.add("a/+", "x", 1) is True
    assert tree.add("a/+", "x", 2) is False  # replaced
    tree.add("a/+", "y", 3)
    tree.add("a/b", "x", 4)
    assert tree.wildcard_entries == 2 and len(tree) == 3
    assert [dict(t) for t in tree.match("a/b")] == [{"x": 4}, {"x": 2, "y": 3}]
    assert tree.match("$a/b") == []


@given(plain_filters, plain_filters, topic_names)
def test_filter_covers_is_sound(allowed: str, requested: str, topic: str) -> None:
    # If allowed covers requested, every topic requested matches is matched by allowed.
    if filter_covers(allowed, requested) and topic_matches(requested, topic):
        assert topic_matches(allowed, topic)


def test_filter_covers_examples() -> None:
    assert filter_covers("sensors/#", "sensors/+/temp")
    assert filter_covers("sensors/+/temp", "sensors/+/temp")
    assert filter_covers("#", "a/b")
    assert not filter_covers("sensors/+", "sensors/#")
    assert not filter_covers("sensors/#", "#")
    assert not filter_covers("a/b", "a/+")
    assert not filter_covers("#", "$SYS/x")
    assert filter_covers("$SYS/#", "$SYS/x")


@given(topic_names, st.binary(max_size=300), st.integers(0, 2), st.booleans(), st.integers(1, 65535),
       st.sampled_from([4, 5]), st.sampled_from([None, "text/plain"]))
def test_shared_encodings_equal_the_codec(topic: str, payload: bytes, qos: int, retain: bool, packet_id: int,
                                          level: int, content_type: str | None) -> None:
    """The broker's once-per-level encodings (fan-out path) are exactly what ``encode`` gives."""
    from gateway.protocols.mqtt import EMPTY_PROPERTIES, Properties, Publish, encode
    from gateway.protocols.mqtt.broker.session import Message

    props = Properties(content_type=content_type) if content_type else EMPTY_PROPERTIES
    message = Message(topic, payload, qos, retain, props)
    expected_props = props if level == 5 else EMPTY_PROPERTIES
    head, tail = message.parts(level, qos, retain)
    pid = packet_id if qos else None
    wanted = encode(Publish(topic, payload, qos, retain, False, pid, expected_props), level)
    assert (head + packet_id.to_bytes(2, "big") + tail if qos else head + tail) == wanted
    if not qos:
        assert message.wire(level, retain) == wanted
