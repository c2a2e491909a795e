"""ASGI middleware for the programming model: a base class and three real ones.

* :class:`BaseMiddleware` (Channels' name): wraps an application, copies the scope so changes do
  not leak upstream, and forwards :func:`gateway.routing.matches` and URL nesting to the inner app.
* :class:`OriginValidator` / :func:`AllowedHostsOriginValidator`: reject WebSocket handshakes
  whose ``Origin`` is not allowed (the server answers 403).
* :class:`CookieMiddleware`: ``scope["cookies"]`` from the ``Cookie`` header(s).
* :class:`UserMiddleware`: ``scope["user"]`` from a sync or async ``resolve_user(scope)``.
"""

from __future__ import annotations

import datetime
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from email.utils import formatdate
from http.cookies import SimpleCookie, _unquote
from typing import Any
from urllib.parse import ParseResult, urlparse

from asgiref.sync import sync_to_async

from gateway.asgi.app import ASGIApp, Receive, Scope, Send
from gateway.consumers.threads import get_sync_executor
from gateway.routing.base import matches

__all__ = [
    "AllowedHostsOriginValidator",
    "BaseMiddleware",
    "CookieMiddleware",
    "OriginValidator",
    "UserMiddleware",
    "is_same_domain",
    "parse_cookie",
]


class BaseMiddleware:
    """Base class for ASGI middleware.

    Override :meth:`__call__` (call ``super().__call__`` with the changed scope) or
    :meth:`resolve_scope`. Do not keep per-connection state on ``self``: one middleware object
    serves every connection; put it in the scope.
    """

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    @property
    def _path_routing(self) -> bool:
        # Lets URLRouter treat middleware around a nested URLRouter as a prefix route.
        return getattr(self.inner, "_path_routing", False) is True

    async def resolve_scope(self, scope: Scope) -> None:
        """Hook: add keys to the (already copied) scope before the inner application runs."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope = dict(scope)
        await self.resolve_scope(scope)
        return await self.inner(scope, receive, send)

    async def matches(self, scope: Scope) -> bool:
        """Forward the routing question to the inner application."""
        return await matches(self.inner, scope)


def is_same_domain(host: str, pattern: str) -> bool:
    """Django's rule: ``.example.com`` matches ``example.com`` and subdomains; else exact."""
    if not pattern:
        return False
    host, pattern = host.lower(), pattern.lower()
    return pattern == "*" or (
        pattern[0] == "." and (host.endswith(pattern) or host == pattern[1:])
    ) or host == pattern


def _default_port(scheme: str | None) -> int | None:
    return {"http": 80, "ws": 80, "https": 443, "wss": 443}.get(scheme or "")


async def _deny_websocket(receive: Receive, send: Send) -> None:
    message = await receive()
    if message.get("type") == "websocket.connect":
        await send({"type": "websocket.close", "code": 1000})


