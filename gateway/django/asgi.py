"""The application Django's settings name (the daemon's default with a Django project).

Importing this module sets Django up (``django.setup()``, which imports ``INSTALLED_APPS``;
the daemon does it after installing its reactor) and imports ``ASGI_APPLICATION``; without that
setting, Django's own ASGI handler (HTTP only) is served.

``debug_application`` is the same application with Django's static files served while
``DEBUG`` is on (what ``manage.py rungateway`` runs, like ``runserver``).
"""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

__all__ = ["application", "debug_application", "load"]


def load() -> Any:
    """Set Django up and return the ``ASGI_APPLICATION`` object (or Django's ASGI handler).

    Raises:
        ImproperlyConfigured: ``ASGI_APPLICATION`` does not import.
    """
    django.setup(set_prefix=False)
    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        from django.core.asgi import get_asgi_application

        return get_asgi_application()
    try:
        return import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"ASGI_APPLICATION {path!r} cannot be imported: {exc}") from exc


def with_static_files(app: Any) -> Any:
    """``app`` with ``django.contrib.staticfiles`` serving ``STATIC_URL`` while ``DEBUG`` is on."""
    from django.apps import apps

    if settings.DEBUG and apps.is_installed("django.contrib.staticfiles"):
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        return ASGIStaticFilesHandler(app)
    return app


application = load()
debug_application = with_static_files(application)
