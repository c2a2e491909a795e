"""A raw HTTP/2 client on the ``h2`` library over a real socket (blocking), for tests that need
frame-level control: WebSocket over HTTP/2 (RFC 8441) and the attacks the daemon must survive."""

from __future__ import annotations

import os
import socket
import ssl
import struct
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


class H2Client:
    """One HTTP/2 connection (cleartext prior knowledge, or TLS with ALPN ``h2`` when ``context``)."""

    def __init__(self, port: int, *, context: ssl.SSLContext | None = None, timeout: float = 10.0,
                 settings: dict[int, int] | None = None, auto_ack: bool = True) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if context is not None:
            raw = context.wrap_socket(raw, server_hostname="localhost")
            assert raw.selected_alpn_protocol() == "h2", raw.selected_alpn_protocol()
        self.sock = raw
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.events: list[Any] = []
        self.closed = False
        self.write_closed = False
        #: Acknowledge DATA as it arrives (a reader that keeps up); off to hold the windows shut.
        self.auto_ack = auto_ack
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.write_closed:
            try:
                self.sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                # The server closed (after its GOAWAY, say) while an acknowledgement of ours was
                # due: what it sent before closing is still there to read.
                self.write_closed = True

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, timeout: float | None = None) -> list[Any]:
        """Read once (up to ``timeout``); returns the new events ([] when the server closed)."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, socket.timeout):
            return []
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return []
        events = self.conn.receive_data(data)
        if self.auto_ack:
            for event in events:
                if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                    try:
                        self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    except h2.exceptions.StreamClosedError:
                        pass
        self.flush()
        self.events.extend(events)
        return events

    def until(self, predicate: Any, timeout: float = 10.0) -> Any:
        """Read until ``predicate(event)`` is true for an event; returns it."""
        deadline = time.monotonic() + timeout
        for event in self.events:
            if predicate(event):
                return event
        while time.monotonic() < deadline and not self.closed:
            for event in self.read(timeout=max(0.01, deadline - time.monotonic())):
                if predicate(event):
                    return event
        raise AssertionError(f"no matching event; got {self.events[-10:]!r} (closed={self.closed})")

    def request(self, path: str, method: str = "GET", body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None,
                end: bool = True) -> int:
        stream_id: int = self.conn.get_next_available_stream_id()
        fields = [(b":method", method.encode()), (b":scheme", b"http"), (b":authority", b"localhost"), (b":path", path.encode())]
        fields.extend(headers or [])
        self.conn.send_headers(stream_id, fields, end_stream=end and not body)
        if body:
            self.conn.send_data(stream_id, body, end_stream=end)
        self.flush()
        return stream_id

    def response(self, stream_id: int, timeout: float = 10.0) -> tuple[int, dict[bytes, bytes], bytes]:
        """Wait for a whole response: ``(status, headers, body)``."""
        self.until(lambda e: isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and e.stream_id == stream_id, timeout)
        status = 0
        headers: dict[bytes, bytes] = {}
        body = b""
        for event in self.events:
            if getattr(event, "stream_id", None) != stream_id:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                headers = dict(event.headers)
                status = int(headers[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
        return status, headers, body

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, dict[bytes, bytes], bytes]:
        return self.response(self.request(path), timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """A raw HTTP/2 frame (RFC 9113 4.1)."""
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream_id) + payload


def ws_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A masked client WebSocket frame (RFC 6455 5.2)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 65536:
        head = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def ws_parse(data: bytes) -> list[tuple[int, bytes]]:
    """Server frames (unmasked, whole) as ``[(first byte, payload)]``."""
    result = []
    pos = 0
    while pos + 2 <= len(data):
        first, second = data[pos], data[pos + 1]
        n = second & 0x7F
        pos += 2
        if n == 126:
            n = int.from_bytes(data[pos:pos + 2], "big")
            pos += 2
        elif n == 127:
            n = int.from_bytes(data[pos:pos + 8], "big")
            pos += 8
        result.append((first, data[pos:pos + n]))
        pos += n
    return result


def rss_kib(pid: int) -> int:
    """Resident memory of a process in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
