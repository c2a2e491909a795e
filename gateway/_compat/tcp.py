"""Twisted's file-descriptor transports, used below their public API.

Write-through: Twisted's TCP and UNIX transports buffer every ``write()`` and send it on the next
reactor iteration (an extra ``add_writer``/``remove_writer`` pair and loop pass per response under
the asyncio reactor). When nothing is buffered we send right away instead; measured, this doubles
the requests per second of a plain Twisted server on the asyncio reactor.

Internals of :class:`twisted.internet.abstract.FileDescriptor` / :class:`twisted.internet.tcp.Connection`
relied on (checked by ``tests/unit/compat/test_tcp.py``):

* ``_tempDataLen`` and ``dataBuffer``: both empty (0 / ``b""``) exactly when no output is queued;
* ``connected``, ``disconnecting``, ``_writeDisconnected``: the states in which ``write()`` sends;
* ``TLS``: true once ``startTLS()`` put TLS on the connection (bytes must then go through it);
* ``writeSomeData(data)``: sends what the socket takes now, returns the count (or an exception);
* ``bufferSize``: above this many buffered bytes a registered streaming producer is paused;
* ``producerPaused`` and ``startWriting()``: a transport whose streaming producer is marked paused
  calls its ``resumeProducing()`` once its buffer is empty and the socket writable.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

try:  # unix sockets are absent on some platforms
    from twisted.internet import unix

    #: Transports whose socket we may write to (or ``os.sendfile`` into) directly.
    DIRECT_TRANSPORTS: tuple[type[tcp.Connection], ...] = (tcp.Server, tcp.Client, unix.Server, unix.Client)
except ImportError:  # pragma: no cover
    DIRECT_TRANSPORTS = (tcp.Server, tcp.Client)

_DIRECT = DIRECT_TRANSPORTS

__all__ = [
    "DEFAULT_BUFFER",
    "DIRECT_TRANSPORTS",
    "notify_when_writable",
    "output_buffered",
    "set_write_high_water",
    "write_through",
]


def write_through(transport: Any, data: bytes) -> None:
    """Write ``data`` to ``transport``, sending it immediately when its buffer is empty.

    Falls back to ``transport.write`` for every transport that is not a plain TCP or UNIX
    connection (ours as a server, or a client's such as the Redis layer's): TLS from the start or
    after ``startTLS()``, tests' string transports; and whenever data is already queued, so
    ordering and Twisted's flow control are unchanged.
    """
    if (
        isinstance(transport, _DIRECT)
        and not getattr(transport, "TLS", False)  # after startTLS() bytes must go through TLS
        and not transport._tempDataLen
        and not transport.dataBuffer
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
    ):
        sent = transport.writeSomeData(data)
        if type(sent) is int:
            if sent == len(data):
                return
            data = data[sent:]
    transport.write(data)


def output_buffered(transport: Any) -> bool:
    """Whether a TCP or UNIX transport still holds output it has not sent (then
    ``loseConnection`` waits for the client to read it). Any other transport (TLS) is assumed
    to hold some."""
    if isinstance(transport, _DIRECT) and not getattr(transport, "TLS", False):
        return bool(transport.dataBuffer or transport._tempDataLen)
    return True


def notify_when_writable(transport: Any) -> None:
    """Have a TCP or UNIX transport call its registered streaming producer's ``resumeProducing()``
    once everything buffered has gone out and the socket can take more (for writers that bypass
    the buffer, such as ``os.sendfile``): the producer is marked paused and the transport
    watches for writability; Twisted resumes a paused producer when its buffer empties."""
    transport.producerPaused = True
    transport.startWriting()


#: Twisted's default ``bufferSize`` (also its read size).
DEFAULT_BUFFER = 64 * 1024


def set_write_high_water(transport: Any, size: int) -> None:
    """Make the transport pause its producer when more than ``size`` bytes are buffered.

    Twisted's file descriptors pause a registered streaming producer above ``bufferSize``
    (64 KiB by default; the same number is also their read size). Behind TLS the setting goes
    to the TCP connection underneath.
    """
    if size == DEFAULT_BUFFER:
        return
    target = transport
    while target is not None and not hasattr(target, "bufferSize"):
        target = getattr(target, "transport", None)
    if target is not None:
        target.bufferSize = size
