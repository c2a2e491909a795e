"""Installing Twisted's asyncio reactor (optionally on uvloop).

Only the entry points (the ``gateway`` commands, the twistd tap) call :func:`install_reactor`,
and they call it *before* importing any application: an application, or a library it imports
(treq, txredisapi, ``twisted.mail.smtp``), may run ``from twisted.internet import reactor`` at
module level, which installs Twisted's default reactor when none is installed yet. The loop kind
comes from :func:`gateway.config.read_loop_kind`, which reads it without importing anything.
Importing any gateway module never installs a reactor. The reactor class is
:class:`gateway._compat.asyncio_reactor.GatewayReactor`, Twisted's asyncio reactor tuned through
its internals.
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

    from gateway._compat.asyncio_reactor import GatewayReactor

    reactor = GatewayReactor(loop)
    installReactor(reactor)
    return reactor


def reactor_loop(reactor: Any) -> asyncio.AbstractEventLoop:
    """The asyncio loop under an asyncio reactor."""
    from gateway._compat.asyncio_reactor import reactor_loop as loop_of

    return loop_of(reactor)
