"""Fixtures for consumer tests: a fresh in-memory layer per test, default thread pool after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.consumers.threads import configure_sync_threads, default_sync_threads
from gateway.layers import InMemoryChannelLayer, LayerRegistry


@pytest.fixture(autouse=True)
def registry() -> Iterator[LayerRegistry]:
    """A registry of the test's own, current for the test (consumers' get_channel_layer() sees it)."""
    with LayerRegistry({}).active() as registry:
        yield registry


@pytest.fixture(autouse=True)
def fresh_layer(registry: LayerRegistry) -> InMemoryChannelLayer:
    """A new in-memory layer as alias "default" of the test's registry."""
    layer = InMemoryChannelLayer()
    registry.set("default", layer)
    return layer


@pytest.fixture
def sync_pool() -> Iterator[None]:
    """Restore the default sync pool size after a test that changes it."""
    yield
    configure_sync_threads(default_sync_threads())
