"""Django sessions for HTTP and WebSocket scopes (Channels' ``channels.sessions``).

``SessionMiddlewareStack(inner)`` = :class:`CookieMiddleware` around :class:`SessionMiddleware`:
``scope["session"]`` is a session of Django's ``SESSION_ENGINE`` found from the session cookie
(read from the store on first use). When the application starts its answer (``http.response.start``,
or ``websocket.accept`` for a WebSocket handshake) and the session was modified (or
``SESSION_SAVE_EVERY_REQUEST`` is on), the session is saved and the cookie set on that message,
with Django's ``SESSION_COOKIE_*`` settings. A session modified after the answer started must be
saved by the application (``await scope["session"].asave()``).
"""

from __future__ import annotations

import time
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import UpdateError
from django.core.exceptions import SuspiciousOperation
from django.utils.http import http_date

from gateway.asgi.app import Receive, Scope, Send
from gateway.django.db import database_sync_to_async
from gateway.middleware import CookieMiddleware

__all__ = ["CookieMiddleware", "InstanceSessionWrapper", "SessionMiddleware", "SessionMiddlewareStack"]


class InstanceSessionWrapper:
    """The session of one application instance: its scope and the ``send`` that saves it."""

    #: Messages that save a modified session and carry its cookie back to the client.
    save_message_types = ("http.response.start", "websocket.accept")
    cookie_response_message_types = ("http.response.start", "websocket.accept")

    def __init__(self, scope: Scope, send: Any) -> None:
        self.cookie_name = settings.SESSION_COOKIE_NAME
        self.session_store = import_module(settings.SESSION_ENGINE).SessionStore
        self.scope = dict(scope)
        if "session" in self.scope:
            # A session middleware further out owns the session (and saves it).
            self.activated = False
        else:
            if "cookies" not in self.scope:
                raise ValueError(
                    "No cookies in scope - SessionMiddleware needs to run inside of CookieMiddleware."
                )
            # Creating the store reads nothing: the session loads on first use.
            self.scope["session"] = self.session_store(self.scope["cookies"].get(self.cookie_name))
            self.activated = True
        self.real_send = send

    async def resolve_session(self) -> None:
        """Kept for Channels compatibility (the session is set up in the constructor)."""

    async def send(self, message: dict[str, Any]) -> None:
        """Save the session and set its cookie on the first answer message, then send it."""
        if self.activated and message["type"] in self.save_message_types:
            session = self.scope["session"]
            if message.get("status", 200) != 500 and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST):
                empty = session.is_empty()
                await self.save_session()
                if message["type"] in self.cookie_response_message_types:
                    message = dict(message, headers=list(message.get("headers") or []))
                    self._set_cookie(message, session, empty)
        await self.real_send(message)

    def _set_cookie(self, message: dict[str, Any], session: Any, empty: bool) -> None:
        if empty:
            if self.cookie_name in self.scope["cookies"]:
                CookieMiddleware.delete_cookie(
                    message, self.cookie_name, path=settings.SESSION_COOKIE_PATH, domain=settings.SESSION_COOKIE_DOMAIN
                )
            return
        if session.get_expire_at_browser_close():
            max_age = None
            expires = None
        else:
            max_age = session.get_expiry_age()
            expires = http_date(time.time() + max_age)
        CookieMiddleware.set_cookie(
            message,
            self.cookie_name,
            session.session_key,
            max_age=max_age,
            expires=expires,
            domain=settings.SESSION_COOKIE_DOMAIN,
            path=settings.SESSION_COOKIE_PATH,
            secure=settings.SESSION_COOKIE_SECURE or None,
            httponly=settings.SESSION_COOKIE_HTTPONLY or None,
            samesite=settings.SESSION_COOKIE_SAMESITE,
        )

    async def save_session(self) -> None:
        """Save the session.

        Raises:
            SuspiciousOperation: the session was deleted meanwhile (e.g. a logout elsewhere).
        """
        session = self.scope["session"]
        try:
            if hasattr(session, "asave"):
                await session.asave()
            else:
                await database_sync_to_async(session.save)()
        except UpdateError:
            raise SuspiciousOperation(
                "The request's session was deleted before the request completed. "
                "The user may have logged out in a concurrent request, for example."
            ) from None


class SessionMiddleware:
    """Adds ``scope["session"]`` (Django sessions) to HTTP and WebSocket scopes.

    Needs :class:`CookieMiddleware` further out (use :func:`SessionMiddlewareStack`).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def _path_routing(self) -> bool:
        return getattr(self.inner, "_path_routing", False) is True

    async def matches(self, scope: dict[str, Any]) -> bool:
        """Forward the routing question to the inner application."""
        from gateway.routing.base import matches

        return await matches(self.inner, scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wrapper = InstanceSessionWrapper(scope, send)
        await wrapper.resolve_session()
        return await self.inner(wrapper.scope, receive, wrapper.send)


def SessionMiddlewareStack(inner: Any) -> CookieMiddleware:  # noqa: N802 - Channels' name
    """``CookieMiddleware(SessionMiddleware(inner))``."""
    return CookieMiddleware(SessionMiddleware(inner))
