"""Which protocols a listener can speak: configuration class and listener builder, by name.

Both are import paths so that reading the configuration does not import every protocol. A new
protocol adds one line here, a config dataclass (a subclass of
:class:`gateway.config.schema.ListenerConfig`) and a builder with the signature of
:func:`gateway.protocols.http.listener.build_listener`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from functools import cache
from typing import Any

#: protocol name -> (config class, listener builder), both as "module:attribute".
LISTENER_PROTOCOLS: dict[str, tuple[str, str]] = {
    "http": ("gateway.protocols.http.config:HttpListenerConfig", "gateway.protocols.http.listener:build_listener"),
}


def _resolve(reference: str) -> Any:
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


@cache
def listener_config_classes() -> Mapping[str, Any]:
    """The listener configuration classes by protocol name."""
    return {name: _resolve(config) for name, (config, _builder) in LISTENER_PROTOCOLS.items()}


def listener_builder(protocol: str) -> Any:
    """The function that builds a listener service for ``protocol``."""
    return _resolve(LISTENER_PROTOCOLS[protocol][1])
