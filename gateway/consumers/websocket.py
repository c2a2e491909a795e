"""Generic WebSocket consumers with Channels' method names and signatures.

``WebsocketConsumer`` / ``JsonWebsocketConsumer`` are sync (handlers on the sync pool, see
:mod:`gateway.consumers.threads`); ``AsyncWebsocketConsumer`` / ``AsyncJsonWebsocketConsumer``
are async. Hooks: ``connect()``, ``receive(text_data=None, bytes_data=None)``,
``disconnect(code)``; actions: ``accept(subprotocol=None, headers=None)``,
``send(text_data=None, bytes_data=None, close=False)``, ``close(code=None, reason=None)``, and for
the JSON variants ``receive_json(content)``, ``send_json(content, close=False)``,
``encode_json``/``decode_json`` classmethods.

``groups = ["lobby"]`` joins those groups on connect and leaves them on disconnect (and, unlike
Channels, also when the instance ends any other way, e.g. an exception).
"""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import async_to_sync

from gateway.consumers.base import AsyncConsumer, ChannelLayer, SyncConsumer
from gateway.exceptions import AcceptConnection, DenyConnection, InvalidChannelLayerError, StopConsumer

__all__ = [
    "AsyncJsonWebsocketConsumer",
    "AsyncWebsocketConsumer",
    "JsonWebsocketConsumer",
    "WebsocketConsumer",
]

_NO_GROUPS = "BACKEND is unconfigured or doesn't support groups"


def _accept_message(subprotocol: str | None, headers: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "websocket.accept", "subprotocol": subprotocol}
    if headers:
        message["headers"] = list(headers)
    return message


def _close_message(code: int | bool | None, reason: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "websocket.close"}
    if code is not None and code is not True:
        message["code"] = code
    if reason:
        message["reason"] = reason
    return message


