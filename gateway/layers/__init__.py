"""Channel layers: the Channels layer API, the in-memory backend and the alias registry.

Public entry points::

    from gateway.layers import get_channel_layer, configure_layers

    configure_layers({"default": {"backend": "memory", "capacity": 100}})
    layer = get_channel_layer()            # alias "default"
    await layer.group_send("room", {"type": "chat.message", "text": "hi"})

See ``docs/layers.md``.
"""

from __future__ import annotations

from gateway.exceptions import ChannelFull, InvalidChannelLayerError
from gateway.layers.base import BaseChannelLayer, compile_capacities
from gateway.layers.memory import InMemoryChannelLayer, InMemoryLayerOptions
from gateway.layers.registry import (
    BACKENDS,
    DEFAULT_CHANNEL_LAYER,
    LayerRegistry,
    backend_options,
    channel_layers,
    configure_layers,
    current_registry,
    get_channel_layer,
    import_backend,
    register_backend,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_CHANNEL_LAYER",
    "BaseChannelLayer",
    "ChannelFull",
    "InMemoryChannelLayer",
    "InMemoryLayerOptions",
    "InvalidChannelLayerError",
    "LayerRegistry",
    "backend_options",
    "channel_layers",
    "compile_capacities",
    "configure_layers",
    "current_registry",
    "get_channel_layer",
    "import_backend",
    "register_backend",
]
