"""Django authentication for consumers (Channels' ``channels.auth``).

``AuthMiddlewareStack(inner)`` = cookies, then the Django session, then ``scope["user"]``: a
lazy object that is the session's user (or ``AnonymousUser``) once the inner application runs.
:func:`login` and :func:`logout` change the session as Django's ``login``/``logout`` do (the
application saves the session afterwards, e.g. ``await scope["session"].asave()``);
:func:`get_user` reads the user of a scope's session.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    _get_backends,
    get_user_model,
    load_backend,
    user_logged_in,
    user_logged_out,
)
from django.utils.crypto import constant_time_compare
from django.utils.functional import LazyObject

from gateway.asgi.app import Receive, Scope, Send
from gateway.django.db import database_sync_to_async
from gateway.django.sessions import CookieMiddleware, SessionMiddleware
from gateway.middleware import BaseMiddleware

__all__ = ["AuthMiddleware", "AuthMiddlewareStack", "UserLazyObject", "get_user", "login", "logout"]

_NO_SESSION = "Cannot find session in scope. You should wrap your consumer in SessionMiddleware."


def _get_user_session_key(session: Any) -> Any:
    # Stored as a string; the user model's primary key type converts it back.
    return get_user_model()._meta.pk.to_python(session[SESSION_KEY])


@database_sync_to_async
def get_user(scope: dict[str, Any]) -> Any:
    """The user of the scope's session, or ``AnonymousUser`` (a session whose password hash no
    longer matches is flushed, as Django does).

    Raises:
        ValueError: the scope has no session.
    """
    from django.contrib.auth.models import AnonymousUser

    if "session" not in scope:
        raise ValueError(_NO_SESSION)
    session = scope["session"]
    user = None
    try:
        user_id = _get_user_session_key(session)
        backend_path = session[BACKEND_SESSION_KEY]
    except KeyError:
        pass
    else:
        if backend_path in settings.AUTHENTICATION_BACKENDS:
            backend = load_backend(backend_path)
            user = backend.get_user(user_id)
            if hasattr(user, "get_session_auth_hash"):
                session_hash = session.get(HASH_SESSION_KEY)
                verified = session_hash and constant_time_compare(session_hash, user.get_session_auth_hash())
                if not verified:
                    session.flush()
                    user = None
    return user or AnonymousUser()


@database_sync_to_async
def login(scope: dict[str, Any], user: Any, backend: str | None = None) -> None:
    """Log ``user`` (default: ``scope["user"]``) in to the scope's session; sets ``scope["user"]``.

    Raises:
        ValueError: no session in the scope, no user, or several authentication backends and
            none named.
    """
    if "session" not in scope:
        raise ValueError(_NO_SESSION)
    session = scope["session"]
    session_auth_hash = ""
    if user is None:
        user = scope.get("user", None)
    if user is None:
        raise ValueError("User must be passed as an argument or must be present in the scope.")
    if hasattr(user, "get_session_auth_hash"):
        session_auth_hash = user.get_session_auth_hash()
    if SESSION_KEY in session:
        if _get_user_session_key(session) != user.pk or (
            session_auth_hash
            and not constant_time_compare(session.get(HASH_SESSION_KEY, ""), session_auth_hash)
        ):
            # Never reuse another user's session: start an empty one.
            session.flush()
    else:
        session.cycle_key()
    try:
        backend = backend or user.backend
    except AttributeError:
        backends = _get_backends(return_tuples=True)
        if len(backends) == 1:
            _, backend = backends[0]
        else:
            raise ValueError(
                "You have multiple authentication backends configured and therefore must provide the "
                "`backend` argument or set the `backend` attribute on the user."
            ) from None
    session[SESSION_KEY] = user._meta.pk.value_to_string(user)
    session[BACKEND_SESSION_KEY] = backend
    session[HASH_SESSION_KEY] = session_auth_hash
    scope["user"] = user
    user_logged_in.send(sender=user.__class__, request=None, user=user)


@database_sync_to_async
def logout(scope: dict[str, Any]) -> None:
    """Flush the scope's session; ``scope["user"]`` (if present) becomes ``AnonymousUser``.

    Raises:
        ValueError: the scope has no session.
    """
    from django.contrib.auth.models import AnonymousUser

    if "session" not in scope:
        raise ValueError(_NO_SESSION)
    session = scope["session"]
    user: Any = scope.get("user", None)
    if hasattr(user, "is_authenticated") and not user.is_authenticated:
        user = None
    if user is not None:
        user_logged_out.send(sender=user.__class__, request=None, user=user)
    session.flush()
    if "user" in scope:
        scope["user"] = AnonymousUser()


class UserLazyObject(LazyObject):
    """``scope["user"]`` until :class:`AuthMiddleware` resolved it."""

    def _setup(self) -> None:
        raise ValueError("Accessing scope user before it is ready.")


class AuthMiddleware(BaseMiddleware):
    """Sets ``scope["user"]`` from the Django session (needs :class:`SessionMiddleware` outside)."""

    def populate_scope(self, scope: Scope) -> None:
        """Add the (unresolved) ``scope["user"]``.

        Raises:
            ValueError: no session in the scope.
        """
        if "session" not in scope:
            raise ValueError("AuthMiddleware cannot find session in scope. SessionMiddleware must be above it.")
        if "user" not in scope:
            scope["user"] = UserLazyObject()

    async def resolve_scope(self, scope: Scope) -> None:
        """Resolve ``scope["user"]`` from the session (a user set further out is kept)."""
        if isinstance(scope["user"], UserLazyObject):
            scope["user"]._wrapped = await get_user(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope = dict(scope)
        self.populate_scope(scope)
        await self.resolve_scope(scope)
        await self.inner(scope, receive, send)


def AuthMiddlewareStack(inner: Any) -> CookieMiddleware:  # noqa: N802 - Channels' name
    """``CookieMiddleware(SessionMiddleware(AuthMiddleware(inner)))``."""
    return CookieMiddleware(SessionMiddleware(AuthMiddleware(inner)))
