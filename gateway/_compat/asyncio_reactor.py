"""Twisted's asyncio reactor, minus the legacy log context per socket event, sweeping cancelled
timers as they are cancelled; and the asyncio loop under a reactor.

Internals of :class:`twisted.internet.asyncioreactor.AsyncioSelectorReactor` relied on (checked by
``tests/unit/compat/test_asyncio_reactor.py``):

* ``_asyncioEventloop``: the loop the reactor runs on;
* ``_readers`` / ``_writers`` (selectable -> fd), ``_continuousPolling`` (with its own
  ``_readers`` / ``_writers``, for files epoll cannot watch), ``_unregisterFDInAsyncio(fd)`` and
  ``_readOrWrite(selectable, is_read)`` (runs ``doRead``/``doWrite`` and disconnects the selectable
  when it fails): what ``addReader``/``addWriter`` use, as Twisted's own do;
* ``_cancelCallLater(call)``: called by ``DelayedCall.cancel()``; ``_cancellations``,
  ``_pendingTimedCalls`` (a heap) and ``_newTimedCalls``: the timer lists it keeps.
"""

from __future__ import annotations

import asyncio
import errno
from heapq import heapify
from typing import Any

from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.base import DelayedCall

__all__ = ["GatewayReactor", "reactor_loop"]


class GatewayReactor(AsyncioSelectorReactor):
    """Twisted's asyncio reactor with two changes that keep behaviour and cut cost.

    Sockets: Twisted registers each reader and writer as ``callWithLogger(selectable,
    _readOrWrite, ...)``: it sets the legacy ``twisted.python.log`` context ("system": the
    protocol's logPrefix) and catches errors, at a cost of five Python calls per socket event
    (about 7 % of an HTTP keep-alive request). ``_readOrWrite`` already catches and logs a
    failing ``doRead`` and ``doWrite``; the gateway logs through ``twisted.logger`` with its own
    namespaces.

    Timers: see :meth:`_cancelCallLater`.
    """

    def _cancelCallLater(self, delayedCall: DelayedCall) -> None:
        # Twisted leaves a cancelled call in its lists until runUntilCurrent() sweeps them,
        # and on asyncio that only runs when a timer is due: with per-connection timeouts of
        # seconds, every closed connection's cancelled timer (a DelayedCall and two bound
        # methods) stays alive meanwhile, tens of thousands under connection churn, and each
        # full garbage collection walks them all (30-50 ms pauses). Sweep here instead, once
        # cancelled calls are half of all: amortised O(1) per cancel, as in runUntilCurrent().
        self._cancellations = cancellations = self._cancellations + 1
        if cancellations > 64 and cancellations > (len(self._pendingTimedCalls) + len(self._newTimedCalls)) >> 1:
            self._newTimedCalls = [call for call in self._newTimedCalls if not call.cancelled]
            pending = self._pendingTimedCalls = [call for call in self._pendingTimedCalls if not call.cancelled]
            heapify(pending)
            self._cancellations = 0

    def addReader(self, reader: Any) -> None:
        if reader in self._readers or reader in self._continuousPolling._readers:
            return
        fd = reader.fileno()
        try:
            self._asyncioEventloop.add_reader(fd, self._readOrWrite, reader, True)
            self._readers[reader] = fd
        except OSError as e:
            self._unregisterFDInAsyncio(fd)
            if e.errno != errno.EPERM:
                raise
            self._continuousPolling.addReader(reader)  # epoll cannot watch regular files

    def addWriter(self, writer: Any) -> None:
        if writer in self._writers or writer in self._continuousPolling._writers:
            return
        fd = writer.fileno()
        try:
            self._asyncioEventloop.add_writer(fd, self._readOrWrite, writer, False)
            self._writers[writer] = fd
        except PermissionError:
            self._unregisterFDInAsyncio(fd)
            self._continuousPolling.addWriter(writer)
        except BrokenPipeError:
            self._unregisterFDInAsyncio(fd)
        except BaseException:
            self._unregisterFDInAsyncio(fd)
            raise


def reactor_loop(reactor: Any) -> asyncio.AbstractEventLoop:
    """The asyncio loop under an asyncio reactor."""
    loop: asyncio.AbstractEventLoop = reactor._asyncioEventloop
    return loop
