"""The daemon's configuration with a Django project: default application, layer precedence,
the Django-shaped layer registry, and rungateway's generated configuration."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

pytest.importorskip("django")

from gateway.config import ConfigError, load_config_text  # noqa: E402
from gateway.config.schema import DJANGO_APPLICATION  # noqa: E402
from gateway.exceptions import InvalidChannelLayerError  # noqa: E402
from gateway.layers import InMemoryChannelLayer, LayerRegistry  # noqa: E402

LISTENER = """
listeners:
  - name: web
    protocol: http
    endpoint: "tcp:0:interface=127.0.0.1"
"""


@pytest.fixture
def no_django_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    yield


def test_without_django_an_application_is_required(no_django_env: None) -> None:
    with pytest.raises(ConfigError, match="has no application"):
        load_config_text(LISTENER, "gw.yaml", import_applications=False)


def test_django_section_makes_asgi_application_the_default(no_django_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config_text("django: {settings: mysite.settings}\n" + LISTENER, "gw.yaml", import_applications=False)
    assert config.django_settings() == "mysite.settings"
    assert config.application_for(config.listeners[0]) == DJANGO_APPLICATION
    explicit = load_config_text("application: app:app\ndjango: {settings: mysite.settings}\n" + LISTENER,
                                "gw.yaml", import_applications=False)
    assert explicit.application_for(explicit.listeners[0]) == "app:app"


def test_environment_variable_counts_as_a_django_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "mysite.settings")
    config = load_config_text(LISTENER, "gw.yaml", import_applications=False)
    assert config.application_for(config.listeners[0]) == DJANGO_APPLICATION


def test_bad_settings_module_name_is_a_config_error(no_django_env: None) -> None:
    with pytest.raises(ConfigError, match="dotted module path"):
        load_config_text("django: {settings: 'my site'}\n" + LISTENER, "gw.yaml", import_applications=False)


def test_yaml_layer_wins_over_channel_layers_for_the_same_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.django.layers as django_layers

    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "mysite.settings")
    monkeypatch.setattr(django_layers, "settings_layers", lambda: {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://h:6379/0"]}},
        "events": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 7}},
    })
    config = load_config_text(LISTENER + "layers:\n  default: {backend: memory, capacity: 3}\n", "gw.yaml",
                              import_applications=False)
    mapping = config.layers_mapping()
    assert mapping["default"]["backend"] == "memory" and mapping["default"]["capacity"] == 3
    assert mapping["events"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
    registry = LayerRegistry(mapping)
    assert registry["default"].capacity == 3 and registry["events"].capacity == 7


def test_channels_backend_paths_name_the_gateway_layers() -> None:
    registry = LayerRegistry({
        "a": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"expiry": 5}},
        "b": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}},
        "c": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}},
    })
    from gateway.layers.redis import RedisChannelLayer

    assert isinstance(registry["a"], InMemoryChannelLayer) and registry["a"].expiry == 5
    assert isinstance(registry["b"], RedisChannelLayer) and isinstance(registry["c"], RedisChannelLayer)
    asyncio.run(registry.close_all())


def test_lazy_configuration_builds_on_first_use_and_reports_then() -> None:
    registry = LayerRegistry()
    registry.configure({"default": {"BACKEND": "no.such.Layer"}, "ok": {"BACKEND": "channels.layers.InMemoryChannelLayer",
                                                                          "TEST_CONFIG": {"capacity": 2}}}, lazy=True)
    assert registry.backends == {}
    assert "default" in registry and registry.aliases == ["default", "ok"]
    with pytest.raises(InvalidChannelLayerError, match="cannot import"):
        registry.get("default")
    assert isinstance(registry.get("ok"), InMemoryChannelLayer)
    assert list(registry.backends) == ["ok"]
    assert registry.make_test_backend("ok").capacity == 2
    with pytest.raises(InvalidChannelLayerError, match="No TEST_CONFIG"):
        LayerRegistry({"x": {"backend": "memory"}}).make_test_backend("x")


def test_rungateway_config_is_valid() -> None:
    from gateway.django.management.commands.rungateway import config_text

    config = load_config_text(config_text("127.0.0.1", 8000, "gateway.django.asgi:debug_application", False, True),
                              "rungateway", import_applications=False)
    assert config.listeners[0].endpoint == "tcp:8000:interface=127.0.0.1"
    six = load_config_text(config_text("::1", 8000, "gateway.django.asgi:application", True, False),
                           "rungateway", import_applications=False)
    assert six.listeners[0].endpoint == "tcp6:8000:interface=\\:\\:1"
