"""asyncio's private ``Future._asyncio_future_blocking`` flag.

A coroutine that awaits a future yields it with ``_asyncio_future_blocking`` set to True; the
Task that runs the coroutine clears the flag when it takes the future over (and refuses a yielded
future whose flag is not set). :func:`gateway.protocols.mqtt.broker.eager.run_eager` steps a
coroutine by hand and hands what it yielded to a task of its own, so it must clear the flag as a
Task would (:func:`release_blocking`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["release_blocking"]


def release_blocking(future: Any) -> None:
    """Clear the "a coroutine yielded me" mark of ``future``, as ``asyncio.Task`` does."""
    future._asyncio_future_blocking = False
