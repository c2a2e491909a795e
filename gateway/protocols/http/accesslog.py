"""Access log in the Combined Log Format (as Apache and nginx write it)::

    127.0.0.1 - - [21/Nov/2026:23:30:00 +0000] "GET /path?q=1 HTTP/1.1" 200 13 "-" "curl/8.0"
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import IO, Any, Protocol

from gateway.protocols.http.core import Request


class Logged(Protocol):
    """What a line is written from (the HTTP adapter's ``Exchange``)."""

    @property
    def scope(self) -> Mapping[str, Any]: ...

    @property
    def request(self) -> Request: ...

    @property
    def status(self) -> int: ...

    @property
    def bytes_sent(self) -> int: ...


class AccessLog:
    """Writes one line per response to stdout, stderr or a file (opened for appending).

    Args:
        destination: ``stdout``, ``stderr`` or a path.
    """

    def __init__(self, destination: str) -> None:
        self.destination = destination
        self._own = destination not in ("stdout", "stderr", "-")
        self._stream: IO[str] | None = None
        self._second = -1
        self._stamp = ""

    def open(self) -> None:
        """Open the destination (done at start-up, so a bad path fails early)."""
        if self._stream is not None:
            return
        if self.destination in ("stdout", "-"):
            self._stream = sys.stdout
        elif self.destination == "stderr":
            self._stream = sys.stderr
        else:
            self._stream = open(self.destination, "a", buffering=1, encoding="utf-8")

    def close(self) -> None:
        """Close the file, if we opened one."""
        if self._own and self._stream is not None:
            self._stream.close()
        self._stream = None

    def log(self, exchange: Logged, peer: Any) -> None:
        """Write the line for a finished (or failed) response."""
        self.log_line(exchange.scope, exchange.request, exchange.status, exchange.bytes_sent, peer)

    def log_line(self, scope: Mapping[str, Any], request: Request, status: int, bytes_sent: int, peer: Any) -> None:
        """Write the line for one answered request (a WebSocket handshake: 101, or its refusal)."""
        stream = self._stream
        if stream is None:
            return
        client = scope.get("client") or peer
        host = client[0] if client else "-"
        referer = user_agent = "-"
        for name, value in request.headers:
            if name == b"referer":
                referer = _quote(value)
            elif name == b"user-agent":
                user_agent = _quote(value)
        line = '%s - - [%s] "%s %s HTTP/%s" %d %s "%s" "%s"\n' % (
            host,
            self._timestamp(),
            request.method,
            _quote(request.target),
            request.http_version,
            status,
            bytes_sent if bytes_sent else "-",
            referer,
            user_agent,
        )
        stream.write(line)

    def _timestamp(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))
        return self._stamp


def _quote(value: bytes) -> str:
    text = value.decode("latin-1")
    if '"' in text or "\\" in text or any(ord(c) < 32 or ord(c) > 126 for c in text):
        text = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "\\x%02x" % ord(c) for c in text)
    return text
