"""Routers for messages: ``EmailToRouter`` (recipient address) and ``SMSFromRouter`` /
``SMSToRouter`` (E.164 phone number prefixes).

Scope keys read (``docs/routing.md`` lists the whole ``email`` and ``sms`` scopes):

* ``email``: ``scope["recipients"]``, the envelope recipients (``RCPT TO``) as strings.
* ``sms``: ``scope["from"]`` / ``scope["to"]``, E.164 numbers (``"+447700900123"``).

Multi-recipient email: each recipient is routed on its own (first matching ``regex``, else the
``default``). When all routed recipients reach one application it gets the scope with
``recipients`` narrowed to them. When they reach several, each application runs as its own
instance with its share of the recipients, every inbound event is given to each, and the router
answers upstream once all have answered: ``email.accept`` if all accepted; otherwise the first
temporary (4xx) rejection if any (the sender retries the whole message, so applications that had
accepted may see it again: at-least-once), else the first permanent (5xx) rejection. Other
messages the applications send (e.g. ``email.send``) pass straight through.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any, Pattern, TypeVar

from gateway.asgi.app import ASGIApp, Message, Receive, Scope, Send
from gateway.exceptions import NoRouteFound
from gateway.routing.base import not_found

_R = TypeVar("_R")

__all__ = ["DefaultRoute", "EmailToRouter", "PhoneRoute", "RegexRoute", "SMSFromRouter", "SMSToRouter",
           "default", "phone", "regex"]


class RegexRoute:
    """``regex(pattern, app)``: recipients where ``pattern.search(address)`` finds a match."""

    def __init__(self, pattern: str | Pattern[str], application: ASGIApp, flags: int = re.IGNORECASE) -> None:
        self.regex: Pattern[str] = re.compile(pattern, flags) if isinstance(pattern, str) else pattern
        self.application = application

    def __repr__(self) -> str:
        return f"regex({self.regex.pattern!r}, {self.application!r})"


class DefaultRoute:
    """``default(app)``: what nothing else matched."""

    def __init__(self, application: ASGIApp) -> None:
        self.application = application


class PhoneRoute:
    """``phone("+44", app)``: numbers starting with this E.164 prefix (longest prefix wins)."""

    _clean = re.compile(r"[\s().-]")

    def __init__(self, prefix: str, application: ASGIApp) -> None:
        cleaned = self._clean.sub("", prefix)
        if not re.fullmatch(r"\+\d{0,15}", cleaned):
            raise ValueError(f"phone prefix must be '+' then digits (E.164), got {prefix!r}")
        self.prefix = cleaned
        self.application = application


def regex(pattern: str | Pattern[str], application: ASGIApp, flags: int = re.IGNORECASE) -> RegexRoute:
    """An :class:`EmailToRouter` route; strings compile case-insensitively by default."""
    return RegexRoute(pattern, application, flags)


def phone(prefix: str, application: ASGIApp) -> PhoneRoute:
    """An :class:`SMSFromRouter` / :class:`SMSToRouter` route for an E.164 prefix."""
    return PhoneRoute(prefix, application)


def default(application: ASGIApp) -> DefaultRoute:
    """The fallback route of a message router."""
    return DefaultRoute(application)


def _split_default(routes: Sequence[object], allowed: type[_R], name: str) -> tuple[list[_R], ASGIApp | None]:
    plain: list[_R] = []
    fallback: ASGIApp | None = None
    for route in routes:
        if isinstance(route, DefaultRoute):
            if fallback is not None:
                raise ValueError(f"{name} takes at most one default()")
            fallback = route.application
        elif isinstance(route, allowed):
            plain.append(route)
        else:
            raise TypeError(f"{name} routes must be made with {allowed.__name__} or default(), got {route!r}")
    return plain, fallback


class EmailToRouter:
    """Routes ``email`` scopes on their envelope recipients (see the module docstring)."""

    def __init__(self, routes: Sequence[RegexRoute | DefaultRoute]) -> None:
        self.routes, self.default = _split_default(routes, RegexRoute, "EmailToRouter")

    def route_for(self, address: str) -> ASGIApp | None:
        """The application for one recipient address, or ``None``."""
        for route in self.routes:
            if route.regex.search(address):
                return route.application
        return self.default

    def plan(self, scope: Scope) -> list[tuple[ASGIApp, list[str]]]:
        """``[(application, recipients), ...]`` in first-route order; unrouted recipients omitted."""
        groups: dict[int, tuple[ASGIApp, list[str]]] = {}
        for address in scope.get("recipients") or ():
            application = self.route_for(address)
            if application is not None:
                groups.setdefault(id(application), (application, []))[1].append(address)
        return list(groups.values())

    async def matches(self, scope: Scope) -> bool:
        """True if every recipient in ``scope["recipients"]`` (at least one) has a route.

        At ``RCPT TO`` time the SMTP listener probes with ``{"type": "email", "recipients":
        [address], ...}``.
        """
        recipients = scope.get("recipients") or ()
        return bool(recipients) and all(self.route_for(a) is not None for a in recipients)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        plan = self.plan(scope)
        if not plan:
            return await not_found(scope, receive, send, f"no route for {scope.get('recipients')!r}")
        if len(plan) == 1:
            application, recipients = plan[0]
            return await application(dict(scope, recipients=recipients), receive, send)
        await _fan_out(plan, scope, receive, send)


def _combine(answers: list[Message]) -> Message:
    rejects = [a for a in answers if a.get("type") != "email.accept"]
    if not rejects:
        return {"type": "email.accept"}
    for answer in rejects:
        if 400 <= int(answer.get("code", 451)) < 500:
            return answer
    return rejects[0]


async def _fan_out(plan: list[tuple[ASGIApp, list[str]]], scope: Scope, receive: Receive, send: Send) -> None:
    queues: list[asyncio.Queue[Message]] = [asyncio.Queue() for _ in plan]
    answers: list[Message | None] = [None] * len(plan)
    answered = asyncio.Event()

    def make_send(index: int) -> Send:
        async def sub_send(message: Message) -> None:
            if message.get("type") in ("email.accept", "email.reject"):
                if answers[index] is None:
                    answers[index] = message
                    if all(a is not None for a in answers):
                        answered.set()
                return
            await send(message)
        return sub_send

    async def pump() -> None:
        while True:
            event = await receive()
            for queue in queues:
                queue.put_nowait(dict(event))
            if str(event.get("type", "")).endswith(".disconnect"):
                # Nothing follows a disconnect; a receive() that kept returning it without
                # waiting would otherwise spin this loop forever.
                return

    tasks = [asyncio.ensure_future(app(dict(scope, recipients=rcpts), queues[i].get, make_send(i)))
             for i, (app, rcpts) in enumerate(plan)]
    pumper = asyncio.ensure_future(pump())
    waiter = asyncio.ensure_future(answered.wait())
    try:
        remaining = set(tasks)
        sent = False
        while remaining:
            watch: set[asyncio.Future[Any]] = set(remaining)
            if not pumper.done():
                watch.add(pumper)
            if not sent:
                watch.add(waiter)
            done, _ = await asyncio.wait(watch, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is waiter:
                    continue
                if task is pumper and task.exception() is None:
                    continue  # the disconnect was passed on; the applications finish on their own
                remaining.discard(task)
                failure = task.exception()
                if failure is not None:  # an application failed, or receive() did
                    raise failure
            if not sent and answered.is_set():
                sent = True
                await send(_combine([a for a in answers if a is not None]))
        if not sent:  # all ended; an application that never answered is a temporary failure
            filled = [a or {"type": "email.reject", "code": 451, "text": "4.3.0 not handled"}
                      for a in answers]
            await send(_combine(filled))
    finally:
        for future in [*tasks, pumper, waiter]:
            future.cancel()
        await asyncio.gather(*tasks, pumper, waiter, return_exceptions=True)


class _PhoneRouter:
    key: str = ""

    def __init__(self, routes: Sequence[PhoneRoute | DefaultRoute]) -> None:
        plain, self.default = _split_default(routes, PhoneRoute, type(self).__name__)
        self.table: dict[str, ASGIApp] = {}
        for route in plain:
            if route.prefix in self.table:
                raise ValueError(f"{type(self).__name__}: prefix {route.prefix!r} given twice")
            self.table[route.prefix] = route.application
        self._longest = max((len(p) for p in self.table), default=0)

    def route_for(self, number: str | None) -> ASGIApp | None:
        """The application for a number: the longest matching prefix, else the default."""
        if number:
            table = self.table
            for length in range(min(len(number), self._longest), 0, -1):
                application = table.get(number[:length])
                if application is not None:
                    return application
        return self.default

    async def matches(self, scope: Scope) -> bool:
        """True if the scope's number has a route (or there is a default)."""
        return self.route_for(scope.get(self.key)) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        application = self.route_for(scope.get(self.key))
        if application is None:
            raise NoRouteFound(f"no SMS route for {self.key} number {scope.get(self.key)!r}")
        return await application(scope, receive, send)


class SMSFromRouter(_PhoneRouter):
    """Routes ``sms`` scopes on the sender, ``scope["from"]``, by longest E.164 prefix."""

    key = "from"


class SMSToRouter(_PhoneRouter):
    """Routes ``sms`` scopes on the receiving number, ``scope["to"]`` (several numbers, one
    daemon); ``phone("+15550100", app)`` with the full number routes exactly that number."""

    key = "to"
