"""``TopicRouter``: routes the ``mqtt.publish`` events of an MQTT connection by topic.

An MQTT client connection is one ``mqtt`` scope; publishes are events inside it. The router is
that scope's application and keeps one sub-instance per routed application (same scope),
started on first use:

* ``mqtt.publish`` events go to the first route whose filter matches ``event["topic"]``, with
  ``event["topic_route"] = {"filter": ..., "args": [...]}`` added (``args``: the levels matched
  by each ``+``, then the rest matched by ``#`` joined with ``/``). A publish no route matches is
  dropped.
* Every other event (``mqtt.connect``, ``mqtt.subscribe``, ``mqtt.unsubscribe``, acks, ...) goes
  to the ``connection`` application, by default the last route's (usually the ``#`` catch-all,
  e.g. the built-in broker), which therefore answers ``mqtt.connect`` and subscriptions.
* ``mqtt.disconnect`` goes to every started sub-instance, then the router returns.

Events are handed over one at a time: the router takes the next event from the server only when
the sub-instance that got the previous one asks for its next event (or ends). So "the consumer has
handled the publish" still means what the listener expects (QoS 1/2 acks are sent after it).

Filters use MQTT semantics: ``+`` matches exactly one level, ``#`` (last) matches the parent level
and any number of levels below, and topics starting with ``$`` are not matched by a filter whose
first level is a wildcard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from gateway.asgi.app import ASGIApp, Message, Receive, Scope, Send

__all__ = ["TopicRoute", "TopicRouter", "topic", "topic_matches"]


def _check_filter(topic_filter: str) -> list[str]:
    if not isinstance(topic_filter, str) or not topic_filter:
        raise ValueError("an MQTT topic filter must be a non-empty string")
    if "\x00" in topic_filter:
        raise ValueError("an MQTT topic filter must not contain NUL")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ValueError(f"'#' must be a whole last level in topic filter {topic_filter!r}")
        if "+" in level and level != "+":
            raise ValueError(f"'+' must be a whole level in topic filter {topic_filter!r}")
    return levels


def _match_levels(levels: list[str], topic_name: str) -> list[str] | None:
    if topic_name.startswith("$") and levels[0] in ("+", "#"):
        return None
    parts = topic_name.split("/")
    args: list[str] = []
    for index, level in enumerate(levels):
        if level == "#":
            args.append("/".join(parts[index:]))
            return args
        if index >= len(parts):
            return None
        if level == "+":
            args.append(parts[index])
        elif level != parts[index]:
            return None
    return args if len(levels) == len(parts) else None


def topic_matches(topic_filter: str, topic_name: str) -> bool:
    """True if ``topic_name`` matches ``topic_filter`` under MQTT rules."""
    return _match_levels(_check_filter(topic_filter), topic_name) is not None


class TopicRoute:
    """``topic("sensors/+/temperature", app)``."""

    def __init__(self, topic_filter: str, application: ASGIApp) -> None:
        self.filter = topic_filter
        self.levels = _check_filter(topic_filter)
        self.application = application

    def match(self, topic_name: str) -> list[str] | None:
        """The wildcard values if ``topic_name`` matches, else ``None``."""
        return _match_levels(self.levels, topic_name)

    def __repr__(self) -> str:
        return f"topic({self.filter!r}, {self.application!r})"


def topic(topic_filter: str, application: ASGIApp) -> TopicRoute:
    """A :class:`TopicRouter` route."""
    return TopicRoute(topic_filter, application)


class _SubInstance:
    """One application instance inside the connection, fed one event at a time."""

    def __init__(self, application: ASGIApp, scope: Scope, send: Send) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.asked: asyncio.Future[None] | None = None
        self.holding = False  # it took an event and has not asked for the next one yet
        self.task = asyncio.ensure_future(application(scope, self.receive, send))

    async def receive(self) -> Message:
        if self.holding:  # asking again: the previous event has been handled
            self.holding = False
            if self.asked is not None and not self.asked.done():
                self.asked.set_result(None)
        event = await self.queue.get()
        self.holding = True
        return event

    async def deliver(self, event: Message) -> None:
        """Give one event; return once the instance asks for the next one or ends."""
        self.asked = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(event)
        await asyncio.wait([self.asked, self.task], return_when=asyncio.FIRST_COMPLETED)
        if self.task.done() and not self.task.cancelled():
            failure = self.task.exception()
            if failure is not None:
                raise failure


class TopicRouter:
    """Routes ``mqtt.publish`` events by topic filter (see the module docstring).

    Args:
        routes: ``[topic(filter, app), ...]``, tried in order.
        connection: the application for connection-level events; default: the last route's.
    """

    def __init__(self, routes: Sequence[TopicRoute], *, connection: ASGIApp | None = None) -> None:
        self.routes = list(routes)
        for route in self.routes:
            if not isinstance(route, TopicRoute):
                raise TypeError(f"TopicRouter routes must be made with topic(), got {route!r}")
        if connection is None and not self.routes:
            raise ValueError("TopicRouter needs routes or a connection application")
        self.connection = connection if connection is not None else self.routes[-1].application

    def resolve(self, topic_name: str) -> tuple[TopicRoute, list[str]] | None:
        """The first matching route and its wildcard values, or ``None``."""
        for route in self.routes:
            args = route.match(topic_name)
            if args is not None:
                return route, args
        return None

    async def matches(self, scope: Scope) -> bool:
        """With a probe scope carrying ``topic``: whether a route matches it; otherwise True."""
        if "topic" not in scope:
            return True
        return self.resolve(scope["topic"]) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        instances: dict[int, _SubInstance] = {}

        def instance(application: ASGIApp) -> _SubInstance:
            current = instances.get(id(application))
            if current is None or current.task.done():
                current = instances[id(application)] = _SubInstance(application, scope, send)
            return current

        try:
            while True:
                event = await receive()
                kind = event.get("type")
                if kind == "mqtt.publish":
                    resolved = self.resolve(event.get("topic", ""))
                    if resolved is None:
                        continue
                    route, args = resolved
                    routed = dict(event, topic_route={"filter": route.filter, "args": args})
                    await instance(route.application).deliver(routed)
                elif kind == "mqtt.disconnect":
                    for sub in list(instances.values()):
                        if not sub.task.done():
                            await sub.deliver(dict(event))
                    return
                else:
                    await instance(self.connection).deliver(event)
        finally:
            for sub in instances.values():
                sub.task.cancel()
            await asyncio.gather(*(s.task for s in instances.values()), return_exceptions=True)
