"""The shared layer contract, run against the in-memory layer."""

from __future__ import annotations

from typing import Any

from gateway.layers.contract import ChannelLayerContract
from gateway.layers.memory import InMemoryChannelLayer


class TestInMemoryLayerContract(ChannelLayerContract):
    short_expiry = 0.1

    def make_layer(self, **options: Any) -> InMemoryChannelLayer:
        return InMemoryChannelLayer(**options)
