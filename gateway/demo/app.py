"""A small example application: a page, a JSON echo endpoint, and lifespan state.

Routes:
    ``GET /``          an HTML page
    ``GET /hello``     plain text ``Hello, world!``
    ``POST /echo``     echoes the request body back (streams it)
    ``GET /state``     JSON with the time the application started (lifespan state)
"""

from __future__ import annotations

import json
import time
from typing import Any

PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>gateway</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5}</style>
</head><body>
<h1>gateway is running</h1>
<p>This page is served by the bundled example application (<code>gateway.demo:application</code>).</p>
<ul><li><a href="/hello">/hello</a>: plain text</li><li><a href="/state">/state</a>: lifespan state</li>
<li><code>curl -d 'some text' http://127.0.0.1:8000/echo</code>: echo</li></ul>
</body></html>
"""


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI entry point."""
    kind = scope["type"]
    if kind == "lifespan":
        await _lifespan(scope, receive, send)
    elif kind == "http":
        await _http(scope, receive, send)
    elif kind == "websocket":
        await receive()
        await send({"type": "websocket.close", "code": 1000})


async def _lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["started"] = time.time()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def _http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path, method = scope["path"], scope["method"]
    if path == "/" and method in ("GET", "HEAD"):
        await _respond(send, 200, PAGE, b"text/html; charset=utf-8")
    elif path == "/hello":
        await _respond(send, 200, b"Hello, world!", b"text/plain")
    elif path == "/state":
        body = json.dumps({"started": scope.get("state", {}).get("started")}).encode()
        await _respond(send, 200, body, b"application/json")
    elif path == "/echo" and method == "POST":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/octet-stream")]})
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            await send({"type": "http.response.body", "body": message.get("body", b""), "more_body": True})
            if not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b""})
    else:
        await _respond(send, 404, b"Not Found\n", b"text/plain")
