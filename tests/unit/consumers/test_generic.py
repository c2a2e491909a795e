"""Generic WebSocket and HTTP consumers through the communicators."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.consumers import (
    AsyncHttpConsumer,
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    JsonWebsocketConsumer,
    WebsocketConsumer,
)
from gateway.exceptions import AcceptConnection, DenyConnection, InvalidChannelLayerError
from gateway.layers import InMemoryChannelLayer, LayerRegistry
from gateway.testing import HttpCommunicator, WebsocketCommunicator


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class AsyncFeatures(AsyncWebsocketConsumer):
    groups = ["everyone"]

    async def connect(self) -> None:
        query = self.scope["query_string"]
        if query == b"deny":
            raise DenyConnection()
        if query == b"accept-exc":
            raise AcceptConnection()
        await self.accept(subprotocol="chat.v1" if "chat.v1" in self.scope["subprotocols"] else None,
                          headers=[(b"x-hello", b"1")])

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data == "close":
            await self.close(code=4001, reason="bye")
        elif text_data == "last":
            await self.send(text_data="final", close=True)
        elif text_data is not None:
            await self.send(text_data=text_data.upper())
        else:
            await self.send(bytes_data=bytes(reversed(bytes_data or b"")))

    async def room_news(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])


class SyncFeatures(WebsocketConsumer):
    groups = ["everyone"]

    def connect(self) -> None:
        if self.scope["query_string"] == b"deny":
            raise DenyConnection()
        self.accept("chat.v1" if "chat.v1" in self.scope["subprotocols"] else None, [(b"x-hello", b"1")])

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data == "close":
            self.close(code=4001, reason="bye")
        elif text_data == "last":
            self.send(text_data="final", close=True)
        elif text_data is not None:
            self.send(text_data=text_data.upper())
        else:
            self.send(bytes_data=bytes(reversed(bytes_data or b"")))

    def room_news(self, event: dict[str, Any]) -> None:
        self.send(text_data=event["text"])


@pytest.mark.parametrize("consumer", [AsyncFeatures, SyncFeatures])
def test_websocket_consumer_features(consumer: Any, fresh_layer: InMemoryChannelLayer) -> None:
    async def main() -> None:
        comm = WebsocketCommunicator(consumer.as_asgi(), "/ws/?", subprotocols=["chat.v1"])
        assert await comm.connect() == (True, "chat.v1")
        assert comm.response_headers == [(b"x-hello", b"1")]
        await comm.send_to(text_data="hello")
        assert await comm.receive_from() == "HELLO"
        await comm.send_to(bytes_data=b"\x01\x02")
        assert await comm.receive_from() == b"\x02\x01"
        # groups = ["everyone"] joined on connect
        await fresh_layer.group_send("everyone", {"type": "room.news", "text": "news!"})
        assert await comm.receive_from() == "news!"
        await comm.send_to(text_data="close")
        assert await comm.receive_output() == {"type": "websocket.close", "code": 4001, "reason": "bye"}
        await comm.disconnect()
        # left the group on disconnect
        assert "everyone" not in fresh_layer._groups

        comm = WebsocketCommunicator(consumer.as_asgi(), "/ws/")
        assert await comm.connect() == (True, None)
        await comm.send_to(text_data="last")
        assert await comm.receive_from() == "final"
        assert (await comm.receive_output())["type"] == "websocket.close"
        await comm.disconnect()

    run(main())


@pytest.mark.parametrize("consumer", [AsyncFeatures, SyncFeatures])
def test_deny_connection(consumer: Any) -> None:
    async def main() -> None:
        comm = WebsocketCommunicator(consumer.as_asgi(), "/ws/?deny")
        assert await comm.connect() == (False, 1000)
        await comm.disconnect()

    run(main())


def test_accept_connection_exception() -> None:
    async def main() -> None:
        comm = WebsocketCommunicator(AsyncFeatures.as_asgi(), "/ws/?accept-exc")
        assert await comm.connect() == (True, None)
        await comm.disconnect()

    run(main())


def test_groups_need_a_layer(registry: LayerRegistry) -> None:
    registry.set("default", None)

    async def main() -> None:
        comm = WebsocketCommunicator(AsyncFeatures.as_asgi(), "/")
        await comm.send_input({"type": "websocket.connect"})
        with pytest.raises(InvalidChannelLayerError, match="doesn't support groups"):
            await comm.wait()

    run(main())


def test_groups_left_when_consumer_crashes(fresh_layer: InMemoryChannelLayer) -> None:
    class Crashing(AsyncWebsocketConsumer):
        groups = ["crashers"]

        async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            raise RuntimeError("boom")

    async def main() -> None:
        comm = WebsocketCommunicator(Crashing.as_asgi(), "/")
        await comm.connect()
        assert len(fresh_layer._groups["crashers"]) == 1
        await comm.send_to(text_data="x")
        with pytest.raises(RuntimeError, match="boom"):
            await comm.wait()
        assert "crashers" not in fresh_layer._groups

    run(main())


class AsyncJson(AsyncJsonWebsocketConsumer):
    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json({"echo": content})


class SyncJson(JsonWebsocketConsumer):
    def receive_json(self, content: Any, **kwargs: Any) -> None:
        self.send_json({"echo": content})


@pytest.mark.parametrize("consumer", [AsyncJson, SyncJson])
def test_json_consumers(consumer: Any) -> None:
    async def main() -> None:
        comm = WebsocketCommunicator(consumer.as_asgi(), "/")
        await comm.connect()
        await comm.send_json_to({"a": [1, 2]})
        assert await comm.receive_json_from() == {"echo": {"a": [1, 2]}}
        await comm.send_to(bytes_data=b"{}")
        with pytest.raises(ValueError, match="No text section"):
            await comm.wait()

    run(main())


class Hello(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        if self.scope["path"] == "/stream":
            await self.send_headers(headers={b"content-type": b"text/plain"})
            await self.send_body(b"part1,", more_body=True)
            await self.send_body(b"part2")
        else:
            await self.send_response(201, b"got " + body, headers=[(b"x-n", str(len(body)).encode())])


def test_http_consumer() -> None:
    async def main() -> None:
        comm = HttpCommunicator(Hello.as_asgi(), "POST", "/x?y=1", body=b"abc")
        assert comm.scope["query_string"] == b"y=1"
        response = await comm.get_response()
        assert response == {"status": 201, "headers": [(b"x-n", b"3")], "body": b"got abc"}
        await comm.wait()

        comm = HttpCommunicator(Hello.as_asgi(), "GET", "/stream")
        response = await comm.get_response()
        assert response["body"] == b"part1,part2"
        assert response["headers"] == [(b"content-type", b"text/plain")]

    run(main())


def test_http_consumer_chunked_body_and_disconnect() -> None:
    disconnected: list[bool] = []

    class Collect(AsyncHttpConsumer):
        async def handle(self, body: bytes) -> None:
            await self.send_response(200, body)

        async def disconnect(self) -> None:
            disconnected.append(True)

    async def main() -> None:
        from gateway.testing import ApplicationCommunicator

        comm = ApplicationCommunicator(Collect.as_asgi(), {"type": "http", "path": "/"})
        await comm.send_input({"type": "http.request", "body": b"ab", "more_body": True})
        await comm.send_input({"type": "http.request", "body": b"cd", "more_body": False})
        assert (await comm.receive_output())["status"] == 200
        assert (await comm.receive_output())["body"] == b"abcd"
        await comm.wait()
        comm = ApplicationCommunicator(Collect.as_asgi(), {"type": "http", "path": "/"})
        await comm.send_input({"type": "http.disconnect"})
        await comm.wait()
        assert disconnected == [True, True]

    run(main())


def test_http_send_body_must_be_bytes() -> None:
    class Bad(AsyncHttpConsumer):
        async def handle(self, body: bytes) -> None:
            await self.send_headers()
            await self.send_body("text")  # type: ignore[arg-type]

    async def main() -> None:
        comm = HttpCommunicator(Bad.as_asgi(), "GET", "/")
        with pytest.raises(TypeError, match="Body is not bytes"):
            await comm.get_response()

    run(main())
