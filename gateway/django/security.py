"""Origin checks for WebSocket handshakes with Django's ``ALLOWED_HOSTS`` (Channels'
``channels.security.websocket``)."""

from __future__ import annotations

from typing import Any

from gateway.middleware import OriginValidator

__all__ = ["AllowedHostsOriginValidator", "OriginValidator"]


def AllowedHostsOriginValidator(application: Any) -> OriginValidator:  # noqa: N802 - Channels' name
    """An :class:`OriginValidator` allowing the hosts of ``settings.ALLOWED_HOSTS``.

    As in Django (and Channels), an empty ``ALLOWED_HOSTS`` with ``DEBUG`` on allows
    ``localhost``, ``127.0.0.1`` and ``[::1]``.
    """
    from django.conf import settings

    allowed_hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return OriginValidator(application, allowed_hosts)
