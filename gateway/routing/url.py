"""``URLRouter`` with Django-style ``path()`` / ``re_path()`` patterns, with or without Django.

``path("room/<str:name>/", app)`` compiles the route as Django's ``RoutePattern`` does
(converters ``str``, ``int``, ``slug``, ``uuid``, ``path``, plus any registered with
:func:`register_converter`); ``re_path(r"^room/(?P<name>\\w+)/$", app)`` takes a regex as
Django's ``RegexPattern`` does (named groups become kwargs, else unnamed groups become args).

Routes made with Django's own ``django.urls.path()`` / ``re_path()`` work too (Django's
converters included), and so does ``include([...])``: the included patterns become a nested
``URLRouter`` under the include's prefix.
"""

from __future__ import annotations

import re
import string
import uuid
from typing import Any, Pattern

from gateway.asgi.app import ASGIApp, Receive, Scope, Send
from gateway.routing.base import matches, not_found

__all__ = [
    "IntConverter",
    "PathConverter",
    "RegexPattern",
    "RoutePattern",
    "SlugConverter",
    "StringConverter",
    "URLPattern",
    "URLRouter",
    "UUIDConverter",
    "path",
    "re_path",
    "register_converter",
]


class StringConverter:
    """Any non-empty text without ``/``."""

    regex = "[^/]+"

    def to_python(self, value: str) -> Any:
        return value

    def to_url(self, value: Any) -> str:
        return str(value)


class IntConverter(StringConverter):
    """Zero or a positive integer, as ``int``."""

    regex = "[0-9]+"

    def to_python(self, value: str) -> int:
        return int(value)


class SlugConverter(StringConverter):
    """ASCII letters, digits, hyphens and underscores."""

    regex = "[-a-zA-Z0-9_]+"


class UUIDConverter(StringConverter):
    """A lowercase hyphenated UUID, as ``uuid.UUID``."""

    regex = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

    def to_python(self, value: str) -> uuid.UUID:
        return uuid.UUID(value)


class PathConverter(StringConverter):
    """Any non-empty text, ``/`` included."""

    regex = ".+"


_CONVERTERS: dict[str, Any] = {
    "str": StringConverter(),
    "int": IntConverter(),
    "slug": SlugConverter(),
    "uuid": UUIDConverter(),
    "path": PathConverter(),
}


def register_converter(converter: Any, type_name: str) -> None:
    """Register a converter (``regex`` attribute, ``to_python``; ``ValueError`` = no match)."""
    _CONVERTERS[type_name] = converter() if isinstance(converter, type) else converter


_PARAMETER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<parameter>[^>]+)>")


def _route_to_regex(route: str, is_endpoint: bool) -> tuple[str, dict[str, Any]]:
    original = route
    parts = ["^"]
    converters: dict[str, Any] = {}
    while True:
        match = _PARAMETER.search(route)
        if not match:
            parts.append(re.escape(route))
            break
        if not set(match.group()).isdisjoint(string.whitespace):
            raise ValueError(f"URL route {original!r} cannot contain whitespace in angle brackets <…>.")
        parts.append(re.escape(route[: match.start()]))
        route = route[match.end():]
        parameter = match["parameter"]
        if not parameter.isidentifier():
            raise ValueError(
                f"URL route {original!r} uses parameter name {parameter!r} which isn't a valid "
                "Python identifier."
            )
        name = match["converter"] or "str"
        try:
            converter = _CONVERTERS[name]
        except KeyError:
            raise ValueError(f"URL route {original!r} uses invalid converter {name!r}.") from None
        if parameter in converters:
            raise ValueError(f"URL route {original!r} uses parameter name {parameter!r} twice.")
        converters[parameter] = converter
        parts.append(f"(?P<{parameter}>{converter.regex})")
    if is_endpoint:
        parts.append(r"\Z")
    return "".join(parts), converters


Match = tuple[str, tuple[Any, ...], dict[str, Any]]


