"""Layer configuration: backends by name, aliases, errors."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.exceptions import InvalidChannelLayerError
from gateway.layers import (
    InMemoryChannelLayer,
    InMemoryLayerOptions,
    LayerRegistry,
    backend_options,
    channel_layers,
    configure_layers,
    current_registry,
    get_channel_layer,
    register_backend,
)


@pytest.fixture
def restore_layers() -> Iterator[LayerRegistry]:
    """configure_layers() configures the current registry: a fresh one bound for the test."""
    with LayerRegistry().using() as registry:
        yield registry


def test_default_alias_is_memory_until_configured() -> None:
    registry = LayerRegistry()
    assert isinstance(registry.get("default"), InMemoryChannelLayer)
    assert registry.get("default") is registry.get("default")
    assert registry.get("other") is None


def test_configure_from_yaml_shaped_mapping(restore_layers: LayerRegistry) -> None:
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


def test_configure_empty_means_no_layer(restore_layers: LayerRegistry) -> None:
    configure_layers({})
    assert get_channel_layer() is None
    assert restore_layers.aliases == []


def test_bound_registry_wins_and_ends_with_the_block() -> None:
    outside = get_channel_layer()
    mine = LayerRegistry({"default": {"backend": "memory", "capacity": 3}})
    with mine.using():
        assert get_channel_layer() is mine["default"]
        assert channel_layers["default"] is mine["default"]  # Channels' name follows it

        async def in_a_task() -> Any:  # tasks started inside the block see it too
            return get_channel_layer()

        assert asyncio.run(in_a_task()) is mine["default"]
    assert get_channel_layer() is outside


def test_two_services_registries_do_not_share_layers() -> None:
    """Each application sees its own service's registry, whichever service started last."""
    first = LayerRegistry({"default": {"backend": "memory"}})
    second = LayerRegistry({"default": {"backend": "memory"}})
    seen: dict[str, Any] = {}

    def app_for(name: str) -> Any:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            seen[name] = get_channel_layer()
        return app

    one, two = first.bind_application(app_for("one")), second.bind_application(app_for("two"))
    first.activate()
    second.activate()
    try:
        assert current_registry() is second  # the most recently started service outside apps

        async def main() -> None:
            await asyncio.gather(one({}, None, None), two({}, None, None))
            assert current_registry() is second  # the binding did not leak to the caller

        asyncio.run(main())
        assert seen == {"one": first["default"], "two": second["default"]}
    finally:
        second.deactivate()
        first.deactivate()
    assert current_registry() is not second and current_registry() is not first


def test_bound_application_forwards_attributes() -> None:
    class Routed:
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            pass

        def matches(self, scope: Any) -> bool:
            return scope.get("type") == "http"

    app = LayerRegistry({}).bind_application(Routed())
    assert app.matches({"type": "http"}) and not app.matches({"type": "mqtt"})


def test_a_thread_sees_the_active_registry() -> None:
    registry = LayerRegistry({"default": {"backend": "memory"}})
    registry.activate()
    try:
        found: list[Any] = []
        thread = threading.Thread(target=lambda: found.append(get_channel_layer()))
        thread.start()
        thread.join()
        assert found == [registry["default"]]
    finally:
        registry.deactivate()


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
