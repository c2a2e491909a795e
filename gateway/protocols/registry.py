"""Which protocols a listener can speak: configuration class and listener builder, by name.

Both are import paths so that reading the configuration does not import every protocol. A new
protocol adds one line here, a config dataclass (a subclass of
:class:`gateway.config.schema.ListenerConfig`) and a builder with the signature of
:func:`gateway.protocols.http.listener.build_listener`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

#: protocol name -> (config class, listener builder), both as "module:attribute".
LISTENER_PROTOCOLS: dict[str, tuple[str, str]] = {
    "http": ("gateway.protocols.http.config:HttpListenerConfig", "gateway.protocols.http.listener:build_listener"),
    "mqtt": ("gateway.protocols.mqtt.config:MqttListenerConfig", "gateway.protocols.mqtt.listener:build_listener"),
    "smtp": ("gateway.protocols.smtp.config:SmtpListenerConfig", "gateway.protocols.smtp.listener:build_listener"),
    "imap": ("gateway.protocols.imap.config:ImapListenerConfig", "gateway.protocols.imap.listener:build_listener"),
    "sms": ("gateway.protocols.sms.config:SmsListenerConfig", "gateway.protocols.sms.listener:build_listener"),
    "admin": ("gateway.admin.config:AdminListenerConfig", "gateway.admin.listener:build_listener"),
}


def _resolve(reference: str) -> Any:
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


class _LazyClasses(Mapping[str, type]):
    """Protocol name -> config class (a subclass of ``gateway.config.schema.ListenerConfig``),
    importing a protocol's module only when it is used."""

    def __init__(self) -> None:
        self._loaded: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        if name not in self._loaded:
            self._loaded[name] = _resolve(LISTENER_PROTOCOLS[name][0])
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(LISTENER_PROTOCOLS)

    def __len__(self) -> int:
        return len(LISTENER_PROTOCOLS)


@cache
def listener_config_classes() -> Mapping[str, type]:
    """The listener configuration classes by protocol name (imported when first used)."""
    return _LazyClasses()


def listener_builder(protocol: str) -> Any:
    """The function that builds a listener service for ``protocol`` (a
    :class:`gateway.listener.ListenerBuilder`)."""
    return _resolve(LISTENER_PROTOCOLS[protocol][1])
