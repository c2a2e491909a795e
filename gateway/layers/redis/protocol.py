"""The wire protocol: txredisapi's Redis protocol with a fast path for the layer's commands.

txredisapi's own parser hands every bulk string after the first to the next reactor turn
(``setLineMode(extra)`` pauses and re-schedules the rest of the buffer), so a reply of N elements
takes N loop passes; and each command costs several Deferreds and a Twisted write (sent on the
next loop pass, after an ``add_writer``/``remove_writer`` pair). :class:`LayerProtocol` keeps
txredisapi's connection logic (AUTH with an ACL user and SELECT on connect, ``execute_command``
for set-up commands, failing pending replies on connection loss) and adds:

* one-pass reply parsing: ``hiredis`` when it is installed, else :class:`RespParser` (RESP2, pure
  Python, linear in the reply size);
* :meth:`LayerProtocol.call`: encode a command, queue it, and get an ``asyncio.Future`` for its
  reply. Commands queued during one loop pass are written with one ``send()`` at the end of it
  (pipelining without waiting for Twisted's writer), or at once when nothing else is due in this
  pass (a lone command then costs no extra loop pass); replies resolve futures in order.
* a reply deadline: a connection whose oldest pending reply is late is aborted (then the layer
  reconnects), which is how a dead peer is noticed even while a blocking read waits.

Importing this module imports txredisapi, which imports the global reactor: only import it once
the reactor is installed (the layer does so at first use).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import txredisapi

from gateway._compat.asyncio_loop import loop_is_idle
from gateway._compat.tcp import write_through

_hiredis: Any
try:  # a C parser (a dependency; the pure-Python parser below is the fallback)
    import hiredis as _hiredis
except ImportError:  # pragma: no cover - depends on the environment
    _hiredis = None

__all__ = ["INCOMPLETE", "Callback", "LayerProtocol", "RespParser"]

ResponseError = txredisapi.ResponseError
INCOMPLETE: Any = object()


class RespParser:
    """An incremental RESP2 reply parser: ``feed(bytes)``, then ``gets()`` until :data:`INCOMPLETE`.

    Bulk strings are ``bytes``, integers ``int``, simple strings ``str``, errors
    ``txredisapi.ResponseError`` instances (returned, not raised), nil ``None``.
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos:
            self._buf = self._buf[self._pos:] + data
            self._pos = 0
        else:
            self._buf += data

    def gets(self) -> Any:
        """The next complete reply, or :data:`INCOMPLETE`."""
        if self._pos >= len(self._buf):
            return INCOMPLETE
        try:
            value, pos = self._parse(self._pos)
        except IndexError:  # ran off the end: wait for more data
            return INCOMPLETE
        if value is INCOMPLETE:
            return INCOMPLETE
        self._pos = pos
        return value

    def _parse(self, pos: int) -> tuple[Any, int]:
        buf = self._buf
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return INCOMPLETE, pos
        kind = buf[pos]
        if kind == 36:  # $ bulk
            length = int(buf[pos + 1:end])
            if length < 0:
                return None, end + 2
            start = end + 2
            stop = start + length
            if stop + 2 > len(buf):
                return INCOMPLETE, pos
            return buf[start:stop], stop + 2
        if kind == 42:  # * array
            count = int(buf[pos + 1:end])
            if count < 0:
                return None, end + 2
            items: list[Any] = []
            append = items.append
            pos = end + 2
            size = len(buf)
            find = buf.find
            parse = self._parse
            for _ in range(count):
                if pos < size and buf[pos] == 36:  # a bulk string, inline (the common element)
                    end = find(b"\r\n", pos)
                    if end < 0:
                        return INCOMPLETE, pos
                    length = int(buf[pos + 1:end])
                    if length < 0:
                        append(None)
                        pos = end + 2
                        continue
                    start = end + 2
                    pos = start + length + 2
                    if pos > size:
                        return INCOMPLETE, pos
                    append(buf[start:pos - 2])
                    continue
                item, pos = parse(pos)
                if item is INCOMPLETE:
                    return INCOMPLETE, pos
                append(item)
            return items, pos
        if kind == 58:  # : integer
            return int(buf[pos + 1:end]), end + 2
        if kind == 43:  # + status
            return buf[pos + 1:end].decode("utf-8", "replace"), end + 2
        if kind == 45:  # - error
            text = buf[pos + 1:end].decode("utf-8", "replace")
            return ResponseError(text[4:] if text.startswith("ERR ") else text), end + 2
        raise txredisapi.InvalidResponse(f"unexpected reply type byte {kind!r}")


#: Encoded bulk strings of the short str arguments seen (command names, script SHAs, options).
_BULK: dict[str, bytes] = {}


def _bulk_str(arg: str) -> bytes:
    data = arg.encode("utf-8")
    encoded = b"$%d\r\n%b\r\n" % (len(data), data)
    if len(data) <= 64 and len(_BULK) < 4096:
        _BULK[arg] = encoded
    return encoded


def encode_command(args: tuple[Any, ...]) -> bytes:
    """A RESP array of bulk strings (bytes as they are, str as UTF-8, numbers in full precision)."""
    parts = [b"*%d\r\n" % len(args)]
    append = parts.append
    bulk = _BULK
    for arg in args:
        kind = type(arg)
        if kind is bytes:
            append(b"$%d\r\n%b\r\n" % (len(arg), arg))
        elif kind is str:
            append(bulk.get(arg) or _bulk_str(arg))
        else:
            if kind is int:
                data = b"%d" % arg
            elif kind is float:
                data = repr(arg).encode()
            else:
                data = str(arg).encode("utf-8")
            append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