class OriginValidator(BaseMiddleware):
    """Only let WebSocket handshakes through whose ``Origin`` is allowed.

    Patterns: ``"*"`` (anything, even no Origin), ``"example.com"`` / ``".example.com"`` (host,
    any scheme and port; leading dot = with subdomains), or ``"https://example.com:8443"``
    (scheme, host and port must all match; default ports filled in). Other scope types pass
    through unchecked (Channels raises for them).

    Args:
        application: the inner application.
        allowed_origins: the patterns.
    """

    def __init__(self, application: ASGIApp, allowed_origins: Iterable[str]) -> None:
        super().__init__(application)
        self.application = application
        self.allowed_origins = list(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "websocket":
            return await self.inner(scope, receive, send)
        parsed = None
        for name, value in scope.get("headers", []):
            if name.lower() == b"origin":
                try:
                    parsed = urlparse(value.decode("latin-1"))
                except ValueError:
                    parsed = None
        if self.valid_origin(parsed):
            return await self.inner(scope, receive, send)
        return await _deny_websocket(receive, send)

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        """True if the (parsed) Origin is allowed; a missing one only with ``"*"``."""
        if parsed_origin is None and "*" not in self.allowed_origins:
            return False
        return any(pattern == "*" or self.match_allowed_origin(parsed_origin, pattern)
                   for pattern in self.allowed_origins)

    def match_allowed_origin(self, parsed_origin: ParseResult | None, pattern: str) -> bool:
        """Compare one parsed Origin with one pattern."""
        if parsed_origin is None:
            return False
        try:
            hostname = parsed_origin.hostname
            origin_port = parsed_origin.port or _default_port(parsed_origin.scheme)
        except ValueError:  # bad port
            return False
        if hostname is None:
            return False
        parsed_pattern = urlparse(pattern.lower())
        if not parsed_pattern.scheme:
            pattern_host = urlparse("//" + pattern).hostname or pattern
            return is_same_domain(hostname, pattern_host)
        pattern_port = parsed_pattern.port or _default_port(parsed_pattern.scheme)
        return (
            parsed_pattern.scheme == parsed_origin.scheme
            and origin_port == pattern_port
            and is_same_domain(hostname, parsed_pattern.hostname or "")
        )


def AllowedHostsOriginValidator(  # noqa: N802 - Channels' name
    application: ASGIApp, allowed_hosts: Iterable[str] | None = None
) -> OriginValidator:
    """An :class:`OriginValidator` for host names (default: localhost, 127.0.0.1, [::1])."""
    hosts = list(allowed_hosts) if allowed_hosts is not None else ["localhost", "127.0.0.1", "[::1]"]
    return OriginValidator(application, hosts)


def parse_cookie(cookie: str) -> dict[str, str]:
    """Parse a ``Cookie`` header value into a dict, leniently (Django's ``parse_cookie``)."""
    cookies: dict[str, str] = {}
    for chunk in cookie.split(";"):
        key, sep, value = chunk.partition("=")
        if not sep:
            key, value = "", chunk
        key, value = key.strip(), value.strip()
        if key or value:
            cookies[key] = _unquote(value)
    return cookies


class CookieMiddleware(BaseMiddleware):
    """Sets ``scope["cookies"]`` (``{name: value}``) from every ``Cookie`` request header.

    :meth:`set_cookie` and :meth:`delete_cookie` add ``Set-Cookie`` headers to a response
    message (``http.response.start`` or ``websocket.accept``), with Channels' signatures.
    """

    async def resolve_scope(self, scope: Scope) -> None:
        values = [v.decode("latin-1") for n, v in scope.get("headers", []) if n.lower() == b"cookie"]
        scope["cookies"] = parse_cookie("; ".join(values)) if values else {}

    @classmethod
    def set_cookie(
        cls,
        message: MutableMapping[str, Any],
        key: str,
        value: str = "",
        max_age: int | None = None,
        expires: str | datetime.datetime | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool | None = False,
        httponly: bool | None = False,
        samesite: str | None = "lax",
    ) -> None:
        """Append a ``Set-Cookie`` header to ``message["headers"]``.

        ``expires`` is a ready string or a ``datetime`` (naive = UTC; then ``max_age`` is
        computed from it). A ``max_age`` without ``expires`` sets both.

        Raises:
            ValueError: ``samesite`` is not ``strict``, ``lax`` or ``none``.
        """
        cookies: SimpleCookie = SimpleCookie()
        cookies[key] = str(value)
        morsel = cookies[key]
        if isinstance(expires, datetime.datetime):
            if expires.tzinfo is not None:
                expires = expires.astimezone(datetime.timezone.utc).replace(tzinfo=None)
            delta = expires - datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
            delta += datetime.timedelta(seconds=1)  # the fraction lost on the way
            max_age = max(0, delta.days * 86400 + delta.seconds)
            expires = None
        if expires is not None:
            morsel["expires"] = expires
        if max_age is not None:
            morsel["max-age"] = str(max_age)
            if not expires:
                morsel["expires"] = formatdate(time.time() + max_age, usegmt=True)
        if path is not None:
            morsel["path"] = path
        if domain is not None:
            morsel["domain"] = domain
        if secure:
            morsel["secure"] = True
        if httponly:
            morsel["httponly"] = True
        if samesite is not None:
            if samesite.lower() not in ("strict", "lax", "none"):
                raise ValueError("samesite must be either 'strict', 'lax' or 'none'")
            morsel["samesite"] = samesite
        headers = message.setdefault("headers", [])
        headers.append((b"Set-Cookie", morsel.output(header="").strip().encode("latin-1")))

    @classmethod
    def delete_cookie(cls, message: MutableMapping[str, Any], key: str, path: str | None = "/",
                      domain: str | None = None) -> None:
        """Append a ``Set-Cookie`` header that removes cookie ``key`` from the client."""
        cls.set_cookie(message, key, max_age=0, path=path, domain=domain,
                       expires="Thu, 01 Jan 1970 00:00:00 GMT")


class UserMiddleware(BaseMiddleware):
    """Sets ``scope["user"]`` from ``resolve_user(scope)`` once per scope.

    ``resolve_user`` may be async or sync; a sync one runs on the sync-consumer thread pool (it
    may block, e.g. on a database). Put :class:`CookieMiddleware` outside it to read cookies.

    Args:
        inner: the inner application.
        resolve_user: ``(scope) -> user`` (any object; ``None`` for anonymous).
    """

    def __init__(self, inner: ASGIApp, resolve_user: Callable[[Scope], Any | Awaitable[Any]]) -> None:
        super().__init__(inner)
        self.resolve_user = resolve_user
        self._is_async = inspect.iscoroutinefunction(resolve_user) or inspect.iscoroutinefunction(
            getattr(resolve_user, "__call__", None)
        )

    async def resolve_scope(self, scope: Scope) -> None:
        if self._is_async:
            user = await self.resolve_user(scope)
        else:
            run = sync_to_async(self.resolve_user, thread_sensitive=False, executor=get_sync_executor())
            user = await run(scope)
        scope["user"] = user
