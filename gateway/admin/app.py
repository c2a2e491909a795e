# -*- test-case-name: tests.integration.test_admin -*-
"""The admin listener's ASGI application.

Routes:
    ``GET /metrics``     Prometheus text format (:meth:`MetricsHub.exposition`)
    ``GET /healthz``     200 ``{"status": "alive"}`` while the process runs
    ``GET /readyz``      200 ``{"status": "ready"}``, or 503 with the reasons: starting or stopping,
                         a listener not bound, an MQTT connector not connected, a channel layer
                         not reachable
    ``GET /``            the live status page (assets from :mod:`gateway.admin.page`)
    ``WS  /ws``          the status page's stream: the samples kept since start, then one a second
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

from twisted.logger import Logger

from gateway import __version__
from gateway.admin import page
from gateway.admin.sampler import Sampler
from gateway.asgi.app import Receive, Scope, Send

__all__ = ["AdminApp", "readiness"]

log = Logger(namespace="gateway.admin")

_JSON = b"application/json"
_TEXT = b"text/plain; charset=utf-8"
_PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"
#: Samples a slow page may have waiting before newer ones are skipped.
_QUEUE = 10


class AdminApp:
    """Serves one admin listener (see the module documentation).

    Args:
        service: the daemon (listeners, layers, ``ready``, ``stopping``).
        hub: the daemon's :class:`~gateway.metrics.hub.MetricsHub`.
        sampler: the status page's sampler.
        readiness_timeout: seconds a layer ping may take.
    """

    def __init__(self, service: Any, hub: Any, sampler: Sampler, readiness_timeout: float = 2.0) -> None:
        self.service = service
        self.hub = hub
        self.sampler = sampler
        self.readiness_timeout = readiness_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "websocket":
            await self.websocket(scope, receive, send)

    # -- HTTP ----------------------------------------------------------------------------

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one HTTP request."""
        path, method = scope["path"], scope["method"]
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", _TEXT, [(b"allow", b"GET, HEAD")])
            return
        refresh = getattr(self.hub, "refresh", None)
        if refresh is not None and path in ("/metrics", "/readyz"):
            await refresh()  # several workers: their numbers as of now, not of their last report
        if path == "/metrics":
            await _respond(send, 200, self.hub.exposition(), _PROMETHEUS)
        elif path == "/healthz":
            await _respond(send, 200, _dumps({"status": "alive", "version": __version__}), _JSON)
        elif path == "/readyz":
            reasons = await readiness(self.service, self.readiness_timeout)
            if reasons:
                await _respond(send, 503, _dumps({"status": "not ready", "reasons": reasons}), _JSON)
            else:
                await _respond(send, 200, _dumps({"status": "ready"}), _JSON)
        elif path == "/":
            await _respond(send, 200, page.HTML, b"text/html; charset=utf-8", [(b"cache-control", b"no-cache")])
        elif path == "/status.js":
            await _respond(send, 200, page.SCRIPT, b"text/javascript; charset=utf-8", [(b"cache-control", b"no-cache")])
        else:
            await _respond(send, 404, b"not found\n", _TEXT)

    # -- the status page's WebSocket -----------------------------------------------------

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream samples to one status page until it leaves: first the kept history, then one
        sample a second."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if scope["path"] != "/ws" or not _same_origin(scope):
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept"})
        queue: asyncio.Queue[str] = asyncio.Queue(_QUEUE)

        def push(sample: str) -> None:
            if queue.full():
                queue.get_nowait()  # a page that does not keep up sees the newest numbers
            queue.put_nowait(sample)

        sampler = self.sampler
        meta = json.dumps({"version": __version__, "interval": sampler.interval, "keep": sampler.keep},
                          separators=(",", ":"))
        hello = meta[:-1] + ',"history":' + sampler.history_json() + "}"
        await send({"type": "websocket.send", "text": hello})
        sampler.subscribe(push)
        disconnected = asyncio.ensure_future(_until_disconnect(receive))
        try:
            while True:
                getting = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getting, disconnected}, return_when=asyncio.FIRST_COMPLETED)
                if disconnected in done:
                    getting.cancel()
                    return
                await send({"type": "websocket.send", "text": '{"sample":' + getting.result() + "}"})
        except OSError:  # ClientDisconnected: the page went away while we sent
            return
        finally:
            sampler.unsubscribe(push)
            disconnected.cancel()


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "websocket.disconnect":
        pass


async def readiness(service: Any, timeout: float = 2.0) -> list[str]:
    """Why the daemon is not ready (an empty list: it is)."""
    reasons: list[str] = []
    if service is None:
        return ["no daemon"]
    if getattr(service, "stopping", False):
        reasons.append("stopping")
    elif not service.ready:
        reasons.append("starting")
    workers = getattr(service, "worker_problems", None)
    if callable(workers):  # the supervisor of several workers: ready only while all of them are
        reasons.extend(workers())
    for listener in service.listeners:
        problem = listener.readiness_problem()
        if problem is not None:
            reasons.append(f"listener {listener.name} {problem}")
    layers = getattr(service, "layers", None)
    if layers is not None:
        for alias in layers.aliases:
            problem = await _layer_problem(layers.get(alias), timeout)
            if problem is not None:
                reasons.append(f"layer {alias}: {problem}")
    return reasons


async def _layer_problem(layer: Any, timeout: float) -> str | None:
    """Why a layer is not reachable: its ``ping()`` failed, or its ``stats()`` report shards down."""
    if layer is None:
        return None
    ping = getattr(layer, "ping", None)
    if callable(ping):
        try:
            await asyncio.wait_for(ping(), timeout)
        except TimeoutError:
            return f"no answer within {timeout:g}s"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None
    stats = getattr(layer, "stats", None)
    if callable(stats):
        try:
            numbers = stats()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        if numbers.get("shards_down"):
            return f"{numbers['shards_down']} shard(s) down"
    return None


def _same_origin(scope: Scope) -> bool:
    """A browser's WebSocket from another site must not read the numbers (no Origin: a tool)."""
    headers: dict[bytes, bytes] = dict(scope.get("headers") or [])
    origin = headers.get(b"origin")
    if origin is None:
        return True
    host = headers.get(b"host", b"").decode("latin-1").lower()
    netloc: str = urlsplit(origin.decode("latin-1")).netloc.lower()
    return netloc == host


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


async def _respond(send: Send, status: int, body: bytes, content_type: bytes,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