class RoutePattern:
    """A ``path()`` route. ``match(path)`` returns ``(rest, (), kwargs)`` or ``None``."""

    def __init__(self, route: str, is_endpoint: bool = True) -> None:
        self.route = route
        self.is_endpoint = is_endpoint
        source, self.converters = _route_to_regex(route, is_endpoint)
        self.regex: Pattern[str] = re.compile(source)

    def with_endpoint(self, is_endpoint: bool) -> RoutePattern:
        """The same route, matching whole paths (endpoint) or prefixes (for nested routers)."""
        return RoutePattern(self.route, is_endpoint)

    def match(self, path: str) -> Match | None:
        match = self.regex.search(path)
        if match is None:
            return None
        kwargs: dict[str, Any] = match.groupdict()
        for key, value in kwargs.items():
            try:
                kwargs[key] = self.converters[key].to_python(value)
            except ValueError:
                return None
        return path[match.end():], (), kwargs

    def __repr__(self) -> str:
        return f"<RoutePattern {self.route!r}>"


class RegexPattern:
    """A ``re_path()`` regex. Named groups give kwargs; otherwise unnamed groups give args."""

    def __init__(self, regex: str, is_endpoint: bool = True) -> None:
        self.pattern = regex
        self.is_endpoint = is_endpoint
        try:
            self.regex: Pattern[str] = re.compile(regex)
        except re.error as exc:
            raise ValueError(f"{regex!r} is not a valid regular expression: {exc}") from None

    def with_endpoint(self, is_endpoint: bool) -> RegexPattern:
        """The same regex with another endpoint flag."""
        return RegexPattern(self.pattern, is_endpoint)

    def match(self, path: str) -> Match | None:
        if self.is_endpoint and self.pattern.endswith("$"):
            match = self.regex.fullmatch(path)
        else:
            match = self.regex.search(path)
        if match is None:
            return None
        kwargs = {k: v for k, v in match.groupdict().items() if v is not None}
        args = () if kwargs or match.groupdict() else match.groups()
        return path[match.end():], args, kwargs

    def __repr__(self) -> str:
        return f"<RegexPattern {self.pattern!r}>"


class URLPattern:
    """One route: a pattern, the application, default kwargs and an optional name."""

    def __init__(self, pattern: RoutePattern | RegexPattern | _DjangoPattern, callback: ASGIApp,
                 default_args: dict[str, Any] | None = None, name: str | None = None) -> None:
        if not callable(callback):
            raise TypeError(f"the application for {pattern!r} must be an ASGI callable, got {callback!r}")
        self.pattern = pattern
        self.callback = callback
        self.default_args = dict(default_args or {})
        self.name = name

    def __repr__(self) -> str:
        return f"<URLPattern {self.pattern!r} -> {self.callback!r}>"


def path(route: str, view: ASGIApp, kwargs: dict[str, Any] | None = None, name: str | None = None) -> URLPattern:
    """A route with ``<converter:name>`` parameters (Django's ``path``). A leading ``/`` is ignored."""
    return URLPattern(RoutePattern(route.lstrip("/")), view, kwargs, name)


def re_path(route: str, view: ASGIApp, kwargs: dict[str, Any] | None = None, name: str | None = None) -> URLPattern:
    """A route given as a regular expression (Django's ``re_path``)."""
    return URLPattern(RegexPattern(route), view, kwargs, name)


class _DjangoPattern:
    """A Django ``RoutePattern`` / ``RegexPattern`` used as a route pattern here."""

    def __init__(self, pattern: Any) -> None:
        self.pattern = pattern

    def with_endpoint(self, is_endpoint: bool) -> _DjangoPattern:
        pattern = self.pattern
        from gateway._compat.django_urls import pattern_source

        return _DjangoPattern(type(pattern)(pattern_source(pattern), pattern.name, is_endpoint=is_endpoint))

    def match(self, path: str) -> Match | None:
        match: Match | None = self.pattern.match(path)
        return match

    def __repr__(self) -> str:
        return f"<Django {self.pattern.describe()}>"


