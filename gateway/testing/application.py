"""``ApplicationCommunicator``: drive one ASGI application instance from a test.

It is asgiref's communicator (``send_input``, ``receive_output(timeout=1)``,
``receive_nothing(timeout=0.1, interval=0.01)``, ``wait(timeout=1)``) plus helpers shared by the
protocol communicators. :class:`ProtocolCommunicator` is the base for one per protocol: it
builds the scope from keyword arguments and offers :meth:`~ProtocolCommunicator.expect`, so an
MQTT, email or SMS communicator is a scope builder plus a few shortcut methods.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar

from asgiref.testing import ApplicationCommunicator as _AsgirefCommunicator

from gateway.asgi.app import ASGIApp, Message, Scope

__all__ = ["ApplicationCommunicator", "ProtocolCommunicator", "UnexpectedMessage"]


class UnexpectedMessage(AssertionError):
    """The application sent something other than what the test expected.

    A subclass of ``AssertionError`` so test runners report it as a failed expectation.
    """


def _connections_kept() -> AbstractContextManager[Any]:
    # With gateway.django in use, a test's database connection (a TestCase transaction) must
    # survive the application's close_old_connections() calls, as in Channels' communicators.
    db = sys.modules.get("gateway.django.db")
    return db.connections_kept() if db is not None else nullcontext()


class ApplicationCommunicator(_AsgirefCommunicator):
    """Runs an ASGI application with a scope; feed it input and read its output.

    While a test awaits :meth:`send_input` or :meth:`receive_output`, Django database
    connections are not closed by the application (as in Channels' communicators).

    Args:
        application: the ASGI application (e.g. ``Consumer.as_asgi()`` or a router).
        scope: the connection scope.
    """

    _future: asyncio.Task[None] | None = None  # so __del__ works even if a subclass constructor raised early
    application: ASGIApp
    scope: Scope

    def __init__(self, application: ASGIApp, scope: Scope) -> None:
        super().__init__(application, scope)

    # asgiref's methods, with their types.

    @property
    def future(self) -> asyncio.Task[None]:
        """The application's task (started on first use)."""
        task: asyncio.Task[None] = super().future
        return task

    @property
    def input_queue(self) -> asyncio.Queue[Message]:
        """What the application's ``receive()`` reads."""
        queue: asyncio.Queue[Message] = super().input_queue
        return queue

    @property
    def output_queue(self) -> asyncio.Queue[Message]:
        """What the application's ``send()`` writes."""
        queue: asyncio.Queue[Message] = super().output_queue
        return queue

    async def send_input(self, message: Message) -> None:
        """Give the application one event (starts it on first use)."""
        with _connections_kept():
            await super().send_input(message)

    async def receive_output(self, timeout: float = 1) -> Message:
        """The application's next message.

        Raises:
            TimeoutError: nothing within ``timeout`` seconds (the application is cancelled).
        """
        with _connections_kept():
            message: Message = await super().receive_output(timeout)
        return message

    async def receive_nothing(self, timeout: float = 0.1, interval: float = 0.01) -> bool:
        """True if the application sent nothing within ``timeout`` seconds."""
        nothing: bool = await super().receive_nothing(timeout, interval)
        return nothing

    async def wait(self, timeout: float = 1) -> None:
        """Wait for the application to end (cancelled after ``timeout``); re-raise its error."""
        await super().wait(timeout)

    async def expect(self, types: str | Iterable[str], timeout: float = 1) -> Message:
        """Receive the next output message and check its ``type``.

        Raises:
            UnexpectedMessage: the message has another type.
            TimeoutError: nothing arrived within ``timeout`` (the app is then cancelled).
        """
        wanted = (types,) if isinstance(types, str) else tuple(types)
        message = await self.receive_output(timeout)
        if message.get("type") not in wanted:
            # Channels' wording, so assertions on the message port unchanged.
            raise UnexpectedMessage(
                f"Expected type {' or '.join(repr(t) for t in wanted)}, but was {message.get('type')!r}"
            )
        return message


class ProtocolCommunicator(ApplicationCommunicator):
    """Base class of protocol communicators: a scope built from defaults plus keyword arguments.

    Subclasses set :attr:`scope_type` and override :meth:`build_scope`; ``scope_overrides`` lets a
    test add or replace any key (``client``, ``state``, ...).
    """

    scope_type: ClassVar[str] = ""

    def __init__(self, application: ASGIApp, *, scope_overrides: dict[str, Any] | None = None, **kwargs: Any) -> None:
        scope = self.build_scope(**kwargs)
        if scope_overrides:
            scope.update(scope_overrides)
        super().__init__(application, scope)

    def build_scope(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The scope for this protocol; the base gives ``type`` and ``asgi`` plus ``kwargs``.

        Subclasses take their own keyword arguments (any signature may override this one).
        """
        scope: dict[str, Any] = {"type": self.scope_type, "asgi": {"version": "3.0"}}
        scope.update(kwargs)
        return scope

    async def next_output(self, timeout: float) -> Message | None:
        """The application's next message; ``None`` once it ended with nothing left to read.

        Raises:
            TimeoutError: it neither sent nor ended within ``timeout`` seconds (it is cancelled).
        """
        if not self.output_queue.empty():
            return self.output_queue.get_nowait()
        if self.future.done():
            return None
        getter = asyncio.ensure_future(self.output_queue.get())
        done, _ = await asyncio.wait({getter, self.future}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        if self.future.done():
            return None if self.output_queue.empty() else self.output_queue.get_nowait()
        self.future.cancel()
        try:
            await self.future
        except asyncio.CancelledError:
            pass
        raise TimeoutError(f"the {self.scope_type} application did not answer within {timeout}s")
