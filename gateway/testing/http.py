"""``HttpCommunicator``: one HTTP request to an application, Channels-compatible."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import quote, urlparse

from gateway.asgi.app import ASGIApp, Message
from gateway.protocols.http.asgi import http_scope
from gateway.testing.application import ProtocolCommunicator, UnexpectedMessage

__all__ = ["HttpCommunicator"]


class HttpCommunicator(ProtocolCommunicator):
    """Sends one request and collects the response.

    Args:
        application: the ASGI application.
        method: HTTP method.
        path: path with optional query string (``"/items/?page=2"``).
        body: the request body.
        headers: ``[(name, value), ...]`` as bytes.
        scope_overrides: extra or replaced scope keys (e.g. ``root_path``, ``client``).
    """

    scope_type = "http"

    def __init__(
        self,
        application: ASGIApp,
        method: str,
        path: str,
        body: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        scope_overrides: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(body, bytes):
            raise TypeError("body must be bytes")
        self.body = body
        self.sent_request = False
        super().__init__(application, scope_overrides=scope_overrides, method=method, path=path, headers=headers)

    def build_scope(self, *, method: str, path: str, headers: Any = None) -> dict[str, Any]:
        """An ASGI 3 ``http`` scope for ``method`` and ``path``, as the HTTP listener builds it."""
        parsed = urlparse(path)
        return cast("dict[str, Any]", http_scope(
            method=method.upper(),
            http_version="1.1",
            scheme="http",
            raw_path=quote(parsed.path, safe="/%:@!$&'()*+,;=~").encode("ascii"),
            query_string=parsed.query.encode("utf-8"),
            root_path="",
            headers=list(headers or []),
            client=("127.0.0.1", 50000),
            server=("127.0.0.1", 80),
            state=None,
            extensions={"http.response.trailers": {}, "http.response.pathsend": {}},
        ))

    async def get_response(self, timeout: float = 1) -> Message:
        """Send the request (once) and return ``{"status", "headers", "body", ...}``.

        Raises:
            UnexpectedMessage: the application sent something out of order.
        """
        if not self.sent_request:
            self.sent_request = True
            await self.send_input({"type": "http.request", "body": self.body, "more_body": False})
        response = await self.expect("http.response.start", timeout)
        response["body"] = b""
        while True:
            chunk = await self.expect("http.response.body", timeout)
            if not isinstance(chunk.get("body", b""), bytes):
                raise UnexpectedMessage(f"body is not bytes: {chunk!r}")
            response["body"] += chunk.get("body", b"")
            if not chunk.get("more_body", False):
                break
        del response["type"]
        response.setdefault("headers", [])
        return response
