"""The communicators themselves: scopes, Channels-compatible results, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.testing import (
    ApplicationCommunicator,
    HttpCommunicator,
    ProtocolCommunicator,
    UnexpectedMessage,
    WebsocketCommunicator,
)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def ws_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept", "subprotocol": scope["subprotocols"][-1], "headers": [(b"a", b"b")]})
    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            return
        if event.get("text") == "close":
            await send({"type": "websocket.close", "code": 4000})
        elif event.get("text") == "both":
            await send({"type": "websocket.send", "text": "x", "bytes": b"x"})
        elif "text" in event:
            await send({"type": "websocket.send", "text": event["text"]})
        else:
            await send({"type": "websocket.send", "bytes": event["bytes"]})


def test_websocket_communicator() -> None:
    async def main() -> None:
        comm = WebsocketCommunicator(ws_app, "/a%20b/?q=1", subprotocols=["v1", "v2"], spec_version="2.3")
        scope = comm.scope
        assert (scope["type"], scope["path"], scope["query_string"], scope["spec_version"]) == ("websocket", "/a b/", b"q=1", "2.3")
        assert await comm.connect() == (True, "v2")
        assert comm.response_headers == [(b"a", b"b")]
        await comm.send_to(text_data="hi")
        assert await comm.receive_from() == "hi"
        await comm.send_to(bytes_data=b"\x00")
        assert await comm.receive_from() == b"\x00"
        await comm.send_json_to({"k": 1})
        assert await comm.receive_json_from() == {"k": 1}
        assert await comm.receive_nothing()
        await comm.send_to(bytes_data=b"[]")
        with pytest.raises(UnexpectedMessage, match="not a text frame"):
            await comm.receive_json_from()
        await comm.send_to(text_data="both")
        with pytest.raises(UnexpectedMessage, match="exactly one"):
            await comm.receive_from()
        await comm.send_to(text_data="close")
        with pytest.raises(UnexpectedMessage, match="websocket.send"):
            await comm.receive_from()
        for bad in ({}, {"text_data": "a", "bytes_data": b"b"}, {"text_data": b"x"}, {"bytes_data": "x"}):
            with pytest.raises(TypeError):
                await comm.send_to(**bad)
        await comm.disconnect()

    run(main())
    with pytest.raises(TypeError):
        WebsocketCommunicator(ws_app, b"/")  # type: ignore[arg-type]


def test_http_communicator() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        event = await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-method", scope["method"].encode())]})
        await send({"type": "http.response.body", "body": event["body"][:2], "more_body": True})
        await send({"type": "http.response.body", "body": event["body"][2:]})

    async def main() -> None:
        comm = HttpCommunicator(app, "post", "/p?x=y", body=b"hello", headers=[(b"h", b"v")],
                                scope_overrides={"root_path": "/r"})
        assert comm.scope["root_path"] == "/r" and comm.scope["headers"] == [(b"h", b"v")]
        assert await comm.get_response() == {"status": 200, "headers": [(b"x-method", b"POST")], "body": b"hello"}

    run(main())
    with pytest.raises(TypeError):
        HttpCommunicator(app, "GET", "/", body="text")  # type: ignore[arg-type]


def test_expect_and_timeouts() -> None:
    async def silent(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "hello"})
        await receive()

    async def main() -> None:
        comm = ApplicationCommunicator(silent, {"type": "test"})
        with pytest.raises(UnexpectedMessage, match="'other'"):
            await comm.expect("other")
        comm = ApplicationCommunicator(silent, {"type": "test"})
        assert (await comm.expect(("x", "hello")))["type"] == "hello"
        with pytest.raises(asyncio.TimeoutError):
            await comm.receive_output(timeout=0.05)

    run(main())


def test_protocol_communicator_is_extensible() -> None:
    class SmsCommunicator(ProtocolCommunicator):
        scope_type = "sms"

        def build_scope(self, *, sender: str, to: str) -> dict[str, Any]:  # type: ignore[override]
            return super().build_scope(**{"from": sender, "to": to, "provider": "test"})

        async def text(self, body: str) -> dict[str, Any]:
            await self.send_input({"type": "sms.receive", "text": body})
            return await self.expect("sms.reply")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        event = await receive()
        await send({"type": "sms.reply", "text": f"{scope['from']} said {event['text']}"})

    async def main() -> None:
        comm = SmsCommunicator(app, sender="+441234", to="+15550100", scope_overrides={"account": "main"})
        assert comm.scope == {"type": "sms", "asgi": {"version": "3.0"}, "from": "+441234", "to": "+15550100",
                              "provider": "test", "account": "main"}
        assert (await comm.text("hi"))["text"] == "+441234 said hi"

    run(main())
