"""Fixtures for consumer tests: a fresh in-memory layer per test, default thread pool after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.consumers.threads import configure_sync_threads, default_sync_threads
from gateway.layers import InMemoryChannelLayer, channel_layers


@pytest.fixture(autouse=True)
def fresh_layer() -> Iterator[InMemoryChannelLayer]:
    """Install a new in-memory layer as alias "default" for the test."""
    saved = (dict(channel_layers._config), dict(channel_layers._layers))
    layer = InMemoryChannelLayer()
    channel_layers.set("default", layer)
    yield layer
    channel_layers._config, channel_layers._layers = saved


@pytest.fixture
def sync_pool() -> Iterator[None]:
    """Restore the default sync pool size after a test that changes it."""
    yield
    configure_sync_threads(default_sync_threads())