def _send_message(text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
    if text_data is not None:
        return {"type": "websocket.send", "text": text_data}
    if bytes_data is not None:
        return {"type": "websocket.send", "bytes": bytes_data}
    raise ValueError("You must pass one of bytes_data or text_data")


class _Groups(AsyncConsumer):
    """``groups``: joined on connect, left on disconnect or whenever the instance ends."""

    groups: list[str] | None = None
    #: The layer and channel name the groups were joined with (None: not joined).
    _joined: tuple[ChannelLayer, str] | None = None

    def _init_groups(self) -> None:
        if self.groups is None:
            self.groups = []

    def _groups_target(self) -> tuple[ChannelLayer, str] | None:
        """The layer and channel to join ``groups`` with; None when there are no groups.

        Raises:
            InvalidChannelLayerError: groups are set but no layer with groups is configured.
        """
        if not self.groups:
            return None
        layer = getattr(self, "channel_layer", None)
        if layer is None or self.channel_name is None or not hasattr(layer, "group_add"):
            raise InvalidChannelLayerError(_NO_GROUPS)
        return layer, self.channel_name

    def _leave(self) -> tuple[ChannelLayer, str] | None:
        """What to leave the groups with, once (None when not joined or already left)."""
        joined, self._joined = self._joined, None
        return joined

    async def _on_exit(self) -> None:
        joined = self._leave()
        if joined is not None:
            layer, channel = joined
            for group in self.groups or ():
                await layer.group_discard(group, channel)


class WebsocketConsumer(_Groups, SyncConsumer):
    """Sync WebSocket consumer (Channels' ``WebsocketConsumer``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._init_groups()

    def websocket_connect(self, message: dict[str, Any]) -> None:
        """Join ``groups``, then call :meth:`connect`; handles Accept/DenyConnection."""
        target = self._groups_target()
        if target is not None:
            layer, channel = target
            for group in self.groups or ():
                async_to_sync(layer.group_add)(group, channel)
                self._joined = target
        try:
            self.connect()
        except AcceptConnection:
            self.accept()
        except DenyConnection:
            self.close()

    def connect(self) -> None:
        """Called on connection; the default accepts."""
        self.accept()

    def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        """Accept the connection, optionally choosing a subprotocol and adding headers."""
        super().send(_accept_message(subprotocol, headers))

    def websocket_receive(self, message: dict[str, Any]) -> None:
        """Decode a frame and call :meth:`receive`."""
        if message.get("text") is not None:
            self.receive(text_data=message["text"])
        else:
            self.receive(bytes_data=message["bytes"])

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called with each frame's payload."""

    def send(  # type: ignore[override]  # Channels' signature: frames, not ASGI messages
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool | int = False
    ) -> None:
        """Send a text or binary frame; ``close`` (True or a code) closes afterwards."""
        super().send(_send_message(text_data, bytes_data))
        if close:
            self.close(close)

    def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Close the connection (before accept: reject the handshake, HTTP 403)."""
        super().send(_close_message(code, reason))

    def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Leave ``groups``, call :meth:`disconnect`, then stop the consumer."""
        joined = self._leave()
        if joined is not None:
            layer, channel = joined
            for group in self.groups or ():
                async_to_sync(layer.group_discard)(group, channel)
        self.disconnect(message.get("code", 1005))
        raise StopConsumer()

    def disconnect(self, code: int) -> None:
        """Called when the connection closed."""


class JsonWebsocketConsumer(WebsocketConsumer):
    """Sync WebSocket consumer that speaks JSON text frames."""

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Decode a text frame and call :meth:`receive_json`; binary frames are an error."""
        if text_data:
            self.receive_json(self.decode_json(text_data), **kwargs)
        else:
            raise ValueError("No text section for incoming WebSocket frame!")

    def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Called with each decoded JSON value."""

    def send_json(self, content: Any, close: bool | int = False) -> None:
        """Encode ``content`` as JSON and send it as a text frame."""
        super().send(text_data=self.encode_json(content), close=close)

    @classmethod
    def decode_json(cls, text_data: str) -> Any:
        """Parse a text frame (override for another JSON library)."""
        return json.loads(text_data)

    @classmethod
    def encode_json(cls, content: Any) -> str:
        """Serialise a value for a text frame."""
        return json.dumps(content)


class AsyncWebsocketConsumer(_Groups, AsyncConsumer):
    """Async WebSocket consumer (Channels' ``AsyncWebsocketConsumer``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._init_groups()

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        """Join ``groups``, then call :meth:`connect`; handles Accept/DenyConnection."""
        target = self._groups_target()
        if target is not None:
            layer, channel = target
            for group in self.groups or ():
                await layer.group_add(group, channel)
                self._joined = target
        try:
            await self.connect()
        except AcceptConnection:
            await self.accept()
        except DenyConnection:
            await self.close()

    async def connect(self) -> None:
        """Called on connection; the default accepts."""
        await self.accept()

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        """Accept the connection, optionally choosing a subprotocol and adding headers."""
        await super().send(_accept_message(subprotocol, headers))

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        """Decode a frame and call :meth:`receive`."""
        if message.get("text") is not None:
            await self.receive(text_data=message["text"])
        else:
            await self.receive(bytes_data=message["bytes"])

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called with each frame's payload."""

    async def send(  # type: ignore[override]  # Channels' signature: frames, not ASGI messages
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool | int = False
    ) -> None:
        """Send a text or binary frame; ``close`` (True or a code) closes afterwards."""
        await super().send(_send_message(text_data, bytes_data))
        if close:
            await self.close(close)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Close the connection (before accept: reject the handshake, HTTP 403)."""
        await super().send(_close_message(code, reason))

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Leave ``groups``, call :meth:`disconnect`, then stop the consumer."""
        joined = self._leave()
        if joined is not None:
            layer, channel = joined
            for group in self.groups or ():
                await layer.group_discard(group, channel)
        await self.disconnect(message.get("code", 1005))
        raise StopConsumer()

    async def disconnect(self, code: int) -> None:
        """Called when the connection closed."""


class AsyncJsonWebsocketConsumer(AsyncWebsocketConsumer):
    """Async WebSocket consumer that speaks JSON text frames."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Decode a text frame and call :meth:`receive_json`; binary frames are an error."""
        if text_data:
            await self.receive_json(await self.decode_json(text_data), **kwargs)
        else:
            raise ValueError("No text section for incoming WebSocket frame!")

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Called with each decoded JSON value."""

    async def send_json(self, content: Any, close: bool | int = False) -> None:
        """Encode ``content`` as JSON and send it as a text frame."""
        await super().send(text_data=await self.encode_json(content), close=close)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        """Parse a text frame (override for another JSON library)."""
        return json.loads(text_data)

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        """Serialise a value for a text frame."""
        return json.dumps(content)