def _from_django(route: Any) -> URLPattern | None:
    """A Django ``URLPattern`` (``path``/``re_path``) or ``URLResolver`` (``include``) as a
    route here; ``None`` for anything else."""
    if not type(route).__module__.startswith("django."):
        return None
    from django.urls.resolvers import RegexPattern as DjangoRegexPattern
    from django.urls.resolvers import RoutePattern as DjangoRoutePattern
    from django.urls.resolvers import URLPattern as DjangoURLPattern
    from django.urls.resolvers import URLResolver as DjangoURLResolver

    if not isinstance(route.pattern, (DjangoRoutePattern, DjangoRegexPattern)):
        return None  # e.g. i18n_patterns' LocalePrefixPattern
    pattern = _DjangoPattern(route.pattern)
    if isinstance(route, DjangoURLPattern):
        return URLPattern(pattern, route.callback, route.default_args, route.name)
    if isinstance(route, DjangoURLResolver):
        return URLPattern(pattern.with_endpoint(False), URLRouter(list(route.url_patterns)),
                          route.default_kwargs, None)
    return None


class URLRouter:
    """Routes ``http`` and ``websocket`` scopes on their path.

    The outermost router strips ``scope["root_path"]`` from ``scope["path"]``; each router passes
    the unmatched rest down as ``scope["path_remaining"]`` and accumulates ``scope["url_route"] =
    {"args": (...), "kwargs": {...}}``. A route whose application is itself a router (or
    middleware around one) matches a prefix; others must match the whole remaining path. If a
    nested router has no match, the next route of the outer router is tried.

    No match: HTTP 404, WebSocket handshake rejection (see :func:`gateway.routing.base.not_found`).
    """

    _path_routing = True

    def __init__(self, routes: list[URLPattern]) -> None:
        self.routes: list[URLPattern] = []
        for route in routes:
            if not isinstance(route, URLPattern):
                converted = _from_django(route)
                if converted is None:
                    raise TypeError(f"URLRouter routes must be made with path() or re_path(), got {route!r}")
                route = converted
            if getattr(route.callback, "_path_routing", False) is True:
                route = URLPattern(route.pattern.with_endpoint(False), route.callback,
                                   route.default_args, route.name)
            self.routes.append(route)

    @staticmethod
    def _path_of(scope: Scope) -> str | None:
        remaining = scope.get("path_remaining")
        if remaining is not None:
            return remaining.lstrip("/")
        full = scope.get("path")
        if full is None:
            raise ValueError("No 'path' key in connection scope, cannot route URLs")
        root_path = scope.get("root_path") or ""
        if root_path:
            root_path = root_path.rstrip("/")
            if full != root_path and not full.startswith(root_path + "/"):
                return None
            full = full[len(root_path):]
        return full.lstrip("/")

    async def resolve(self, scope: Scope) -> tuple[ASGIApp, Scope] | None:
        """The application and the scope it would get, or ``None`` when nothing matches."""
        target = self._path_of(scope)
        if target is None:
            return None
        outer = scope.get("url_route") or {}
        for route in self.routes:
            found = route.pattern.match(target)
            if found is None:
                continue
            rest, args, kwargs = found
            kwargs.update(route.default_args)
            inner_scope = dict(
                scope,
                path_remaining=rest,
                url_route={
                    "args": tuple(outer.get("args", ())) + tuple(args),
                    "kwargs": {**outer.get("kwargs", {}), **kwargs},
                },
            )
            if await matches(route.callback, inner_scope):
                return route.callback, inner_scope
        return None

    async def matches(self, scope: Scope) -> bool:
        """True if some route (and the application behind it) matches the scope's path."""
        return await self.resolve(scope) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        resolved = await self.resolve(scope)
        if resolved is None:
            return await not_found(scope, receive, send, f"No route found for path {scope.get('path')!r}.")
        application, inner_scope = resolved
        return await application(inner_scope, receive, send)
