"""Installing Twisted's asyncio reactor (optionally on uvloop).

Only the entry points (the ``gateway`` commands, the twistd tap) call :func:`install_reactor`,
and they call it *before* importing any application: an application, or a library it imports
(treq, txredisapi, ``twisted.mail.smtp``), may run ``from twisted.internet import reactor`` at
module level, which installs Twisted's default reactor when none is installed yet. The loop kind
comes from :func:`gateway.config.read_loop_kind`, which reads it without importing anything.
Importing any gateway module never installs a reactor.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any


class ReactorError(Exception):
    """The reactor that is installed cannot run the gateway; the message names the fix."""


#: What ``install_reactor`` suggests when another reactor is installed already, unless the caller
#: (the twistd tap, whose users can pass ``--reactor``) names its own fix.
_DEFAULT_FIX = (
    "something imported twisted.internet.reactor before the gateway could install it "
    "(a sitecustomize, usercustomize or .pth file that imports Twisted?)"
)


def installed_reactor() -> Any | None:
    """The installed reactor, or ``None`` when none is installed yet."""
    module = sys.modules.get("twisted.internet.reactor")
    return module  # twisted replaces the module object with the reactor instance


def is_asyncio_reactor(reactor: Any) -> bool:
    """Whether ``reactor`` is Twisted's asyncio reactor."""
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    return isinstance(reactor, AsyncioSelectorReactor)


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A new event loop: the standard asyncio loop or uvloop's.

    Raises:
        ReactorError: uvloop was asked for but is not installed.
    """
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise ReactorError("loop: uvloop needs the uvloop package: pip install 'gateway[uvloop]'") from None
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def install_reactor(loop_kind: str = "asyncio", *, fix: str = _DEFAULT_FIX) -> Any:
    """Install the asyncio reactor on a new loop of ``loop_kind`` and return it.

    If the asyncio reactor is already installed (``twistd --reactor=asyncio``), it is returned
    as it is.

    Args:
        loop_kind: ``asyncio`` or ``uvloop``.
        fix: what the error says to do when another reactor is installed already (the twistd
            tap names its ``--reactor`` option; the ``gateway`` commands have none).

    Raises:
        ReactorError: another reactor is already installed, or uvloop is missing.
    """
    current = installed_reactor()
    if current is not None:
        if is_asyncio_reactor(current):
            return current
        name = type(current).__module__ + "." + type(current).__name__
        raise ReactorError(f"the {name} reactor is installed, but gateway runs on Twisted's asyncio reactor: {fix}")
    loop = new_loop(loop_kind)
    asyncio.set_event_loop(loop)
    from twisted.internet.main import installReactor

    reactor = _reactor_class()(loop)
    installReactor(reactor)
    return reactor


def _reactor_class() -> type:
    """Twisted's asyncio reactor, minus the legacy log context around every socket event, and
    with cancelled timed calls swept as they are cancelled.

    Twisted registers each reader and writer as ``callWithLogger(selectable, _readOrWrite, ...)``:
    it sets the legacy ``twisted.python.log`` context ("system": the protocol's logPrefix) and
    catches errors, at a cost of five Python calls per socket event (about 7 % of an HTTP
    keep-alive request). ``_readOrWrite`` already catches and logs a failing ``doRead`` and
    ``doWrite``; the gateway logs through ``twisted.logger`` with its own namespaces.
    """
    import errno
    from heapq import heapify

    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    class GatewayReactor(AsyncioSelectorReactor):
        def _cancelCallLater(self, delayedCall: Any) -> None:
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

    return GatewayReactor


def reactor_loop(reactor: Any) -> asyncio.AbstractEventLoop:
    """The asyncio loop under an asyncio reactor."""
    return reactor._asyncioEventloop
