"""ProtocolTypeRouter, URLRouter (converters, nesting, root_path, 404/deny) and matches()."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from gateway.middleware import BaseMiddleware
from gateway.routing import (
    ChannelNameRouter,
    ProtocolTypeRouter,
    URLRouter,
    matches,
    path,
    re_path,
    register_converter,
)
from gateway.testing import ApplicationCommunicator, HttpCommunicator, WebsocketCommunicator


def run(coro: Any) -> Any:
    return asyncio.run(coro)


CAPTURED: list[tuple[Any, ...]] = []


def recorder(name: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        CAPTURED.append((name, scope["url_route"]["args"], scope["url_route"]["kwargs"], scope.get("path_remaining")))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


async def route(app: Any, target: str, **scope: Any) -> Any:
    comm = HttpCommunicator(app, "GET", target, scope_overrides=scope or None)
    response = await comm.get_response()
    if response["status"] == 404:
        return 404
    return CAPTURED.pop()


ROOM_UUID = uuid.UUID("12345678-1234-5678-1234-567812345678")

router = URLRouter([
    path("rooms/<int:number>/", recorder("int")),
    path("rooms/<slug:slug>/", recorder("slug")),
    path("things/<uuid:ident>/", recorder("uuid")),
    path("files/<path:rest>", recorder("path")),
    path("hello/<name>/", recorder("str"), kwargs={"extra": True}),
    re_path(r"^legacy/(\d+)/(\w+)/$", recorder("re-args")),
    re_path(r"^named/(?P<year>[0-9]{4})/$", recorder("re-kwargs")),
    path("nested/<str:outer>/", URLRouter([
        path("leaf/<int:inner>/", recorder("inner")),
        re_path(r"^re/(\w+)$", recorder("inner-re")),
    ])),
    path("nested/<str:outer>/", URLRouter([path("fallback/", recorder("second"))])),
    path("mw/", BaseMiddleware(URLRouter([path("deep/", recorder("through-mw"))]))),
])


@pytest.mark.parametrize("target, expected", [
    ("/rooms/42/", ("int", (), {"number": 42}, "")),
    ("/rooms/general-chat_1/", ("slug", (), {"slug": "general-chat_1"}, "")),
    (f"/things/{ROOM_UUID}/", ("uuid", (), {"ident": ROOM_UUID}, "")),
    ("/files/a/b/c.txt", ("path", (), {"rest": "a/b/c.txt"}, "")),
    ("/hello/bob/", ("str", (), {"name": "bob", "extra": True}, "")),
    ("/legacy/7/x/", ("re-args", ("7", "x"), {}, "")),
    ("/named/2024/", ("re-kwargs", (), {"year": "2024"}, "")),
    ("/nested/a/leaf/3/", ("inner", (), {"outer": "a", "inner": 3}, "")),
    ("/nested/a/re/zz", ("inner-re", ("zz",), {"outer": "a"}, "")),
    ("/nested/a/fallback/", ("second", (), {"outer": "a"}, "")),  # backtracks into the next route
    ("/mw/deep/", ("through-mw", (), {}, "")),
    ("/rooms/4 2/", 404), ("/rooms/42", 404), ("/things/not-a-uuid/", 404),
    ("/files/", 404), ("/hello/a/b/", 404), ("/named/24/", 404), ("/nested/a/leaf/x/", 404),
    ("/nowhere/", 404), ("/", 404),
])
def test_url_routing(target: str, expected: Any) -> None:
    assert run(route(router, target)) == expected


def test_root_path_stripped_at_outermost_router() -> None:
    assert run(route(router, "/app/rooms/1/", root_path="/app")) == ("int", (), {"number": 1}, "")
    assert run(route(router, "/rooms/1/", root_path="/app")) == 404
    assert run(route(router, "/application/rooms/1/", root_path="/app")) == 404


def test_websocket_no_route_rejects_handshake() -> None:
    async def main() -> None:
        comm = WebsocketCommunicator(URLRouter([path("ws/", recorder("x"))]), "/other/")
        assert await comm.connect() == (False, 1000)
        await comm.wait()

    run(main())


def test_custom_converter_and_bad_routes() -> None:
    class Hex:
        regex = "[0-9a-f]+"

        def to_python(self, value: str) -> int:
            return int(value, 16)

    register_converter(Hex, "hex")
    hexed = URLRouter([path("c/<hex:value>/", recorder("hex"))])
    assert run(route(hexed, "/c/ff/")) == ("hex", (), {"value": 255}, "")
    for bad in ("x/<nope:y>/", "x/<int:not valid>/", "x/<int:1a>/", "<a>/<a>/"):
        with pytest.raises(ValueError):
            path(bad, recorder("x"))
    with pytest.raises(ValueError):
        re_path("(", recorder("x"))
    with pytest.raises(TypeError):
        URLRouter(["not a route"])  # type: ignore[list-item]


def test_int_converter_value_error_is_no_match() -> None:
    class Picky:
        regex = "[a-z]+"

        def to_python(self, value: str) -> str:
            if value == "bad":
                raise ValueError(value)
            return value

    register_converter(Picky(), "picky")
    picky = URLRouter([path("p/<picky:v>/", recorder("p"))])
    assert run(route(picky, "/p/good/")) == ("p", (), {"v": "good"}, "")
    assert run(route(picky, "/p/bad/")) == 404


def test_protocol_type_router() -> None:
    app = ProtocolTypeRouter({"http": router})
    assert run(route(app, "/rooms/1/"))[0] == "int"

    async def main() -> None:
        comm = ApplicationCommunicator(app, {"type": "mqtt"})
        await comm.send_input({"type": "mqtt.connect"})
        with pytest.raises(ValueError, match="No application configured for scope type 'mqtt'"):
            await comm.wait()

    run(main())


def test_matches_composes_through_routers_and_middleware() -> None:
    app = ProtocolTypeRouter({"http": BaseMiddleware(router), "channel": ChannelNameRouter({"jobs": recorder("j")})})

    async def main() -> None:
        assert await matches(app, {"type": "http", "path": "/rooms/1/"})
        assert await matches(app, {"type": "http", "path": "/nested/a/fallback/"})
        assert not await matches(app, {"type": "http", "path": "/nope/"})
        assert not await matches(app, {"type": "http", "path": "/rooms/1/", "root_path": "/x"})
        assert not await matches(app, {"type": "websocket", "path": "/rooms/1/"})
        assert await matches(app, {"type": "channel", "channel": "jobs"})
        assert not await matches(app, {"type": "channel", "channel": "other"})
        assert await matches(recorder("plain"), {"type": "anything"})

        class Sync:
            def matches(self, scope: dict[str, Any]) -> bool:
                return scope.get("ok", False)

        assert await matches(Sync(), {"ok": True}) and not await matches(Sync(), {})

    run(main())


def test_channel_name_router_errors() -> None:
    app = ChannelNameRouter({"jobs": recorder("j")})
    assert app.channels == ["jobs"]

    async def main() -> None:
        for scope, fragment in (({"type": "channel"}, "without a 'channel' key"),
                                ({"type": "channel", "channel": "x"}, "No application configured for channel name 'x'")):
            comm = ApplicationCommunicator(app, scope)
            with pytest.raises(ValueError, match=fragment):
                await comm.wait()

    run(main())
