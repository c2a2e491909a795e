"""Django integration: what Channels users import from ``channels.db``, ``channels.sessions``
and ``channels.auth``, under the same names, and the Django app ``gateway.django``.

    INSTALLED_APPS = [..., "gateway.django"]      # replaces "daphne" and "channels"

    from gateway.django import AuthMiddlewareStack, database_sync_to_async, login, logout

The app adds ``manage.py rungateway`` (HTTP and WebSocket with autoreload, static files while
``DEBUG``), system checks for ``ASGI_APPLICATION`` and ``CHANNEL_LAYERS``, and makes
``CHANNEL_LAYERS`` configure the channel layers. See ``docs/django.md``.
"""

from __future__ import annotations

from gateway.django.auth import AuthMiddleware, AuthMiddlewareStack, UserLazyObject, get_user, login, logout
from gateway.django.db import (
    DatabaseSyncToAsync,
    aclose_old_connections,
    close_old_connections,
    database_sync_to_async,
)
from gateway.django.security import AllowedHostsOriginValidator, OriginValidator
from gateway.django.sessions import (
    CookieMiddleware,
    InstanceSessionWrapper,
    SessionMiddleware,
    SessionMiddlewareStack,
)

__all__ = [
    "AllowedHostsOriginValidator",
    "AuthMiddleware",
    "AuthMiddlewareStack",
    "CookieMiddleware",
    "DatabaseSyncToAsync",
    "InstanceSessionWrapper",
    "OriginValidator",
    "SessionMiddleware",
    "SessionMiddlewareStack",
    "UserLazyObject",
    "aclose_old_connections",
    "close_old_connections",
    "database_sync_to_async",
    "get_user",
    "login",
    "logout",
]
