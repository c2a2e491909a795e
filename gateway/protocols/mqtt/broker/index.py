# -*- test-case-name: tests.unit.mqtt.test_broker_index -*-
"""A topic-filter index: which filters match a topic name (MQTT §4.7), fast.

:class:`TopicTree` maps topic filters to small ``{key: value}`` tables (for subscriptions: client
id -> subscription; for shared subscriptions: share name -> group). Filters without wildcards
live in a plain dict (one lookup per publish); filters with ``+`` or ``#`` live in a trie walked
level by level, so matching costs O(levels x wildcard branches), never O(subscriptions).

Matching rules (§4.7.1, §4.7.2): ``+`` matches exactly one level (possibly empty), ``#`` matches
the parent level and any number of levels below (``a/#`` matches ``a``), and a filter whose first
level is a wildcard does not match a topic starting with ``$``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

__all__ = ["TopicTree", "filter_covers"]

V = TypeVar("V")


class _Node:
    __slots__ = ("children", "values")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.values: dict[Any, Any] = {}


def _has_wildcard(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


class TopicTree(Generic[V]):
    """Topic filters -> ``{key: value}`` tables, matched against topic names."""

    def __init__(self) -> None:
        #: Wildcard-free filters: filter -> {key: value}.
        self.exact: dict[str, dict[Any, V]] = {}
        self._root = _Node()
        #: How many (filter, key) entries have a wildcard filter.
        self.wildcard_entries = 0
        self._count = 0

    def __len__(self) -> int:
        """The number of (filter, key) entries."""
        return self._count

    def add(self, topic_filter: str, key: Any, value: V) -> bool:
        """Set ``value`` for ``key`` under ``topic_filter``; True if the entry is new."""
        if not _has_wildcard(topic_filter):
            table = self.exact.get(topic_filter)
            if table is None:
                table = self.exact[topic_filter] = {}
        else:
            node = self._root
            for level in topic_filter.split("/"):
                child = node.children.get(level)
                if child is None:
                    child = node.children[level] = _Node()
                node = child
            table = node.values
        new = key not in table
        table[key] = value
        if new:
            self._count += 1
            if _has_wildcard(topic_filter):
                self.wildcard_entries += 1
        return new

    def get(self, topic_filter: str, key: Any) -> V | None:
        """The value for ``key`` under ``topic_filter``, or None."""
        table = self.table(topic_filter)
        return None if table is None else table.get(key)

    def table(self, topic_filter: str) -> dict[Any, V] | None:
        """The whole ``{key: value}`` table of one filter, or None."""
        if not _has_wildcard(topic_filter):
            return self.exact.get(topic_filter)
        node = self._root
        for level in topic_filter.split("/"):
            node = node.children.get(level)  # type: ignore[assignment]
            if node is None:
                return None
        return node.values

    def remove(self, topic_filter: str, key: Any) -> V | None:
        """Remove the entry for ``key`` under ``topic_filter``; return its value or None."""
        if not _has_wildcard(topic_filter):
            table = self.exact.get(topic_filter)
            if table is None or key not in table:
                return None
            value = table.pop(key)
            if not table:
                del self.exact[topic_filter]
            self._count -= 1
            return value
        path = [self._root]
        levels = topic_filter.split("/")
        for level in levels:
            node = path[-1].children.get(level)
            if node is None:
                return None
            path.append(node)
        table = path[-1].values
        if key not in table:
            return None
        value = table.pop(key)
        self._count -= 1
        self.wildcard_entries -= 1
        # Prune the branch that became empty, from the leaf up.
        for index in range(len(levels), 0, -1):
            node = path[index]
            if node.values or node.children:
                break
            del path[index - 1].children[levels[index - 1]]
        return value

    def match(self, topic: str) -> list[dict[Any, V]]:
        """The tables of every filter matching the topic name ``topic``."""
        found: list[dict[Any, V]] = []
        table = self.exact.get(topic)
        if table:
            found.append(table)
        if self.wildcard_entries:
            _walk(self._root, topic.split("/"), 0, found, topic[:1] == "$")
        return found

    def items(self) -> Iterator[tuple[str, Any, V]]:
        """Every ``(filter, key, value)`` entry."""
        for topic_filter, table in self.exact.items():
            for key, value in table.items():
                yield topic_filter, key, value
        stack: list[tuple[str, _Node]] = [("", self._root)]
        while stack:
            prefix, node = stack.pop()
            for level, child in node.children.items():
                name = level if node is self._root else f"{prefix}/{level}"
                for key, value in child.values.items():
                    yield name, key, value
                stack.append((name, child))


def _walk(node: _Node, levels: list[str], index: int, found: list[dict[Any, Any]], dollar: bool) -> None:
    children = node.children
    wildcards_allowed = index or not dollar  # §4.7.2: no wildcard first level for "$" topics
    if wildcards_allowed:
        hash_node = children.get("#")
        if hash_node is not None and hash_node.values:
            found.append(hash_node.values)  # "#" matches this level and everything below
    if index == len(levels):
        if node.values:
            found.append(node.values)
        return
    if wildcards_allowed:
        plus = children.get("+")
        if plus is not None:
            _walk(plus, levels, index + 1, found, dollar)
    child = children.get(levels[index])
    if child is not None:
        _walk(child, levels, index + 1, found, dollar)


def filter_covers(allowed: str, requested: str) -> bool:
    """True if every topic ``requested`` can match is also matched by ``allowed``.

    Used by subscribe access rules: a client allowed ``sensors/#`` may subscribe to
    ``sensors/+/temperature`` but not to ``#``. Both are valid non-shared filters.
    """
    if allowed == requested:
        return True
    wanted = requested.split("/")
    granted = allowed.split("/")
    if requested[:1] == "$" and granted[0] in ("+", "#"):
        return False  # a wildcard-first filter never reaches "$" topics
    for index, level in enumerate(granted):
        if level == "#":
            return True
        if index >= len(wanted):
            return False
        asked = wanted[index]
        if asked == "#":
            return False
        if level == "+":
            continue
        if asked == "+" or asked != level:
            return False
    return len(wanted) == len(granted)
