"""``AsyncHttpConsumer``: Channels' async HTTP consumer (``channels.generic.http``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gateway.asgi.app import Message
from gateway.consumers.base import AsyncConsumer
from gateway.exceptions import StopConsumer

__all__ = ["AsyncHttpConsumer"]


class AsyncHttpConsumer(AsyncConsumer):
    """Collects the request body, then calls :meth:`handle` with it.

    Respond with :meth:`send_headers` + :meth:`send_body` (streaming with ``more_body=True``) or
    :meth:`send_response`. The consumer stops (calling :meth:`disconnect` once) when:

    * :meth:`handle` returns with the response complete, or without having started one (the
      server then answers 500), or raises;
    * the response completes later, from a channel layer handler: a response still open when
      :meth:`handle` returns (headers sent, last body chunk with ``more_body=True``) keeps the
      consumer receiving layer messages, for long polling and server-sent events;
    * the client leaves (``http.disconnect``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.body: list[bytes] = []
        self._response_started = False
        self._response_complete = False
        self._handled = False
        self._disconnected = False

    async def send(self, message: dict[str, Any]) -> None:  # type: ignore[override]
        """Send an ASGI message, tracking whether the response started and completed."""
        kind = message.get("type")
        if kind == "http.response.start":
            self._response_started = True
        elif kind == "http.response.body" and not message.get("more_body", False):
            self._response_complete = True
        await super().send(message)

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

    async def _finish(self) -> None:
        if not self._disconnected:
            self._disconnected = True
            await self.disconnect()
        raise StopConsumer()

    @property
    def response_open(self) -> bool:
        """True while a started response still expects body chunks."""
        return self._response_started and not self._response_complete

    async def dispatch(self, message: Message) -> None:
        """Dispatch as usual; once :meth:`handle` has run and the response is complete, stop."""
        await super().dispatch(message)
        if self._handled and not self.response_open:
            await self._finish()

    async def http_request(self, message: dict[str, Any]) -> None:
        """Collect body chunks; at the last one call :meth:`handle`."""
        if "body" in message:
            self.body.append(message["body"])
        if not message.get("more_body"):
            try:
                await self.handle(b"".join(self.body))
            except BaseException:
                if not self._disconnected:
                    self._disconnected = True
                    await self.disconnect()
                raise
            self._handled = True

    async def http_disconnect(self, message: dict[str, Any]) -> None:
        """The client left: call :meth:`disconnect` and stop."""
        await self._finish()
