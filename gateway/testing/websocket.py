"""``WebsocketCommunicator``: drive a WebSocket application, Channels-compatible."""

from __future__ import annotations

import json
from typing import Any, cast
from urllib.parse import quote, urlparse

from gateway.asgi.app import ASGIApp
from gateway.protocols.http.asgi import http_scope
from gateway.protocols.websocket.asgi import websocket_scope
from gateway.testing.application import ProtocolCommunicator, UnexpectedMessage

__all__ = ["WebsocketCommunicator"]


class WebsocketCommunicator(ProtocolCommunicator):
    """Connect, exchange frames and disconnect, as a WebSocket client would.

    Args:
        application: the ASGI application.
        path: path with optional query string.
        headers: handshake request headers ``[(name, value), ...]`` as bytes.
        subprotocols: subprotocols the client offers.
        spec_version: the ASGI ``spec_version`` to advertise (e.g. ``"2.3"``).
        scope_overrides: extra or replaced scope keys.
    """

    scope_type = "websocket"

    def __init__(
        self,
        application: ASGIApp,
        path: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        subprotocols: list[str] | None = None,
        spec_version: str | None = None,
        *,
        scope_overrides: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(path, str):
            raise TypeError(f"Expected str, got {type(path)}")
        self.response_headers: list[tuple[bytes, bytes]] | None = None
        super().__init__(
            application,
            scope_overrides=scope_overrides,
            path=path,
            headers=headers,
            subprotocols=subprotocols,
            spec_version=spec_version,
        )

    def build_scope(self, *, path: str, headers: Any, subprotocols: Any, spec_version: Any) -> dict[str, Any]:
        """An ASGI 3 ``websocket`` scope, as the HTTP listener builds it for an upgrade request
        (the ``subprotocols`` given win over a ``Sec-WebSocket-Protocol`` header)."""
        parsed = urlparse(path)
        scope: dict[str, Any] = cast("dict[str, Any]", websocket_scope(http_scope(
            method="GET",
            http_version="1.1",
            scheme="ws",
            raw_path=quote(parsed.path, safe="/%:@!$&'()*+,;=~").encode("ascii"),
            query_string=parsed.query.encode("utf-8"),
            root_path="",
            headers=list(headers or []),
            client=("127.0.0.1", 50000),
            server=("127.0.0.1", 80),
            state=None,
            extensions={},
        )))
        if subprotocols:
            scope["subprotocols"] = list(subprotocols)
        if spec_version:
            scope["spec_version"] = spec_version
            scope["asgi"]["spec_version"] = spec_version
        return scope

    async def connect(self, timeout: float = 1) -> tuple[bool, Any]:
        """Send ``websocket.connect``; return ``(True, subprotocol)`` or ``(False, close_code)``."""
        await self.send_input({"type": "websocket.connect"})
        response = await self.expect(("websocket.accept", "websocket.close"), timeout)
        if response["type"] == "websocket.close":
            return (False, response.get("code", 1000))
        self.response_headers = response.get("headers", [])
        return (True, response.get("subprotocol", None))

    async def send_to(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Send one frame to the application (exactly one of the two arguments)."""
        if (text_data is None) == (bytes_data is None):
            raise TypeError("You must supply exactly one of text_data or bytes_data")
        if text_data is not None:
            if not isinstance(text_data, str):
                raise TypeError("The text_data argument must be a str")
            await self.send_input({"type": "websocket.receive", "text": text_data})
        else:
            if not isinstance(bytes_data, bytes):
                raise TypeError("The bytes_data argument must be bytes")
            await self.send_input({"type": "websocket.receive", "bytes": bytes_data})

    async def send_json_to(self, data: Any) -> None:
        """Send ``data`` as a JSON text frame."""
        await self.send_to(text_data=json.dumps(data))

    async def receive_from(self, timeout: float = 1) -> str | bytes:
        """The payload of the next frame the application sends.

        Raises:
            UnexpectedMessage: the application sent something else (e.g. closed).
        """
        response = await self.expect("websocket.send", timeout)
        if ("text" in response) == ("bytes" in response):
            raise UnexpectedMessage(f"The response needs exactly one of 'text' or 'bytes': {response!r}")
        if "text" in response:
            if not isinstance(response["text"], str):
                raise UnexpectedMessage(f"Text frame payload is not str: {response!r}")
            return response["text"]
        if not isinstance(response["bytes"], bytes):
            raise UnexpectedMessage(f"Binary frame payload is not bytes: {response!r}")
        return response["bytes"]

    async def receive_json_from(self, timeout: float = 1) -> Any:
        """Decode the next frame, which must be a JSON text frame."""
        payload = await self.receive_from(timeout)
        if not isinstance(payload, str):
            raise UnexpectedMessage(f"JSON data is not a text frame, it is {type(payload)}")
        return json.loads(payload)

    async def disconnect(self, code: int = 1000, timeout: float = 1) -> None:
        """Send ``websocket.disconnect`` and wait for the application to finish."""
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)
