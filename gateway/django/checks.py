"""System checks (``manage.py check``): the settings the gateway reads from Django.

* ``gateway.E001``: ``ASGI_APPLICATION`` does not import, or is not callable.
* ``gateway.W001``: ``ASGI_APPLICATION`` is not set (``rungateway`` then serves Django's
  plain ASGI handler: no WebSocket routes).
* ``gateway.E002``: a ``CHANNEL_LAYERS`` entry is malformed, names a backend that does not
  import, or gives options that backend does not take.
* ``gateway.E003``: ``"channels"`` or ``"daphne"`` is also in ``INSTALLED_APPS`` (two apps then
  claim ``runserver``/``runworker`` and the layer settings).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

__all__ = ["check_asgi_application", "check_channel_layers", "check_installed_apps", "register"]


def check_asgi_application(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``ASGI_APPLICATION`` names an importable callable."""
    from django.utils.module_loading import import_string

    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        return [checks.Warning(
            "ASGI_APPLICATION is not set; the gateway serves Django's ASGI handler (HTTP only).",
            hint="Set ASGI_APPLICATION = 'yourproject.asgi.application' (a ProtocolTypeRouter for WebSockets).",
            id="gateway.W001",
        )]
    try:
        application = import_string(path)
    except ImportError as exc:
        return [checks.Error(f"ASGI_APPLICATION {path!r} cannot be imported: {exc}",
                             hint="Use the dotted path of the application object, e.g. 'mysite.asgi.application'.",
                             id="gateway.E001")]
    if not callable(application):
        return [checks.Error(f"ASGI_APPLICATION {path!r} is not callable, so it is not an ASGI application.",
                             id="gateway.E001")]
    return []


def check_channel_layers(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Every ``CHANNEL_LAYERS`` entry would build (checked without building it)."""
    from gateway.exceptions import InvalidChannelLayerError
    from gateway.layers.registry import LayerRegistry

    value = getattr(settings, "CHANNEL_LAYERS", None)
    if not value:
        return []
    try:
        LayerRegistry(value)
    except InvalidChannelLayerError as exc:
        return [checks.Error(f"CHANNEL_LAYERS: {line}", id="gateway.E002") for line in str(exc).splitlines()]
    except Exception as exc:  # a third-party backend's constructor may raise anything
        return [checks.Error(f"CHANNEL_LAYERS: {type(exc).__name__}: {exc}", id="gateway.E002")]
    return []


def check_installed_apps(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Channels' and Daphne's apps are not installed beside the gateway's."""
    return [
        checks.Error(
            f"{name!r} is in INSTALLED_APPS together with 'gateway.django'.",
            hint=f"Remove {name!r}: 'gateway.django' replaces it (manage.py rungateway, CHANNEL_LAYERS).",
            id="gateway.E003",
        )
        for name in ("channels", "daphne")
        if name in settings.INSTALLED_APPS
    ]


def register() -> None:
    """Register the checks with Django's check framework (the app's ``ready()`` calls it)."""
    checks.register(check_asgi_application, checks.Tags.compatibility)
    checks.register(check_channel_layers, checks.Tags.compatibility)
    checks.register(check_installed_apps, checks.Tags.compatibility)
