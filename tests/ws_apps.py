"""ASGI applications for the WebSocket integration tests (``tests.ws_apps:app``).

WebSocket behaviour is chosen by the path; the ``tag`` query parameter names the connection in
the event log. Every ``websocket.disconnect`` (and other notable things) goes into that log,
which tests read over HTTP at ``/events?tag=T&count=N`` (waits until N events for T exist) and,
when ``GATEWAY_WS_EVENTS`` names a file, as JSON lines there (for after the daemon exited).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from urllib.parse import parse_qsl

from tests.apps import plain_lifespan, send_noting_holds

EVENTS: list[dict[str, Any]] = []
PROGRESS: dict[str, int] = {}
#: tag -> messages sent when the daemon's flow control held send() (``/held``; -1: not held).
HELD: dict[str, int] = {}
_changed: asyncio.Condition | None = None
_released: dict[str, asyncio.Event] = {}

PAGE = b"""<!doctype html>
<html><head><title>ws</title></head><body>
<div id="result">pending</div>
<script>
const ws = new WebSocket(`ws://${location.host}/echo?tag=chromium`, ["chat.v2", "chat.v1"]);
ws.binaryType = "arraybuffer";
const got = [];
ws.onmessage = (e) => {
  got.push(typeof e.data === "string" ? "text:" + e.data : "bytes:" + e.data.byteLength);
  if (got.length === 2) {
    document.getElementById("result").textContent = "ok " + ws.protocol + " " + ws.extensions + " " + got.join(",");
    ws.send("done");
  }
};
ws.onopen = () => { ws.send("hello from chromium"); ws.send(new Uint8Array([1, 2, 3]).buffer); };
ws.onerror = () => { document.getElementById("result").textContent = "error"; };
</script>
<script src="/events?tag=chromium&type=websocket.receive&text=done&count=1&js=1"></script>
</body></html>
"""


def _query(scope: dict[str, Any]) -> dict[str, str]:
    return dict(parse_qsl(scope["query_string"].decode()))


async def record(tag: str, event: dict[str, Any]) -> None:
    """Log an event for ``tag`` and wake anyone waiting for it."""
    global _changed
    entry = {"tag": tag, **event}
    EVENTS.append(entry)
    path = os.environ.get("GATEWAY_WS_EVENTS")
    if path:
        with open(path, "a") as f:  # noqa: ASYNC230 (a test log, a few lines)
            f.write(json.dumps(entry) + "\n")
    if _changed is None:
        _changed = asyncio.Condition()
    async with _changed:
        _changed.notify_all()


def _matching(query: dict[str, str]) -> list[dict[str, Any]]:
    keys = {k: v for k, v in query.items() if k not in ("count", "js", "timeout")}
    return [e for e in EVENTS if all(str(e.get(k)) == v for k, v in keys.items())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await plain_lifespan(receive, send)
    elif scope["type"] == "http":
        await http(scope, receive, send)
    else:
        await websocket(scope, receive, send)


async def http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _changed
    path, query = scope["path"], _query(scope)
    if path == "/events":
        if _changed is None:
            _changed = asyncio.Condition()
        count = int(query.get("count", "1"))

        async def enough() -> None:
            async with _changed:  # type: ignore[union-attr]
                await _changed.wait_for(lambda: len(_matching(query)) >= count)  # type: ignore[union-attr]

        try:
            await asyncio.wait_for(enough(), float(query.get("timeout", "10")))
        except TimeoutError:
            pass
        body = json.dumps(_matching(query)).encode()
        if query.get("js"):
            body = b"window.events = " + body + b";"
        content_type = b"application/javascript" if query.get("js") else b"application/json"
    elif path == "/progress":
        body, content_type = str(PROGRESS.get(query["tag"], -1)).encode(), b"text/plain"
    elif path == "/held":
        body, content_type = str(HELD.get(query["tag"], -1)).encode(), b"text/plain"
    elif path == "/release":
        _released.setdefault(query["tag"], asyncio.Event()).set()
        body, content_type = b"ok", b"text/plain"
    elif path == "/page":
        body, content_type = PAGE, b"text/html; charset=utf-8"
    else:
        body, content_type = b"websocket test app", b"text/plain"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def _jsonable_scope(scope: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in scope.items():
        if key == "headers":
            value = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in value]
        elif key in ("raw_path", "query_string"):
            value = value.decode("latin-1")
        elif key == "extensions":
            value = {name: (sorted(ext) if isinstance(ext, dict) else ext) for name, ext in value.items()}
        elif key == "state":
            value = sorted(value)
        out[key] = value
    return out


async def websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path, query = scope["path"], _query(scope)
    tag = query.get("tag", path)
    message = await receive()
    if message["type"] != "websocket.connect":
        await record(tag, {"type": "unexpected-first", "message": message["type"]})
        return
    if path == "/reject":
        await send({"type": "websocket.close"})
        await record(tag, await receive())
        return
    if path == "/deny":
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]})
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry"})
        await record(tag, await receive())
        return
    if path == "/raise-before":
        raise RuntimeError("boom before accept")
    if path == "/silent":
        await record(tag, await receive())  # never answers: the accept timeout
        return
    subprotocol = scope["subprotocols"][-1] if scope["subprotocols"] else None
    headers = [(b"x-probe", b"yes"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")] if path == "/headers" else []
    await send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": headers})
    if path == "/scope":
        await send({"type": "websocket.send", "text": json.dumps(_jsonable_scope(scope))})
    elif path == "/raise-after":
        raise RuntimeError("boom after accept")
    elif path == "/return-after":
        return
    elif path == "/flood":
        await flood(tag, query, receive, send)
        return
    elif path == "/sink":
        await _released.setdefault(tag, asyncio.Event()).wait()
        await count(tag, receive)
        return
    await echo(tag, receive, send)


async def count(tag: str, receive: Any) -> None:
    """Receive without answering; ``count`` records how many messages came."""
    received = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            await record(tag, {**message, "received": received})
            return
        received += 1
        if message.get("text") == "count":
            await record(tag, {"type": "websocket.receive", "text": "count", "received": received})


async def echo(tag: str, receive: Any, send: Any) -> None:
    """Echo messages; ``close <code> <reason>`` closes; every disconnect is recorded."""
    received = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            await record(tag, {**message, "received": received})
            try:
                await send({"type": "websocket.send", "text": "after disconnect"})
            except OSError as exc:
                await record(tag, {"type": "send-after-close", "error": type(exc).__name__})
            return
        received += 1
        text = message.get("text")
        if text is not None and text.startswith("close "):
            _, code, reason = (text.split(" ", 2) + [""])[:3]
            await send({"type": "websocket.close", "code": int(code), "reason": reason})
            try:
                await send({"type": "websocket.send", "text": "after close"})
            except OSError as exc:
                await record(tag, {"type": "send-after-close", "error": type(exc).__name__})
            continue
        if text == "done" or text == "count":
            await record(tag, {"type": "websocket.receive", "text": text, "received": received})
            continue
        await send({"type": "websocket.send", "text": text, "bytes": message.get("bytes")})


async def flood(tag: str, query: dict[str, str], receive: Any, send: Any) -> None:
    """Send ``n`` messages of ``size`` bytes as fast as send() allows; record progress."""
    n, size = int(query["n"]), int(query["size"])
    payload = b"x" * size
    for i in range(n):

        def held(i: int = i) -> None:
            HELD[tag] = i

        try:
            await send_noting_holds(send, {"type": "websocket.send", "bytes": payload}, held)
        except OSError:
            await record(tag, {"type": "flood-stopped", "sent": i})
            return
        PROGRESS[tag] = i + 1
    await record(tag, {"type": "flood-done", "sent": n})
    await echo(tag, receive, send)
