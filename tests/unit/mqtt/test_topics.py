"""Topic names, topic filters, wildcard matching and shared subscriptions (MQTT §4.7, §4.8)."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from gateway.protocols.mqtt import (
    InvalidTopicError,
    is_wildcard_filter,
    parse_shared_subscription,
    topic_matches,
    validate_topic_filter,
    validate_topic_name,
)
from tests.strategies.mqtt import topic_filters, topic_names


@pytest.mark.parametrize(
    "topic_filter, topic, expected",
    [
        # §4.7.1.2 multi-level wildcard
        ("sport/tennis/player1/#", "sport/tennis/player1", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
        ("sport/#", "sport", True),
        ("sport/#", "sport/", True),
        ("#", "sport/tennis", True),
        ("#", "/", True),
        ("sport/tennis/#", "sport/tennisplayer1", False),
        # §4.7.1.3 single-level wildcard
        ("sport/tennis/+", "sport/tennis/player1", True),
        ("sport/tennis/+", "sport/tennis/player2", True),
        ("sport/tennis/+", "sport/tennis/player1/ranking", False),
        ("sport/+", "sport", False),
        ("sport/+", "sport/", True),
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("+/tennis/#", "sport/tennis/player1", True),
        ("+/tennis/#", "sport/football", False),
        # no wildcards: exact, case-sensitive, levels may be empty
        ("sport", "sport", True),
        ("sport", "Sport", False),
        ("a//b", "a//b", True),
        ("a//b", "a/b", False),
        ("a/b", "a/b/", False),
    ],
)
def test_4_7_1_wildcard_matching(topic_filter: str, topic: str, expected: bool) -> None:
    """The examples of §4.7.1: '#' matches the parent and any children, '+' one level."""
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize(
    "topic_filter, topic, expected",
    [
        ("#", "$SYS/broker/uptime", False),
        ("+/monitor/Clients", "$SYS/monitor/Clients", False),
        ("$SYS/#", "$SYS/broker/uptime", True),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
        ("$SYS/monitor/Clients", "$SYS/monitor/Clients", True),
        ("+", "$SYS", False),
        ("a/#", "a/$b", True),
    ],
)
def test_4_7_2_dollar_topics_are_not_matched_by_leading_wildcards(
    topic_filter: str, topic: str, expected: bool
) -> None:
    """[MQTT-4.7.2-1] a filter starting with a wildcard does not match a topic starting
    with '$'; a filter naming the '$' level does."""
    assert topic_matches(topic_filter, topic) is expected


@given(topic_names)
def test_a_topic_name_matches_itself_and_hash(topic: str) -> None:
    """Every topic matches itself; '#' matches every topic that does not start with '$'."""
    assert topic_matches(topic, topic)
    assert topic_matches("#", topic) is (not topic.startswith("$"))


@given(topic_names)
def test_plus_per_level_matches_exactly_the_same_depth(topic: str) -> None:
    """A filter of as many '+' as the topic has levels matches it (unless it starts with $)."""
    depth = topic.count("/") + 1
    assert topic_matches("/".join(["+"] * depth), topic) is (not topic.startswith("$"))
    assert not topic_matches("/".join(["+"] * (depth + 1)), topic)


@given(topic_names, st.integers(min_value=0, max_value=5))
def test_hash_after_a_prefix_of_levels_matches(topic: str, cut: int) -> None:
    """'prefix/#' matches a topic when prefix is some of the topic's first levels."""
    levels = topic.split("/")
    prefix = "/".join(levels[: min(cut, len(levels))])
    topic_filter = f"{prefix}/#" if prefix or cut else "#"
    if cut == 0:
        assert topic_matches(topic_filter, topic) is (not topic.startswith("$"))
    elif cut <= len(levels):
        assert topic_matches(topic_filter, topic)


@given(topic_names)
def test_generated_topic_names_are_valid_names_and_filters(topic: str) -> None:
    """A topic name is also a valid (wildcard-free) topic filter."""
    validate_topic_name(topic)
    validate_topic_filter(topic)
    assert not is_wildcard_filter(topic)


@given(topic_filters)
def test_generated_topic_filters_are_valid(topic_filter: str) -> None:
    """The strategy's filters pass validation; shared ones split into name and filter."""
    validate_topic_filter(topic_filter)
    share_name, inner = parse_shared_subscription(topic_filter)
    assert (share_name is not None) is topic_filter.startswith("$share/")
    if share_name is not None:
        assert topic_filter == f"$share/{share_name}/{inner}"


@pytest.mark.parametrize("name", ["", "a/+", "#", "a/#", "a\x00b", "sport+"])
def test_4_7_3_invalid_topic_names(name: str) -> None:
    """Empty names, wildcards and U+0000 are not valid topic names."""
    with pytest.raises(InvalidTopicError):
        validate_topic_name(name)


def test_4_7_3_topic_names_longer_than_65535_bytes_are_invalid() -> None:
    """Strings are length-prefixed by two bytes: 65535 UTF-8 bytes at most."""
    validate_topic_name("a" * 65535)
    with pytest.raises(InvalidTopicError):
        validate_topic_name("é" * 32768)


@pytest.mark.parametrize(
    "topic_filter",
    ["#", "+", "+/+", "/+", "sport/#", "sport/+/player1", "a//#", "$SYS/#", "$share"],
)
def test_4_7_1_valid_topic_filters(topic_filter: str) -> None:
    """Wildcards on whole levels, '#' last; "$share" alone is an ordinary filter."""
    validate_topic_filter(topic_filter)


@pytest.mark.parametrize(
    "topic_filter",
    ["", "sport/tennis#", "sport/tennis/#/ranking", "sport+", "+a/b", "a/#/#", "a\x00"],
)
def test_4_7_1_invalid_topic_filters(topic_filter: str) -> None:
    """'#' must be the whole last level and '+' a whole level."""
    with pytest.raises(InvalidTopicError):
        validate_topic_filter(topic_filter)


@pytest.mark.parametrize(
    "topic_filter, expected",
    [
        ("$share/consumer1/sport/tennis/+", ("consumer1", "sport/tennis/+")),
        ("$share/consumer2/#", ("consumer2", "#")),
        ("$share/g//a", ("g", "/a")),
        ("sport/#", (None, "sport/#")),
        ("$shared/g/a", (None, "$shared/g/a")),
    ],
)
def test_4_8_2_shared_subscription_parsing(
    topic_filter: str, expected: tuple[str | None, str]
) -> None:
    """$share/{ShareName}/{filter} splits into the share name and the filter to match."""
    assert parse_shared_subscription(topic_filter) == expected
    validate_topic_filter(topic_filter)


@pytest.mark.parametrize(
    "topic_filter",
    [
        "$share/",
        "$share//a",
        "$share/g",
        "$share/g/",
        "$share/g+/a",
        "$share/#/a",
        "$share/g/a/#/b",
    ],
)
def test_4_8_2_invalid_shared_subscriptions(topic_filter: str) -> None:
    """[MQTT-4.8.2-1], [MQTT-4.8.2-2]: a non-empty share name without '+', '#', followed by
    '/' and a valid topic filter."""
    with pytest.raises(InvalidTopicError):
        validate_topic_filter(topic_filter)


def test_is_wildcard_filter_looks_past_the_share_prefix() -> None:
    """A shared subscription is a wildcard subscription only if its inner filter is."""
    assert is_wildcard_filter("$share/g/a/+")
    assert not is_wildcard_filter("$share/g/a/b")
    assert is_wildcard_filter("#")
