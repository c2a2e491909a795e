"""ASGI applications the integration tests run in a real daemon (``tests.apps:app``).

The path picks the behaviour; see each branch. Lifespan behaviour is chosen by the
``GATEWAY_TEST_LIFESPAN`` environment variable: ``ok`` (default), ``fail``, ``raise``.
When ``GATEWAY_TEST_SLOW_STARTED`` names a file, ``/slow`` appends a line to it as it starts, so a
test can wait until a slow request is in flight.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

STATS: dict[str, Any] = {"big_sent": 0, "big_held": None, "upload_received": 0, "uploads": [],
                         "holding": 0, "most_held": 0, "held": 0}
#: ``/stream?hold=<tag>`` waits after its first chunk until ``/release?tag=<tag>`` sets this.
RELEASES: dict[str, asyncio.Event] = {}


if os.environ.get("GATEWAY_TEST_IMPORTED"):  # which processes imported the application
    with open(os.environ["GATEWAY_TEST_IMPORTED"], "a") as _imported:
        _imported.write(f"{os.getpid()}\n")

async def send_noting_holds(send: Any, message: dict[str, Any], on_hold: Any) -> None:
    """``await send(message)``, calling ``on_hold()`` first if send() has to wait: if it is still
    pending after one pass of the loop, the server's flow control holds the application (a send()
    it does not hold returns without suspending)."""
    sending = asyncio.ensure_future(send(message))
    await asyncio.sleep(0)
    if not sending.done():
        on_hold()
    await sending


def _release(tag: str) -> asyncio.Event:
    return RELEASES.setdefault(tag, asyncio.Event())


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
    elif scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.close", "code": 1000})


async def plain_lifespan(receive: Any, send: Any) -> None:
    """Answer lifespan startup and shutdown, nothing more (for the other test applications)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    mode = os.environ.get("GATEWAY_TEST_LIFESPAN", "ok")
    message = await receive()
    if mode == "fail":
        await send({"type": "lifespan.startup.failed", "message": "database unreachable: test failure"})
        return
    if mode == "raise":
        raise RuntimeError("lifespan exploded")
    scope["state"]["booted"] = "yes"
    await send({"type": "lifespan.startup.complete"})
    message = await receive()
    if message["type"] == "lifespan.shutdown":
        marker = os.environ.get("GATEWAY_TEST_SHUTDOWN_MARKER")
        if marker:
            with open(marker, "w") as f:
                f.write("shutdown")
        delay = float(os.environ.get("GATEWAY_TEST_SHUTDOWN_DELAY", "0"))
        if delay:
            with open(marker + ".started" if marker else os.devnull, "w"):
                pass
            await asyncio.sleep(delay)
        await send({"type": "lifespan.shutdown.complete"})


async def text(send: Any, body: bytes, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body)), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def typed(send: Any, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def _query(scope: dict[str, Any]) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(scope["query_string"].decode()))


async def http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    query = _query(scope)
    if path == "/hello":
        await text(send, b"Hello, world!")
    elif path == "/pid":  # which worker process answered (tests of workers: N)
        await text(send, str(os.getpid()).encode())
    elif path == "/scope":
        shown = {k: v for k, v in scope.items() if k not in ("headers", "raw_path", "query_string")}
        shown["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
        shown["query_string"] = scope["query_string"].decode("latin-1")
        await text(send, json.dumps(shown, default=str).encode(), headers=[(b"content-type", b"application/json")])
    elif path == "/echo":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            await send({"type": "http.response.body", "body": message["body"], "more_body": True})
            if not message["more_body"]:
                break
        await send({"type": "http.response.body", "body": b""})
    elif path == "/upload":
        # Records how much of the body has arrived (``/stats``: upload_received), to show uploads
        # stream; answers with the total and the pieces as they arrived.
        arrivals = []
        total = STATS["upload_received"] = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            total += len(message["body"])
            STATS["upload_received"] = total
            arrivals.append([time.monotonic(), total])
            if not message["more_body"]:
                break
        await text(send, json.dumps({"total": total, "arrivals": arrivals}).encode())
    elif path == "/slow":
        started = os.environ.get("GATEWAY_TEST_SLOW_STARTED")
        if started:
            with open(started, "a") as f:
                f.write(path + "\n")
        await asyncio.sleep(float(query.get("s", "1")))
        await text(send, b"slow done")
    elif path == "/stream":
        # ``hold=<tag>``: after the first chunk, wait for ``/release?tag=<tag>``.
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(int(query.get("n", "3"))):
            await send({"type": "http.response.body", "body": b"chunk %d\n" % i, "more_body": True})
            if i == 0 and "hold" in query:
                await _release(query["hold"]).wait()
            await asyncio.sleep(float(query.get("gap", "0")))
        await send({"type": "http.response.body", "body": b""})
    elif path == "/release":
        _release(query["tag"]).set()
        await text(send, b"released")
    elif path == "/big":
        # Sends `mb` MiB in 64 KiB pieces and records how far send() got (for slow clients).
        STATS["big_sent"] = 0
        piece = b"x" * 65536
        count = int(float(query.get("mb", "64")) * 16)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % (count * len(piece)))]})
        STATS["big_held"] = None

        def held() -> None:  # how far it got when send() waited for the client
            STATS["big_held"] = STATS["big_sent"]

        for _ in range(count):
            await send_noting_holds(send, {"type": "http.response.body", "body": piece, "more_body": True}, held)
            STATS["big_sent"] += len(piece)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/stats":
        await text(send, json.dumps({key: STATS[key] for key in ("big_sent", "big_held", "upload_received")}).encode())
    elif path == "/error":
        raise RuntimeError("this application failed on purpose")
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"body"})
        await send({"type": "http.response.trailers", "headers": [(b"x-digest", b"abc")]})
    elif path == "/hold":
        # Keeps running ?s= seconds whatever the client does (it ignores http.disconnect), and
        # counts how many run at once (/held): the HTTP/2 concurrency tests.
        STATS["holding"] += 1
        STATS["held"] += 1
        STATS["most_held"] = max(STATS["most_held"], STATS["holding"])
        try:
            await asyncio.sleep(float(query.get("s", "2")))
        finally:
            STATS["holding"] -= 1
        await text(send, b"held")
    elif path == "/held":
        if query.get("reset"):
            STATS["most_held"] = STATS["holding"]
        await text(send, json.dumps({k: STATS[k] for k in ("holding", "most_held", "held")}).encode())
    elif path == "/many":
        # A page with many resources (the browser fetches them over one HTTP/2 connection).
        scripts = "".join(f'<script src="/res.js?i={i}"></script>' for i in range(int(query.get("n", "40"))))
        await typed(send, f"<!doctype html><title>many</title>{scripts}".encode(), b"text/html")
    elif path == "/res.js":
        await typed(send, b"window.loaded = (window.loaded || 0) + 1;", b"text/javascript")
    elif path == "/hints":
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]})
        await text(send, b"hinted")
    elif path == "/gate":
        # Reads the body only once the file named by ?gate= exists (flow-control tests).
        while not os.path.exists(query["gate"]):
            await asyncio.sleep(0.01)
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            total += len(message["body"])
            if not message["more_body"]:
                break
        await text(send, b"%d" % total)
    elif path == "/file":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.pathsend", "path": query["path"]})
    else:
        await text(send, b"not found", status=404)
