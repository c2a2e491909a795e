"""Fixtures of the SMS bridge tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .bridge_harness import Harness, Recorder


@pytest.fixture
def recorder() -> Recorder:
    """An application that records deliveries (and acknowledges unless given a behaviour)."""
    return Recorder()


@pytest.fixture
def harness(recorder: Recorder) -> Iterator[Harness]:
    """A bridge over one account per provider serving ``recorder``."""
    h = Harness(recorder)
    yield h
    h.close()
