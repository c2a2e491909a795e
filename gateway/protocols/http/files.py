# -*- test-case-name: tests.integration.test_http_live -*-
"""``http.response.pathsend``: a file sent without reading it into Python memory.

On plain TCP and UNIX connections the kernel copies the file with ``os.sendfile``; on TLS
connections (where the kernel cannot encrypt) the file is read in pieces and each piece is
written once the client has taken the previous ones, so memory stays bounded either way.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from gateway._compat.tcp import DIRECT_TRANSPORTS, notify_when_writable, output_buffered
from gateway.asgi.instance import ClientDisconnected
from gateway.protocols.http.core import HTTPConnection

_PIECE = 64 * 1024


class Exchange(Protocol):
    """The request a file answers (the adapter's ``Exchange``)."""

    bytes_sent: int
    gone: bool


class Connection(Protocol):
    """The connection it goes out on (the adapter's ``HTTPProtocol``)."""

    conn: HTTPConnection
    transport: Any
    writes_paused: bool

    def flush(self) -> None: ...

    async def wait_for_drain(self) -> None: ...


async def send_file(protocol: Connection, exchange: Exchange, path: str) -> None:
    """Send the file at ``path`` as the rest of ``exchange``'s response body."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        conn = protocol.conn
        conn.send_chunk_header(size)
        protocol.flush()
        if not conn.suppresses_body and size:
            exchange.bytes_sent += size
            transport = protocol.transport
            if isinstance(transport, DIRECT_TRANSPORTS) and hasattr(os, "sendfile"):
                await _sendfile(protocol, exchange, fd, size)
            else:
                await _copy(protocol, exchange, fd, size)
        conn.send_chunk_footer(size)
        protocol.flush()
    finally:
        os.close(fd)


async def _wait_writable(protocol: Connection, exchange: Exchange) -> None:
    """Wait until Twisted's buffer is empty and the socket can take more.

    Marks us as a paused producer and asks the transport to watch for writability: Twisted
    resumes its paused producer once everything buffered has gone out.
    """
    transport = protocol.transport
    protocol.writes_paused = True
    notify_when_writable(transport)
    await protocol.wait_for_drain()
    if exchange.gone:
        raise ClientDisconnected("the client disconnected")


async def _sendfile(protocol: Connection, exchange: Exchange, fd: int, size: int) -> None:
    transport = protocol.transport
    offset = 0
    while offset < size:
        if exchange.gone:
            raise ClientDisconnected("the client disconnected")
        if output_buffered(transport):
            await _wait_writable(protocol, exchange)
            continue
        try:
            sent = os.sendfile(transport.fileno(), fd, offset, size - offset)
        except BlockingIOError:
            sent = -1
        except OSError as exc:
            raise ClientDisconnected(f"sending the file failed: {exc}") from None
        if sent == 0:
            raise OSError(f"the file shrank while it was being sent ({offset} of {size} bytes)")
        if sent < 0:
            await _wait_writable(protocol, exchange)
        else:
            offset += sent


async def _copy(protocol: Connection, exchange: Exchange, fd: int, size: int) -> None:
    remaining = size
    while remaining:
        if exchange.gone:
            raise ClientDisconnected("the client disconnected")
        piece = os.read(fd, min(_PIECE, remaining))
        if not piece:
            raise OSError(f"the file shrank while it was being sent ({size - remaining} of {size} bytes)")
        remaining -= len(piece)
        protocol.transport.write(piece)
        if protocol.writes_paused:
            await protocol.wait_for_drain()
