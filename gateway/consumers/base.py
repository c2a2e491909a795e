"""``AsyncConsumer`` and ``SyncConsumer``: one instance per scope, ``type`` -> method dispatch.

Behaviour matches ``channels.consumer``: a message ``{"type": "chat.message"}`` (from the client or
from the channel layer) calls ``chat_message(message)``; events from the client and from the layer
are handled strictly one at a time; ``StopConsumer`` ends the instance cleanly, and so does a
``send()`` after the client left (its disconnect handler runs first). The thread model
of :class:`SyncConsumer` differs on purpose (see :mod:`gateway.consumers.threads`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Protocol

from asgiref.sync import async_to_sync, sync_to_async

from gateway.asgi.app import ASGIApp, Message, Receive, Scope, Send
from gateway.asgi.instance import ClientDisconnected
from gateway.consumers.threads import SerialExecutor, run_sync_handler
from gateway.exceptions import StopConsumer
from gateway.layers.registry import DEFAULT_CHANNEL_LAYER, get_channel_layer

__all__ = ["AsyncConsumer", "ChannelLayer", "SyncConsumer", "await_many_dispatch", "get_handler_name"]


class ChannelLayer(Protocol):
    """What consumers use of a channel layer: the Channels layer API with the ``groups``
    extension (every layer in :mod:`gateway.layers` provides it; a layer without groups raises
    ``NotImplementedError`` from the group methods)."""

    async def send(self, channel: str, message: dict[str, Any]) -> None: ...

    async def receive(self, channel: str) -> dict[str, Any]: ...

    async def new_channel(self, prefix: str = "specific") -> str: ...

    async def group_add(self, group: str, channel: str) -> None: ...

    async def group_discard(self, group: str, channel: str) -> None: ...

    async def group_send(self, group: str, message: dict[str, Any]) -> None: ...


def get_handler_name(message: Message) -> str:
    """The handler method name for a message: its ``type`` with ``.`` replaced by ``_``.

    Raises:
        ValueError: no ``type``, or one that maps to a private name (leading underscore).
    """
    if "type" not in message:
        raise ValueError("Incoming message has no 'type' attribute")
    handler_name: str = message["type"].replace(".", "_")
    if handler_name.startswith("_"):
        raise ValueError("Malformed type in message (leading underscore)")
    return handler_name


async def await_many_dispatch(
    consumer_callables: Sequence[Receive],
    dispatch: Callable[[Message], Awaitable[Any]],
) -> None:
    """Await every source at once and ``await dispatch(message)`` for each result, one at a time.

    Only the source that produced a message is called again; the others keep waiting. On exit
    (including ``StopConsumer`` raised by ``dispatch``) the pending receives are cancelled; the
    layer's ``receive`` is cancellation-safe, so a message in flight stays queued.
    """
    tasks = [asyncio.ensure_future(source()) for source in consumer_callables]
    try:
        while True:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for index, task in enumerate(tasks):
                if task.done():
                    result = task.result()
                    await dispatch(result)
                    tasks[index] = asyncio.ensure_future(consumer_callables[index]())
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass


class AsyncConsumer:
    """Base consumer: an ASGI application class whose instances serve one scope each.

    Use ``MyConsumer.as_asgi(**initkwargs)`` as the ASGI application. When a channel layer is
    configured for :attr:`channel_layer_alias`, each instance gets ``self.channel_layer``, a
    unique ``self.channel_name`` and receives that channel's messages through the same dispatch
    as client events. Without a layer, ``self.channel_layer`` is ``None``.
    """

    _sync: ClassVar[bool] = False
    #: The layer alias to use (``layers:`` key in the config).
    channel_layer_alias: ClassVar[str] = DEFAULT_CHANNEL_LAYER

    scope: Scope
    channel_layer: ChannelLayer | None
    channel_name: str | None = None
    base_send: Any  # ``send``, or (sync consumers) a blocking wrapper of it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the instance: set up the layer channel, then dispatch until ``StopConsumer``."""
        self.scope = scope
        layer = self.channel_layer = get_channel_layer(self.channel_layer_alias)
        sources: list[Receive] = [receive]
        if layer is not None:
            channel_name = self.channel_name = await layer.new_channel()
            sources.append(functools.partial(layer.receive, channel_name))
        self.base_send = self._prepare(send)
        try:
            await await_many_dispatch(sources, self._dispatch_async)
        except StopConsumer:
            pass
        except ClientDisconnected:
            # A handler sent after the client left (ASGI www 2.4): not an error. The disconnect
            # event is waiting; its handler still runs, then the instance ends cleanly.
            await self._after_client_left(receive)
        finally:
            await self._on_exit()

    async def _after_client_left(self, receive: Receive) -> None:
        message = await receive()
        if str(message.get("type", "")).endswith(".disconnect"):
            try:
                await self._dispatch_async(message)
            except (StopConsumer, ClientDisconnected):
                pass

    async def _on_exit(self) -> None:
        """Cleanup after the last handler, however the instance ended (generic consumers leave
        their ``groups`` here if no disconnect handler did)."""

    def _prepare(self, send: Send) -> Any:
        """Per-instance setup before dispatching; returns what ``base_send`` should be."""
        return send

    async def _dispatch_async(self, message: Message) -> None:
        await self.dispatch(message)

    async def dispatch(self, message: Message) -> None:
        """Call the handler named after ``message["type"]``.

        Raises:
            ValueError: no handler for that type.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def send(self, message: Message) -> None:
        """Send an ASGI message to the client (overridable)."""
        await self.base_send(message)

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> ASGIApp:
        """An ASGI 3 application that builds ``cls(**initkwargs)`` for each scope.

        The returned callable carries ``consumer_class`` and ``consumer_initkwargs``.
        """

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            consumer = cls(**initkwargs)
            return await consumer(scope, receive, send)

        app.consumer_class = cls  # type: ignore[attr-defined]  # Channels' attributes on a function
        app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
        functools.update_wrapper(app, cls, updated=())
        return app


class SyncConsumer(AsyncConsumer):
    """A consumer whose handlers are plain (blocking) methods.

    Handlers run on the bounded sync pool, through this instance's own serial lane: handlers of
    one consumer run one at a time in arrival order; handlers of different consumers run in
    parallel (see :mod:`gateway.consumers.threads`). ``self.send(message)`` is synchronous.
    """

    _sync: ClassVar[bool] = True

    def _prepare(self, send: Send) -> Any:
        self._lane = SerialExecutor()
        # asgiref annotates ``executor`` as a ThreadPoolExecutor; it only calls ``submit``.
        self._run_dispatch = sync_to_async(run_sync_handler, thread_sensitive=False, executor=self._lane)  # type: ignore[call-overload]
        return async_to_sync(send)

    async def _dispatch_async(self, message: Message) -> None:
        await self._run_dispatch(self.dispatch, message)

    def dispatch(self, message: Message) -> None:  # type: ignore[override]  # sync on purpose
        """Call the handler named after ``message["type"]`` (runs in a pool thread)."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        handler(message)

    def send(self, message: Message) -> None:  # type: ignore[override]  # sync on purpose
        """Send an ASGI message to the client, blocking until the server took it."""
        self.base_send(message)
