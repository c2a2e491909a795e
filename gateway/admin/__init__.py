"""The admin listener (``protocol: admin``): ``/metrics``, ``/healthz``, ``/readyz`` and the live
status page at ``/``, served by an HTTP listener with a built-in ASGI application.

See ``docs/operations.md``.
"""

from __future__ import annotations

__all__ = ["AdminListenerConfig", "build_listener"]


def __getattr__(name: str) -> object:
    if name == "AdminListenerConfig":
        from gateway.admin.config import AdminListenerConfig

        return AdminListenerConfig
    if name == "build_listener":
        from gateway.admin.listener import build_listener

        return build_listener
    raise AttributeError(name)
