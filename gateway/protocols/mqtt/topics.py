# -*- test-case-name: tests.unit.mqtt.test_topics -*-
"""Topic names, topic filters, wildcard matching and shared subscriptions (MQTT §4.7, §4.8.2).

These helpers are shared by the codec (which rejects invalid topics on receive), the broker
(subscription matching) and the router (routing inbound publishes by filter).

* A **topic name** (in PUBLISH, Will Topic, Response Topic) is at least one character long and
  contains neither wildcard (``+``, ``#``) nor U+0000 (§4.7.3, §1.5.4).
* A **topic filter** (in SUBSCRIBE/UNSUBSCRIBE) may use ``+`` for exactly one whole level and
  ``#`` only as the whole last level (§4.7.1). ``$share/{ShareName}/{filter}`` is a shared
  subscription (§4.8.2): the share name is non-empty and has none of ``/``, ``+``, ``#``, and
  the filter after it is a valid non-shared filter. We apply the shared syntax to 3.1.1 clients
  too, as Mosquitto does.
* Matching (:func:`topic_matches`): ``+`` matches one level (possibly empty), ``#`` matches the
  parent level and any number of child levels (``sport/#`` matches ``sport``), and a filter that
  starts with a wildcard does not match a topic starting with ``$`` (§4.7.2).
"""

from __future__ import annotations

__all__ = [
    "InvalidTopicError",
    "SHARED_PREFIX",
    "is_wildcard_filter",
    "parse_shared_subscription",
    "topic_matches",
    "validate_topic_filter",
    "validate_topic_name",
]

#: The prefix that marks a shared subscription's topic filter (§4.8.2).
SHARED_PREFIX = "$share/"
_MAX_BYTES = 65535  # every MQTT string is length-prefixed by a Two Byte Integer (§1.5.4)


class InvalidTopicError(ValueError):
    """A topic name or topic filter breaks the syntax of MQTT §4.7 / §4.8.2."""


def _check_string(value: str, what: str) -> None:
    if not value:
        # §4.7.3: "All Topic Names and Topic Filters MUST be at least one character long".
        raise InvalidTopicError(f"{what} is empty")
    if "\x00" in value:
        # §4.7.3: "MUST NOT include the null character (Unicode U+0000)".
        raise InvalidTopicError(f"{what} contains U+0000")
    # A str of up to 16383 characters cannot exceed 65535 UTF-8 bytes (4 bytes each at most).
    if len(value) > _MAX_BYTES // 4 and len(value.encode("utf-8", "surrogatepass")) > _MAX_BYTES:
        raise InvalidTopicError(f"{what} is longer than 65535 bytes")


def validate_topic_name(name: str) -> None:
    """Check that ``name`` is a valid topic name (PUBLISH, Will Topic, Response Topic).

    Raises:
        InvalidTopicError: the name is empty, longer than 65535 bytes, contains U+0000 or a
            wildcard character (§4.7.1: wildcards "MUST NOT be used within a Topic Name").
    """
    _check_string(name, "topic name")
    if "+" in name or "#" in name:
        raise InvalidTopicError(f"topic name {name!r} contains a wildcard character")


def _check_filter_levels(topic_filter: str) -> None:
    if "+" not in topic_filter and "#" not in topic_filter:
        return  # the common case: no wildcard, nothing to place
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if "#" in level:
            # §4.7.1.2: "#" MUST be on its own or after a separator, and MUST be the last char.
            if level != "#" or index != last:
                raise InvalidTopicError(
                    f"topic filter {topic_filter!r}: '#' must be the whole last level"
                )
        elif "+" in level and level != "+":
            # §4.7.1.3: "+" MUST occupy an entire level of the filter.
            raise InvalidTopicError(
                f"topic filter {topic_filter!r}: '+' must occupy a whole level"
            )


def parse_shared_subscription(topic_filter: str) -> tuple[str | None, str]:
    """Split a topic filter into ``(share_name, filter)``.

    ``"$share/group/sensors/+"`` gives ``("group", "sensors/+")``; a filter that does not start
    with ``$share/`` gives ``(None, topic_filter)`` unchanged. The returned filter is what the
    broker matches topics against.

    Raises:
        InvalidTopicError: ``$share/`` without a valid share name and filter (§4.8.2: the share
            name is at least one character, has no ``/``, ``+`` or ``#``, and "MUST be followed
            by a '/' character. This '/' character MUST be followed by a Topic Filter").
    """
    if not topic_filter.startswith(SHARED_PREFIX):
        return None, topic_filter
    share_name, slash, inner = topic_filter[len(SHARED_PREFIX) :].partition("/")
    if not share_name:
        raise InvalidTopicError(f"shared subscription {topic_filter!r} has an empty share name")
    if "+" in share_name or "#" in share_name:
        raise InvalidTopicError(
            f"shared subscription {topic_filter!r}: the share name contains a wildcard"
        )
    if not slash or not inner:
        raise InvalidTopicError(f"shared subscription {topic_filter!r} has no topic filter")
    return share_name, inner


def validate_topic_filter(topic_filter: str) -> None:
    """Check that ``topic_filter`` is a valid topic filter, shared (``$share/...``) or not.

    Raises:
        InvalidTopicError: the filter is empty, too long, contains U+0000, places a wildcard
            wrongly, or is a malformed shared subscription.
    """
    _check_string(topic_filter, "topic filter")
    _, inner = parse_shared_subscription(topic_filter)
    _check_filter_levels(inner)


def is_wildcard_filter(topic_filter: str) -> bool:
    """True if the filter (after any ``$share/group/`` prefix) contains ``+`` or ``#``."""
    _, inner = parse_shared_subscription(topic_filter)
    return "+" in inner or "#" in inner


def topic_matches(topic_filter: str, topic_name: str) -> bool:
    """True if the (non-shared, valid) ``topic_filter`` matches the ``topic_name`` (§4.7).

    Shared subscriptions are matched by their inner filter: call
    :func:`parse_shared_subscription` first.
    """
    if topic_filter == topic_name:
        # Also right for filters with wildcards: a valid topic name contains none, so equality
        # only happens for wildcard-free filters.
        return True
    first = topic_filter[:1]
    if first != "+" and first != "#":
        if "+" not in topic_filter and "#" not in topic_filter:
            return False  # no wildcard and not equal
    elif topic_name[:1] == "$":
        # §4.7.2: "The Server MUST NOT match Topic Filters starting with a wildcard character
        # (# or +) with Topic Names beginning with a $ character".
        return False
    filter_levels = topic_filter.split("/")
    name_levels = topic_name.split("/")
    count = len(name_levels)
    for index, level in enumerate(filter_levels):
        if level == "#":
            # §4.7.1.2: "#" also matches the parent level ("sport/#" matches "sport").
            return True
        if index >= count:
            return False
        if level != "+" and level != name_levels[index]:
            return False
    return len(filter_levels) == count
