"""Layer configuration: backends by name, aliases, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from gateway.exceptions import InvalidChannelLayerError
from gateway.layers import (
    InMemoryChannelLayer,
    InMemoryLayerOptions,
    LayerRegistry,
    backend_options,
    channel_layers,
    configure_layers,
    get_channel_layer,
    register_backend,
)


@pytest.fixture
def restore_layers() -> Iterator[None]:
    saved = (dict(channel_layers._config), dict(channel_layers._layers))
    yield
    channel_layers._config, channel_layers._layers = saved


def test_default_alias_is_memory_until_configured() -> None:
    registry = LayerRegistry()
    assert isinstance(registry.get("default"), InMemoryChannelLayer)
    assert registry.get("default") is registry.get("default")
    assert registry.get("other") is None


def test_configure_from_yaml_shaped_mapping(restore_layers: None) -> None:
    registry = configure_layers({
        "default": {"backend": "memory", "capacity": 7, "expiry": 30, "group_expiry": 600,
                    "channel_capacity": {"http.request": 200}},
        "events": {"backend": "memory"},
    })
    layer = get_channel_layer()
    assert isinstance(layer, InMemoryChannelLayer)
    assert (layer.capacity, layer.expiry, layer.group_expiry) == (7, 30, 600)
    assert layer.get_capacity("http.request") == 200 and layer.get_capacity("x") == 7
    assert get_channel_layer("events") is not layer
    assert registry.aliases == ["default", "events"]


def test_configure_empty_means_no_layer(restore_layers: None) -> None:
    configure_layers({})
    assert get_channel_layer() is None


def test_channels_style_and_import_paths() -> None:
    registry = LayerRegistry({
        "a": {"BACKEND": "gateway.layers.memory.InMemoryChannelLayer", "CONFIG": {"capacity": 3}},
        "b": {"backend": "gateway.layers.memory:InMemoryChannelLayer"},
    })
    assert registry["a"].capacity == 3
    assert isinstance(registry["b"], InMemoryChannelLayer)


@pytest.mark.parametrize("config, fragment", [
    ({"default": {"backend": "nope"}}, "unknown channel layer backend 'nope'"),
    ({"default": {"backend": "no.such.module.Layer"}}, "cannot import"),
    ({"default": {"capacity": 5}}, "missing 'backend'"),
    ({"default": {"backend": "memory", "capasity": 5}}, "unknown option(s) capasity"),
    ({"default": {"backend": "memory", "capacity": -1}}, "capacity must be a positive integer"),
    ({"default": "memory"}, "expected a mapping"),
    ({"default": {"BACKEND": "memory", "OPTIONS": {}}}, "unknown keys"),
])
def test_config_errors(config: dict, fragment: str) -> None:
    registry = LayerRegistry()
    before = registry["default"]
    with pytest.raises(InvalidChannelLayerError) as info:
        registry.configure(config)
    assert fragment in str(info.value)
    assert registry["default"] is before  # a bad configuration changes nothing


def test_all_errors_reported_at_once() -> None:
    with pytest.raises(InvalidChannelLayerError) as info:
        LayerRegistry({"a": {"backend": "nope"}, "b": {"backend": "memory", "bogus": 1}})
    assert "'nope'" in str(info.value) and "bogus" in str(info.value)


def test_backend_options_dataclass() -> None:
    assert backend_options("memory") is InMemoryLayerOptions
    assert InMemoryLayerOptions().capacity == 100


def test_register_backend_and_set() -> None:
    register_backend("memory-alias-for-test", "gateway.layers.memory:InMemoryChannelLayer")
    registry = LayerRegistry({"x": {"backend": "memory-alias-for-test", "capacity": 2}})
    assert registry["x"].capacity == 2
    replacement = InMemoryChannelLayer(capacity=9)
    old = registry.set("x", replacement)
    assert old is not replacement and registry.get("x") is replacement
    registry.set("x", None)
    assert registry.get("x") is None
    asyncio.run(registry.close_all())
