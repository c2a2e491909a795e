"""A private part of asyncio's event loop that the Redis layer's pipelining uses.

* ``BaseEventLoop._ready``: the callbacks due in this loop pass. When it is empty while a command
  is being queued, nothing else will run before the loop waits for I/O: the command is written at
  once (saving a loop pass and an ``epoll_wait``), instead of on the next pass where other
  commands queued meanwhile would have joined it (:func:`loop_is_idle`).
"""

from __future__ import annotations

import asyncio

__all__ = ["loop_is_idle"]


def loop_is_idle(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether no other callback is due in this pass of ``loop`` (``False`` when unknown, e.g.
    on uvloop, which has no such queue to look at)."""
    ready = getattr(loop, "_ready", None)
    return ready is not None and not ready
