"""Client helpers for the WebSocket integration tests: the application's event log, a raw-socket client."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from typing import Any

import httpx
from websockets.asyncio.client import connect

from tests.integration.daemon import Daemon


def events(daemon: Daemon, tag: str, count: int = 1, timeout: float = 10.0, **match: Any) -> list[dict[str, Any]]:
    """The application's events for ``tag`` (waits until ``count`` of them match)."""
    params = {"tag": tag, "count": count, "timeout": timeout, **match}
    return httpx.get(daemon.url() + "/events", params=params, timeout=timeout + 5).json()  # type: ignore[no-any-return]


def disconnect_of(daemon: Daemon, tag: str) -> dict[str, Any]:
    found = events(daemon, tag, type="websocket.disconnect")
    assert found, f"no websocket.disconnect recorded for {tag}"
    return found[0]


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def client(daemon: Daemon, path: str, **kwargs: Any) -> connect:
    kwargs.setdefault("proxy", None)
    kwargs.setdefault("compression", None)
    return connect(f"ws://127.0.0.1:{daemon.port()}{path}", **kwargs)


class RawClient:
    """A WebSocket client on a bare socket: exact frames out, frames read back, pongs never sent."""

    def __init__(self, port: int, path: str = "/echo", headers: bytes = b"", timeout: float = 10.0,
                 buffers: int | None = None) -> None:
        self.sock = socket.socket()
        if buffers is not None:  # small kernel buffers (set before connecting, so they stick)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffers)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffers)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(
            b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n" % (path.encode(), key, headers)
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        self.head, _, self.buf = self.buf.partition(b"\r\n\r\n")

    @property
    def status(self) -> int:
        return int(self.head.split()[1])

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("closed")
        self.buf += chunk

    def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True) -> None:
        self.sock.sendall(self.frame(opcode, payload, fin=fin, rsv=rsv, masked=masked))

    @staticmethod
    def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True) -> bytes:
        head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
        n = len(payload)
        mask_bit = 0x80 if masked else 0
        if n < 126:
            head += bytes([mask_bit | n])
        elif n < 65536:
            head += bytes([mask_bit | 126]) + struct.pack("!H", n)
        else:
            head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
        if masked:
            key = os.urandom(4)
            n = len(payload)
            mask = int.from_bytes((key * (n // 4 + 1))[:n], "little")
            payload = (int.from_bytes(payload, "little") ^ mask).to_bytes(n, "little")
            head += key
        return head + payload

    def read_frame(self) -> tuple[int, bytes]:
        while len(self.buf) < 2:
            self._fill()
        opcode, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
        offset = 2
        if n == 126:
            while len(self.buf) < 4:
                self._fill()
            n, offset = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            while len(self.buf) < 10:
                self._fill()
            n, offset = struct.unpack("!Q", self.buf[2:10])[0], 10
        while len(self.buf) < offset + n:
            self._fill()
        payload, self.buf = self.buf[offset:offset + n], self.buf[offset + n:]
        return opcode, payload

    def read_close(self) -> tuple[int, str]:
        """Skip to the server's close frame; returns (code, reason)."""
        while True:
            opcode, payload = self.read_frame()
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    def at_eof(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, TimeoutError):
            return True

    def close(self) -> None:
        self.sock.close()
