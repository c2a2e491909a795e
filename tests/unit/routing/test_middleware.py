"""Middleware: BaseMiddleware, OriginValidator, CookieMiddleware, UserMiddleware."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from gateway.middleware import (
    AllowedHostsOriginValidator,
    BaseMiddleware,
    CookieMiddleware,
    OriginValidator,
    UserMiddleware,
    is_same_domain,
    parse_cookie,
)
from gateway.routing import URLRouter, matches, path
from gateway.testing import HttpCommunicator, WebsocketCommunicator


def run(coro: Any) -> Any:
    return asyncio.run(coro)


SEEN: list[dict[str, Any]] = []


async def accept_ws(scope: dict[str, Any], receive: Any, send: Any) -> None:
    SEEN.append(scope)
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def ws_connect(app: Any, origin: bytes | None) -> tuple[bool, Any]:
    headers = [(b"origin", origin)] if origin is not None else []
    comm = WebsocketCommunicator(app, "/", headers=headers)
    return await comm.connect()


@pytest.mark.parametrize("allowed, origin, ok", [
    (["http://example.com"], b"http://example.com", True),
    (["http://example.com"], b"http://example.com:80", True),
    (["http://example.com"], b"https://example.com", False),
    (["https://example.com:8443"], b"https://example.com:8443", True),
    (["https://example.com:8443"], b"https://example.com", False),
    ([".example.com"], b"https://chat.example.com", True),
    ([".example.com"], b"http://example.com", True),
    ([".example.com"], b"http://badexample.com", False),
    (["example.com"], b"http://EXAMPLE.com:9000", True),
    (["example.com"], b"http://sub.example.com", False),
    (["example.com"], None, False),
    (["*"], None, True),
    (["*"], b"http://anything", True),
    (["example.com"], b"http://example.com:notaport", False),
    (["example.com"], b"null", False),
])
def test_origin_validator(allowed: list[str], origin: bytes | None, ok: bool) -> None:
    result = run(ws_connect(OriginValidator(accept_ws, allowed), origin))
    assert result == ((True, None) if ok else (False, 1000))


def test_allowed_hosts_origin_validator_defaults_and_http_passthrough() -> None:
    app = AllowedHostsOriginValidator(accept_ws)
    assert run(ws_connect(app, b"http://localhost:8000")) == (True, None)
    assert run(ws_connect(app, b"http://evil.test")) == (False, 1000)
    assert run(ws_connect(AllowedHostsOriginValidator(accept_ws, ["chat.test"]), b"https://chat.test")) == (True, None)

    async def http() -> int:
        return (await HttpCommunicator(app, "GET", "/").get_response())["status"]

    assert run(http()) == 200


def test_is_same_domain() -> None:
    assert is_same_domain("a.example.com", ".example.com")
    assert is_same_domain("example.com", ".example.com")
    assert not is_same_domain("example.com", "")
    assert not is_same_domain("xexample.com", ".example.com")


def test_cookies() -> None:
    assert parse_cookie('a=1; b="two words"; lone; c = 3 ') == {"a": "1", "b": "two words", "": "lone", "c": "3"}
    SEEN.clear()

    async def main() -> None:
        app = CookieMiddleware(accept_ws)
        await HttpCommunicator(app, "GET", "/", headers=[(b"cookie", b"a=1; b=2"), (b"Cookie", b"c=3")]).get_response()
        await HttpCommunicator(app, "GET", "/").get_response()

    run(main())
    assert SEEN[0]["cookies"] == {"a": "1", "b": "2", "c": "3"}
    assert SEEN[1]["cookies"] == {}


def test_user_middleware_async_and_sync() -> None:
    SEEN.clear()
    threads: list[int] = []

    async def resolve_async(scope: dict[str, Any]) -> str:
        return "async:" + scope["cookies"].get("session", "anon")

    def resolve_sync(scope: dict[str, Any]) -> str:
        threads.append(threading.get_ident())
        return "sync-user"

    async def main() -> None:
        app = CookieMiddleware(UserMiddleware(accept_ws, resolve_async))
        await HttpCommunicator(app, "GET", "/", headers=[(b"cookie", b"session=bob")]).get_response()
        await HttpCommunicator(UserMiddleware(accept_ws, resolve_sync), "GET", "/").get_response()

    run(main())
    assert [s["user"] for s in SEEN] == ["async:bob", "sync-user"]
    assert threads and threads[0] != threading.get_ident()


def test_base_middleware_copies_scope_and_forwards_matches() -> None:
    class Tag(BaseMiddleware):
        async def resolve_scope(self, scope: dict[str, Any]) -> None:
            scope["tag"] = True

    original = {"type": "http", "path": "/x/", "method": "GET", "headers": [], "query_string": b""}
    SEEN.clear()

    async def main() -> None:
        app = Tag(URLRouter([path("x/", accept_ws)]))
        assert await matches(app, {"type": "http", "path": "/x/"})
        assert not await matches(app, {"type": "http", "path": "/y/"})
        comm = HttpCommunicator(app, "GET", "/x/")
        await comm.get_response()

    run(main())
    assert SEEN[0]["tag"] is True and "tag" not in original
