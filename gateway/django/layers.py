"""Channel layers from Django's ``CHANNEL_LAYERS`` setting.

Channels' shape is used as it is (``{"default": {"BACKEND": ..., "CONFIG": {...}}}``); its
``BACKEND`` paths name the gateway's layers (``channels.layers.InMemoryChannelLayer`` is the
in-memory layer, ``channels_redis.core.RedisChannelLayer`` and
``channels_redis.pubsub.RedisPubSubChannelLayer`` the Redis layer), and any other import path
is imported. As in Channels, a layer is built on first use (an error in its entry is raised
then), and ``override_settings(CHANNEL_LAYERS=...)`` in a test changes what
``get_channel_layer()`` returns inside it.

Precedence in the daemon: for an alias that both the YAML ``layers:`` section and
``CHANNEL_LAYERS`` name, the YAML entry wins; the other aliases of ``CHANNEL_LAYERS`` are added.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.layers.registry import LayerRegistry, channel_layers

__all__ = ["apply_setting", "connect_setting_changed", "merged_layers", "settings_layers"]


def settings_layers() -> dict[str, Any]:
    """``settings.CHANNEL_LAYERS`` (empty when unset)."""
    from django.conf import settings

    value = getattr(settings, "CHANNEL_LAYERS", None) or {}
    return dict(value) if isinstance(value, Mapping) else value


def merged_layers(yaml_layers: Mapping[str, Any]) -> dict[str, Any]:
    """``CHANNEL_LAYERS`` with the YAML's aliases on top (the YAML wins for an alias both name)."""
    merged = settings_layers()
    merged.update(yaml_layers)
    return merged


def apply_setting(registry: LayerRegistry = channel_layers) -> None:
    """Configure ``registry`` from ``CHANNEL_LAYERS``, each alias built on first use."""
    registry.configure(settings_layers(), lazy=True)


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "CHANNEL_LAYERS":
        apply_setting()


def connect_setting_changed() -> None:
    """Follow ``override_settings(CHANNEL_LAYERS=...)`` (Django's ``setting_changed`` signal)."""
    from django.core.signals import setting_changed

    setting_changed.connect(_setting_changed, dispatch_uid="gateway.django.layers")
