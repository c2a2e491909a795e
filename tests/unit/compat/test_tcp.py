"""``gateway._compat.tcp``: the Twisted transport internals it relies on, each checked on a real
TCP connection (a loopback socket pair under a :class:`MemoryReactor`, so nothing runs until the
test calls ``doWrite`` itself). If a Twisted release renames or changes one of them, the test
naming it fails."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet import tcp
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from zope.interface import implementer

from gateway._compat.tcp import (
    DEFAULT_BUFFER,
    DIRECT_TRANSPORTS,
    notify_when_writable,
    output_buffered,
    set_write_high_water,
    write_through,
)


class Connection:
    """A Twisted ``tcp.Server`` over an accepted loopback socket, and the client's socket."""

    def __init__(self) -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        self.peer = socket.create_connection(listener.getsockname())
        accepted, address = listener.accept()
        listener.close()
        self.peer.setblocking(False)
        self.reactor = MemoryReactor()
        self.transport = tcp.Server(accepted, Protocol(), address, None, 1, self.reactor)  # type: ignore[arg-type]

    def received(self) -> bytes:
        """Everything the peer can read right now."""
        data = b""
        while True:
            try:
                chunk = self.peer.recv(1 << 20)
            except BlockingIOError:
                return data
            if not chunk:
                return data
            data += chunk

    def writing(self) -> bool:
        return self.transport in self.reactor.getWriters()

    def close(self) -> None:
        self.transport.socket.close()
        self.peer.close()


@pytest.fixture
def conn() -> Iterator[Connection]:
    connection = Connection()
    yield connection
    connection.close()


@implementer(IPushProducer)
class Producer:
    def __init__(self) -> None:
        self.events: list[str] = []

    def pauseProducing(self) -> None:
        self.events.append("pause")

    def resumeProducing(self) -> None:
        self.events.append("resume")

    def stopProducing(self) -> None:
        self.events.append("stop")


def test_the_direct_transports_are_twisteds_tcp_and_unix_connections() -> None:
    from twisted.internet import unix

    assert set(DIRECT_TRANSPORTS) == {tcp.Server, tcp.Client, unix.Server, unix.Client}
    assert all(issubclass(kind, tcp.Connection) for kind in DIRECT_TRANSPORTS)


def test_an_idle_connection_has_empty_buffers_and_writes_nothing_twice(conn: Connection) -> None:
    transport = conn.transport
    assert transport._tempDataLen == 0 and transport.dataBuffer == b""
    assert transport.connected and not transport.disconnecting and not transport._writeDisconnected
    assert not transport.TLS


def test_write_some_data_sends_at_once_and_returns_the_count(conn: Connection) -> None:
    assert conn.transport.writeSomeData(b"hello") == 5
    assert conn.received() == b"hello"


def test_write_queues_in_temp_data_until_do_write_and_empties_both_buffers(conn: Connection) -> None:
    transport = conn.transport
    transport.write(b"abc")
    assert transport._tempDataLen == 3 and conn.writing()
    assert conn.received() == b""
    transport.doWrite()
    assert conn.received() == b"abc"
    assert transport._tempDataLen == 0 and transport.dataBuffer == b"" and not conn.writing()


def test_a_partial_send_leaves_the_rest_in_data_buffer(conn: Connection) -> None:
    transport = conn.transport
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data = bytes(range(256)) * 8192  # 2 MiB: more than the socket takes at once
    transport.write(data)
    transport.doWrite()
    assert transport.dataBuffer and transport._tempDataLen == 0
    got = b""
    while transport.dataBuffer:
        got += conn.received()
        transport.doWrite()
    got += conn.received()
    assert got == data


def test_write_through_sends_at_once_when_nothing_is_queued(conn: Connection) -> None:
    write_through(conn.transport, b"now")
    assert conn.received() == b"now" and not conn.writing()


def test_write_through_queues_behind_queued_data(conn: Connection) -> None:
    conn.transport.write(b"first ")
    write_through(conn.transport, b"second")
    assert conn.received() == b""
    conn.transport.doWrite()
    assert conn.received() == b"first second"


def test_write_through_queues_what_the_socket_did_not_take(conn: Connection) -> None:
    transport = conn.transport
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data = b"y" * (2 << 20)
    write_through(transport, data)
    assert 0 < transport._tempDataLen < len(data) and conn.writing()
    got = b""
    while transport._tempDataLen or transport.dataBuffer:
        got += conn.received()
        transport.doWrite()
    assert got + conn.received() == data


def test_write_through_leaves_a_closing_connection_to_twisted(conn: Connection) -> None:
    transport = conn.transport
    transport.loseConnection()
    assert transport.disconnecting
    write_through(transport, b"late")
    assert conn.received() == b""


def test_a_closed_write_side_sets_write_disconnected(conn: Connection) -> None:
    transport = conn.transport
    transport.loseWriteConnection()
    transport.doWrite()
    assert transport._writeDisconnected
    assert conn.received() == b""  # the peer sees the end of the stream
    write_through(transport, b"late")
    assert conn.peer.recv(10) == b""


def test_start_tls_sets_the_tls_flag_and_write_through_then_goes_through_tls(conn: Connection) -> None:
    from twisted.internet import ssl

    transport = conn.transport
    transport.startTLS(ssl.CertificateOptions())
    assert transport.TLS
    write_through(transport, b"secret")
    transport.doWrite()
    # The TLS layer holds it until a handshake that never comes: nothing goes out in plain text.
    assert conn.received() == b"" and transport.dataBuffer == b"" and transport._tempDataLen == 0


def test_buffer_size_is_the_pause_threshold_of_a_streaming_producer(conn: Connection) -> None:
    transport = conn.transport
    assert transport.bufferSize == DEFAULT_BUFFER
    producer = Producer()
    transport.registerProducer(producer, True)
    set_write_high_water(transport, 10)
    assert transport.bufferSize == 10
    transport.write(b"x" * 10)
    assert producer.events == []
    transport.write(b"x")
    assert producer.events == ["pause"] and transport.producerPaused


def test_set_write_high_water_reaches_the_tcp_transport_under_tls() -> None:
    inner = SimpleNamespace(bufferSize=DEFAULT_BUFFER)
    tls = SimpleNamespace(transport=inner)
    set_write_high_water(tls, 4096)
    assert inner.bufferSize == 4096


def test_notify_when_writable_resumes_the_producer_once_the_buffer_is_empty(conn: Connection) -> None:
    transport = conn.transport
    producer = Producer()
    transport.registerProducer(producer, True)
    transport.write(b"pending")
    notify_when_writable(transport)
    assert conn.writing() and transport.producerPaused
    transport.doWrite()
    assert producer.events == ["resume"] and not transport.producerPaused and not conn.writing()
    assert conn.received() == b"pending"


def test_output_buffered_follows_the_buffers(conn: Connection) -> None:
    transport = conn.transport
    assert not output_buffered(transport)
    transport.write(b"data")
    assert output_buffered(transport)
    transport.doWrite()
    assert not output_buffered(transport)


def test_other_transports_count_as_buffered_and_are_written_normally() -> None:
    transport: Any = StringTransport()
    assert output_buffered(transport)
    write_through(transport, b"plain")
    assert transport.value() == b"plain"
