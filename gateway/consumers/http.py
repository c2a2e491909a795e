"""``AsyncHttpConsumer``: Channels' async HTTP consumer (``channels.generic.http``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gateway.consumers.base import AsyncConsumer
from gateway.exceptions import StopConsumer

__all__ = ["AsyncHttpConsumer"]


class AsyncHttpConsumer(AsyncConsumer):
    """Collects the request body, then calls :meth:`handle` with it.

    Respond with :meth:`send_headers` + :meth:`send_body` (streaming with ``more_body=True``) or
    :meth:`send_response`. ``http.disconnect`` calls :meth:`disconnect` and stops the consumer;
    the consumer also stops after :meth:`handle` returns, unless it raised.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.body: list[bytes] = []

    async def send_headers(
        self,
        *,
        status: int = 200,
        headers: Iterable[tuple[bytes, bytes]] | Mapping[bytes, bytes] | None = None,
    ) -> None:
        """Start the response; ``headers`` as a list of pairs or a dict."""
        if headers is None:
            header_list: list[Any] = []
        elif isinstance(headers, Mapping):
            header_list = list(headers.items())
        else:
            header_list = list(headers)
        await self.send({"type": "http.response.start", "status": status, "headers": header_list})

    async def send_body(self, body: bytes, *, more_body: bool = False) -> None:
        """Send (part of) the body; ``more_body=True`` keeps the response open.

        Raises:
            TypeError: ``body`` is not bytes.
        """
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"Body is not bytes (got {type(body).__name__})")
        await self.send({"type": "http.response.body", "body": bytes(body), "more_body": more_body})

    async def send_response(self, status: int, body: bytes, **kwargs: Any) -> None:
        """Send a whole response (``headers=`` as for :meth:`send_headers`)."""
        await self.send_headers(status=status, **kwargs)
        await self.send_body(body)

    async def handle(self, body: bytes) -> None:
        """Handle the request with its full body; subclasses must implement it."""
        raise NotImplementedError("Subclasses of AsyncHttpConsumer must provide a handle() method.")

    async def disconnect(self) -> None:
        """Cleanup hook, called once when the request is over or the client left."""

    async def http_request(self, message: dict[str, Any]) -> None:
        """Collect body chunks; at the last one call :meth:`handle`, then stop."""
        if "body" in message:
            self.body.append(message["body"])
        if not message.get("more_body"):
            try:
                await self.handle(b"".join(self.body))
            finally:
                await self.disconnect()
            raise StopConsumer()

    async def http_disconnect(self, message: dict[str, Any]) -> None:
        """The client left: call :meth:`disconnect` and stop."""
        await self.disconnect()
        raise StopConsumer()