class Callback:
    """A reply sink that calls ``fn(reply)`` as soon as the reply is parsed (``fn`` gets a Redis
    error reply or a lost connection as an exception instance): no future, no task wake-up."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Any], None]) -> None:
        self.fn = fn

    def done(self) -> bool:
        return False

    def set_result(self, value: Any) -> None:
        self.fn(value)

    def set_exception(self, error: BaseException) -> None:
        self.fn(error)


class LayerProtocol(txredisapi.BaseRedisProtocol):
    """txredisapi's protocol, bytes in and out (no charset, no number conversion), fast parsing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("charset", None)
        kwargs.setdefault("convertNumbers", False)
        self.loop: asyncio.AbstractEventLoop = kwargs.pop("loop")
        super().__init__(*args, **kwargs)
        # One entry per command written, in order: a Future (call()), a Callback (call_back()) or
        # None (txredisapi's queue), with the reply's deadline.
        self._sinks: deque[tuple[asyncio.Future[Any] | Callback, float] | None] = deque()
        self._out: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._deadline_handle: asyncio.TimerHandle | None = None
        if _hiredis is not None:
            self._parser: Any = _hiredis.Reader(protocolError=txredisapi.InvalidData, replyError=ResponseError)
            self._incomplete: Any = False
        else:
            self._parser = RespParser()
            self._incomplete = INCOMPLETE

    #: Why the connection closed (a Failure), for error messages (TLS verification, resets).
    lost_reason: Any = None

    def connectionMade(self) -> Any:
        # Pipelined small commands must not wait for Nagle's algorithm (40 ms with delayed ACKs).
        transport = getattr(self.transport, "transport", self.transport)  # under TLS: the TCP one
        set_no_delay = getattr(transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError:  # pragma: no cover - not a TCP socket
                pass
        return super().connectionMade()

    #: Called (with this protocol) as soon as the connection is lost.
    on_lost: Any = None

    def connectionLost(self, why: Any) -> None:
        self.lost_reason = why
        if self.on_lost is not None:
            self.on_lost(self)
        self._out.clear()
        for handle in (self._flush_handle, self._deadline_handle):
            if handle is not None:
                handle.cancel()
        sinks, self._sinks = self._sinks, deque()
        error = txredisapi.ConnectionError("Lost connection")
        for sink in sinks:
            if sink is not None and not sink[0].done():
                sink[0].set_exception(error)
        super().connectionLost(why)

    # -- the fast path ------------------------------------------------------------------------

    def call(self, args: tuple[Any, ...], timeout: float) -> asyncio.Future[Any]:
        """Queue one command; its future gets the reply (a Redis error reply as an exception).

        Raises:
            txredisapi.ConnectionError: the connection is closed.
        """
        if not self.connected:
            raise txredisapi.ConnectionError("Not connected")
        loop = self.loop
        future = loop.create_future()
        self._out.append(encode_command(args))
        self._sinks.append((future, loop.time() + timeout))
        if self._flush_handle is None:
            if loop_is_idle(loop):  # nothing else runs before the loop waits: write now
                self._flush()
            else:
                self._flush_handle = loop.call_soon(self._flush)
        if self._deadline_handle is None:
            self._deadline_handle = self.loop.call_later(timeout, self._check_deadline)
        return future

    def call_back(self, args: tuple[Any, ...], timeout: float, fn: Callable[[Any], None]) -> None:
        """Queue one command; ``fn(reply)`` is called from :meth:`dataReceived` with its reply.

        Raises:
            txredisapi.ConnectionError: the connection is closed.
        """
        if not self.connected:
            raise txredisapi.ConnectionError("Not connected")
        self._out.append(encode_command(args))
        self._sinks.append((Callback(fn), self.loop.time() + timeout))
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)
        if self._deadline_handle is None:
            self._deadline_handle = self.loop.call_later(timeout, self._check_deadline)

    def _flush(self) -> None:
        self._flush_handle = None
        if not self._out:
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        write_through(self.transport, data)

    def _check_deadline(self) -> None:
        self._deadline_handle = None
        now = self.loop.time()
        for sink in self._sinks:
            if sink is None:
                continue
            if sink[1] <= now:
                if self.transport is not None:
                    self.transport.abortConnection()
                return
            self._deadline_handle = self.loop.call_later(sink[1] - now, self._check_deadline)
            return

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """txredisapi's command path (set-up commands); ordered with :meth:`call`."""
        self._flush()
        self._sinks.append(None)
        return super().execute_command(*args, **kwargs)

    def replyReceived(self, reply: Any) -> None:
        sink = self._sinks.popleft() if self._sinks else None
        if sink is None:
            super().replyReceived(reply)
            return
        future = sink[0]
        if not future.done():
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def dataReceived(self, data: bytes, unpause: bool = False) -> None:
        parser = self._parser
        incomplete = self._incomplete
        try:
            parser.feed(data)
            reply = parser.gets()
            while reply is not incomplete:
                self.replyReceived(reply)
                reply = parser.gets()
        except Exception as exc:  # a protocol error: this connection is unusable
            self.replyReceived(txredisapi.InvalidResponse(f"cannot parse a reply from Redis: {exc}"))
            if self.transport is not None:
                self.transport.abortConnection()
