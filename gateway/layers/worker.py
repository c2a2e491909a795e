"""Background workers fed from the channel layer, and sending from outside a consumer.

``gateway worker CHANNEL...`` runs :func:`run_worker` with the configured application (usually a
``ProtocolTypeRouter`` whose ``"channel"`` entry is a ``ChannelNameRouter``); ``gateway send``
calls :func:`send_message`.

Worker scopes are ``{"type": "channel", "channel": <name>}``, as in Channels' ``runworker``. Each
channel gets one application instance, fed every message received on that channel in order; if the
instance ends (``StopConsumer``, or an exception, which is logged), the next message starts a new
one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, MutableMapping
from typing import Any

from gateway.asgi.app import ASGIApp
from gateway.layers.base import ChannelLayer
from gateway.layers.registry import DEFAULT_CHANNEL_LAYER, get_channel_layer

__all__ = ["Worker", "run_worker", "send_message"]

logger = logging.getLogger(__name__)


async def send_message(
    message: dict[str, Any],
    *,
    channel: str | None = None,
    group: str | None = None,
    layer: ChannelLayer | None = None,
    alias: str = DEFAULT_CHANNEL_LAYER,
    allow_process_local: bool = False,
) -> None:
    """Send ``message`` to exactly one of ``channel`` or ``group`` through a layer.

    This is what ``gateway send --channel NAME JSON`` / ``--group NAME JSON`` calls (after
    ``configure_layers`` and ``json.loads``).

    Raises:
        ValueError: neither or both targets given, no layer configured, or the layer is
            process-local (the in-memory layer cannot be reached from another process) and
            ``allow_process_local`` is false.
        TypeError: invalid names or message (from the layer).
        ChannelFull: ``channel`` is at capacity.
    """
    if (channel is None) == (group is None):
        raise ValueError("give exactly one of channel= or group=")
    if layer is None:
        layer = get_channel_layer(alias)
        if layer is None:
            raise ValueError(f"no channel layer configured for alias {alias!r}")
    if getattr(layer, "process_local", False) and not allow_process_local:
        raise ValueError(
            f"channel layer {alias!r} ({type(layer).__name__}) lives inside one process; "
            "sending from a separate command cannot reach the daemon. Configure a shared "
            "backend (backend: redis) for this alias."
        )
    if channel is not None:
        await layer.send(channel, message)
    elif group is not None:
        await layer.group_send(group, message)


class Worker:
    """Feeds messages from layer channels into one application instance per channel.

    Args:
        application: an ASGI application receiving ``{"type": "channel", "channel": name}``
            scopes (e.g. a ``ChannelNameRouter``, or a ``ProtocolTypeRouter`` with ``"channel"``).
        channels: channel names to listen on.
        channel_layer: the layer to receive from.
        queue_size: messages buffered per instance before the worker stops receiving from that
            channel (the layer's capacity then pushes back on senders).
    """

    def __init__(
        self,
        application: ASGIApp,
        channels: Iterable[str],
        channel_layer: ChannelLayer,
        *,
        queue_size: int = 100,
    ) -> None:
        if channel_layer is None:
            raise ValueError("Channel layer is not valid")
        self.application = application
        self.channels = list(channels)
        if not self.channels:
            raise ValueError("give at least one channel to listen on")
        for name in self.channels:
            channel_layer.require_valid_channel_name(name)
        self.channel_layer = channel_layer
        self.queue_size = queue_size
        self._instances: dict[str, tuple[asyncio.Task[Any], asyncio.Queue[dict[str, Any]]]] = {}

    def _instance_queue(self, channel: str) -> asyncio.Queue[dict[str, Any]]:
        current = self._instances.get(channel)
        if current is not None and not current[0].done():
            return current[1]
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.queue_size)
        scope: dict[str, Any] = {"type": "channel", "channel": channel}

        async def send(message: MutableMapping[str, Any]) -> None:
            raise RuntimeError(f"worker application for {channel!r} cannot send ASGI messages")

        task = asyncio.ensure_future(self.application(scope, queue.get, send))

        def done(task: asyncio.Task[Any]) -> None:
            self._instance_done(channel, task, queue)

        task.add_done_callback(done)
        self._instances[channel] = (task, queue)
        return queue

    def _instance_done(self, channel: str, task: asyncio.Task[Any], queue: asyncio.Queue[Any]) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            logger.error("worker application for channel %r failed", channel, exc_info=task.exception())
        if not queue.empty():  # messages it never took go to a fresh instance, in order
            fresh = self._instance_queue(channel)
            while not queue.empty():
                fresh.put_nowait(queue.get_nowait())

    async def listener(self, channel: str) -> None:
        """Receive from one channel forever, feeding its instance."""
        while True:
            message = await self.channel_layer.receive(channel)
            if not message.get("type"):
                logger.warning("worker dropped a message without 'type' on %r", channel)
                continue
            await self._instance_queue(channel).put(message)

    async def run(self) -> None:
        """Listen on every channel until cancelled; then cancel the application instances."""
        listeners = [asyncio.ensure_future(self.listener(c)) for c in self.channels]
        try:
            await asyncio.gather(*listeners)
        finally:
            for task in listeners:
                task.cancel()
            instances = [task for task, _ in self._instances.values()]
            for task in instances:
                task.cancel()
            await asyncio.gather(*listeners, *instances, return_exceptions=True)


async def run_worker(
    application: ASGIApp,
    channels: Iterable[str],
    *,
    layer: ChannelLayer | None = None,
    alias: str = DEFAULT_CHANNEL_LAYER,
    queue_size: int = 100,
) -> None:
    """Run a :class:`Worker` on the configured layer until cancelled (``gateway worker``)."""
    if layer is None:
        layer = get_channel_layer(alias)
        if layer is None:
            raise ValueError(f"no channel layer configured for alias {alias!r}")
    await Worker(application, channels, layer, queue_size=queue_size).run()
