# -*- test-case-name: tests.unit.http2.test_core -*-
"""The server side of one HTTP/2 connection, sans-IO: ``h2``'s state machine behind our limits.

``h2`` (python-hyper) parses and serialises frames, keeps the streams' states, HPACK and the
flow-control windows. It does not defend against a client that is valid frame by frame but
abusive in bulk, so every byte passes a :class:`FrameGuard` first, which reads only the 9-byte
frame headers and charges budgets that refill with time (the clock is an argument):

* new streams per second (rapid reset opens and cancels streams as fast as it can);
* *control frames* per second: SETTINGS, PING, PRIORITY, RST_STREAM, empty DATA or CONTINUATION
  frames, unknown frame types, all of which cost work and carry no request (the SETTINGS, PING and
  empty-frame floods, and the RST_STREAM half of rapid reset);
* the size of one header block as sent, HEADERS plus its CONTINUATION frames (the CONTINUATION
  flood), on top of ``h2``'s limit on the decoded header list (the HPACK bomb).

What ``h2`` writes in answer to what it received (SETTINGS and PING acknowledgements, and the
RST_STREAM frames a client provokes with frames that are errors on one stream: "MadeYouReset")
is read back too, and each provoked reset is charged as a control frame.

Breaking a limit is a :class:`~gateway.protocols.errors.RemoteProtocolError` whose ``hint`` is the
HTTP/2 error code; a GOAWAY with that code is then queued, and the connection must close once it
is written. The per-stream limit the adapter keeps (streams whose application still runs, not
only those ``h2`` thinks open) is the other half of the MadeYouReset defence.
"""

from __future__ import annotations

from dataclasses import dataclass

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import Event
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings

from gateway._compat.h2 import install, release_connection, speed_up
from gateway.protocols.errors import RemoteProtocolError

__all__ = ["PREFACE", "Budget", "FrameGuard", "H2Core", "H2Limits", "is_preface"]

#: RFC 9113 3.4: what a client sends first.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 6) and flags.
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4

ENHANCE_YOUR_CALM = ErrorCodes.ENHANCE_YOUR_CALM
PROTOCOL_ERROR = ErrorCodes.PROTOCOL_ERROR
FRAME_SIZE_ERROR = ErrorCodes.FRAME_SIZE_ERROR

#: The initial size of every flow-control window (RFC 9113 6.9.2).
DEFAULT_WINDOW = 65535


def is_preface(data: bytes) -> bool:
    """Whether a connection's first bytes are (the start of) the HTTP/2 client preface."""
    n = min(len(data), len(PREFACE))
    return n > 0 and data[:n] == PREFACE[:n]


@dataclass(frozen=True, slots=True)
class H2Limits:
    """The limits of one listener's HTTP/2 connections (see :class:`~gateway.protocols.http2.config.Http2Config`)."""

    max_concurrent_streams: int = 100
    max_header_list_size: int = 64 * 1024
    max_frame_size: int = 16 * 1024
    stream_window: int = 256 * 1024
    connection_window: int = 1024 * 1024
    max_streams_per_second: int = 5000
    max_control_frames_per_second: int = 200
    #: Largest request body (the HTTP listener's ``limits.max_body_size``); larger gets 413.
    max_body_size: int = 10 * 1024 * 1024
    #: Whether extended CONNECT (RFC 8441, WebSocket over HTTP/2) is offered.
    connect_protocol: bool = True

    @property
    def max_header_block(self) -> int:
        """Largest header block as sent (HEADERS and CONTINUATION payloads): twice the decoded
        limit, the worst a Huffman encoding can grow a field to."""
        return 2 * self.max_header_list_size


class Budget:
    """A token bucket: ``rate`` tokens a second, holding at most ``burst``; the clock is given."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float = 0.0) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float, amount: float = 1.0) -> bool:
        """Spend ``amount`` tokens at time ``now``; False (spending nothing) when there are too few."""
        tokens = self.tokens
        if now > self.stamp:
            tokens = min(self.burst, tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if tokens < amount:
            self.tokens = tokens
            return False
        self.tokens = tokens - amount
        return True


class FrameGuard:
    """Reads the frame headers of a client's byte stream and charges the budgets (see the module).

    Only headers are looked at (9 bytes a frame, carried across reads); payloads are skipped.
    The connection preface is skipped first (``h2`` checks it).
    """

    __slots__ = (
        "control", "streams", "max_block", "max_frame", "_skip", "_partial", "_in_block", "_block",
        "_highest", "control_frames", "new_streams",
    )

    def __init__(self, limits: H2Limits, now: float, preface: bool = True) -> None:
        self.streams = Budget(limits.max_streams_per_second, limits.max_streams_per_second, now)
        self.control = Budget(limits.max_control_frames_per_second, limits.max_control_frames_per_second, now)
        self.max_block = limits.max_header_block
        self.max_frame = limits.max_frame_size
        self._skip = len(PREFACE) if preface else 0
        self._partial = b""
        self._in_block = False
        self._block = 0
        self._highest = 0
        #: Counters (for tests and the status of a connection).
        self.control_frames = 0
        self.new_streams = 0

    def scan(self, data: bytes, now: float) -> None:
        """Charge the frames whose headers ``data`` completes.

        Raises:
            RemoteProtocolError: a budget or a size limit is broken (``hint``: the error code).
        """
        n = len(data)
        pos = 0
        skip = self._skip
        if skip:
            pos = skip if skip < n else n
            self._skip = skip - pos
        while pos < n:
            partial = self._partial
            if partial or n - pos < 9:
                need = 9 - len(partial)
                partial += data[pos:pos + need]
                pos += need
                if len(partial) < 9:
                    self._partial = partial
                    return
                self._partial = b""
                header = partial
                at = 0
            else:
                header = data
                at = pos
                pos += 9
            length = (header[at] << 16) | (header[at + 1] << 8) | header[at + 2]
            self._frame(header[at + 3], header[at + 4], int.from_bytes(header[at + 5:at + 9], "big") & 0x7FFFFFFF,
                        length, now)
            if pos + length <= n:
                pos += length
            else:
                self._skip = pos + length - n
                return

    def _frame(self, kind: int, flags: int, stream_id: int, length: int, now: float) -> None:
        if length > self.max_frame:
            # h2 would say so too, but only once the whole frame is buffered.
            raise RemoteProtocolError(f"frame of {length} bytes is larger than SETTINGS_MAX_FRAME_SIZE", hint=FRAME_SIZE_ERROR)
        if self._in_block:
            if kind != CONTINUATION:
                return  # h2 fails the connection: a header block must not be interrupted
            self._block += length
            if self._block > self.max_block:
                raise RemoteProtocolError(
                    f"header block larger than {self.max_block} bytes (CONTINUATION flood)", hint=ENHANCE_YOUR_CALM
                )
            if flags & END_HEADERS:
                self._in_block = False
            elif not length:
                self.charge(now, "empty CONTINUATION frames")
            return
        if kind == DATA:
            if not length and not flags & END_STREAM:
                self.charge(now, "empty DATA frames")
        elif kind == HEADERS:
            if stream_id > self._highest and stream_id & 1:
                self._highest = stream_id
                self.new_streams += 1
                if not self.streams.take(now):
                    raise RemoteProtocolError("too many new streams per second", hint=ENHANCE_YOUR_CALM)
            if length > self.max_block:
                raise RemoteProtocolError(f"header block larger than {self.max_block} bytes", hint=ENHANCE_YOUR_CALM)
            if not flags & END_HEADERS:
                self._in_block = True
                self._block = length
        elif kind == WINDOW_UPDATE or kind == GOAWAY:
            pass
        elif kind == SETTINGS or kind == PING:
            if not flags & ACK:
                self.charge(now, "SETTINGS or PING frames")
        elif kind == CONTINUATION:
            pass  # outside a header block: h2 fails the connection
        else:  # PRIORITY, RST_STREAM, PUSH_PROMISE, extension frames
            self.charge(now, "control frames" if kind <= CONTINUATION else "unknown frames")

    def charge(self, now: float, what: str) -> None:
        """Charge one control frame (``what``: for the error)."""
        self.control_frames += 1
        if not self.control.take(now):
            raise RemoteProtocolError(f"too many {what} per second", hint=ENHANCE_YOUR_CALM)

    def provoked(self, output: bytes, now: float) -> int:
        """Charge the RST_STREAM frames in what ``h2`` wrote in answer to a client's frames (the
        resets the client provoked); returns how many there were.

        Raises:
            RemoteProtocolError: the control-frame budget is spent.
        """
        resets = 0
        pos = 0
        n = len(output)
        while n - pos >= 9:
            length = (output[pos] << 16) | (output[pos + 1] << 8) | output[pos + 2]
            if output[pos + 3] == RST_STREAM:
                resets += 1
                self.charge(now, "frames that make the server reset a stream")
            pos += 9 + length
        return resets


def _settings(limits: H2Limits) -> dict[SettingCodes, int]:
    return {
        SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
        SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
        SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
        SettingCodes.INITIAL_WINDOW_SIZE: limits.stream_window,
        SettingCodes.ENABLE_PUSH: 0,
        SettingCodes.ENABLE_CONNECT_PROTOCOL: 1 if limits.connect_protocol else 0,
    }


#: h2's configuration for servers: inbound headers are validated (RFC 9113 8.2, 8.3); split
#: cookies are joined by the ASGI mapping (``read_request``), which walks the fields anyway;
#: outbound fields were checked by the ASGI layer (``response_fields``), so h2 does not check them again.
_CONFIG = H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_inbound_headers=True,
    normalize_inbound_headers=False,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)


install()


class H2Core:
    """One server connection: ``h2``'s :class:`~h2.connection.H2Connection` (``h2``) behind a
    :class:`FrameGuard`. The adapter sends through ``h2`` directly and writes :meth:`data_to_send`.

    Args:
        limits: this listener's limits.
        now: the clock's time (the budgets start full).
        upgrade_settings: for ``Upgrade: h2c``, the client's ``HTTP2-Settings`` header value;
            stream 1 is then the upgraded request, and no preface precedes the client's frames
            except the one it still sends (RFC 9113 3.4 asks for it after an upgrade too).
    """

    __slots__ = ("guard", "h2", "limits", "_out", "provoked_resets")

    def __init__(self, limits: H2Limits, now: float, upgrade_settings: bytes | None = None) -> None:
        self.limits = limits
        self.guard = FrameGuard(limits, now)
        h2 = self.h2 = H2Connection(_CONFIG)
        speed_up(h2)
        h2.local_settings = Settings(client=False, initial_values=_settings(limits))
        # h2 starts the decoder at 64 KiB; the HPACK bomb stops at our limit instead.
        h2.max_inbound_frame_size = limits.max_frame_size
        if upgrade_settings is None:
            h2.initiate_connection()
        else:
            h2.initiate_upgrade_connection(upgrade_settings)
        h2.decoder.max_header_list_size = limits.max_header_list_size
        if limits.connection_window > DEFAULT_WINDOW:
            h2.increment_flow_control_window(limits.connection_window - DEFAULT_WINDOW)
        self._out: list[bytes] = []
        #: RST_STREAM frames the client provoked so far.
        self.provoked_resets = 0

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the client; returns h2's events.

        Raises:
            RemoteProtocolError: the client broke the protocol or a limit; ``hint`` is the HTTP/2
                error code, and a GOAWAY saying so is queued (write :meth:`data_to_send`, then close).
        """
        h2 = self.h2
        try:
            self.guard.scan(data, now)
        except RemoteProtocolError as exc:
            self.close(exc.hint)
            raise
        try:
            events = h2.receive_data(data)
        except ProtocolError as exc:
            # h2 queued the GOAWAY already.
            code = getattr(exc, "error_code", PROTOCOL_ERROR)
            raise RemoteProtocolError(f"HTTP/2 protocol error: {exc}", hint=code) from None
        answer = h2.data_to_send()
        if answer:
            self._out.append(answer)
            try:
                self.provoked_resets += self.guard.provoked(answer, now)
            except RemoteProtocolError as exc:
                self.close(exc.hint)
                raise
        return events

    def close(self, code: int = 0) -> None:
        """Queue a GOAWAY with ``code`` naming the last stream the client opened (nothing after it
        will be processed)."""
        h2 = self.h2
        try:
            h2.close_connection(error_code=code, last_stream_id=h2.highest_inbound_stream_id)
        except ProtocolError:  # already closed
            pass

    def release(self) -> None:
        """The connection is over: let ``h2``'s state go with its last reference (no garbage cycle)."""
        release_connection(self.h2)

    def queue(self, data: bytes) -> None:
        """Queue bytes built elsewhere (a GOAWAY that leaves h2's state open, for a drain)."""
        self._out.append(self.h2.data_to_send())
        self._out.append(data)

    def data_to_send(self) -> bytes:
        """Return (and forget) the bytes queued for the client."""
        data = self.h2.data_to_send()
        out = self._out
        if out:
            out.append(data)
            data = b"".join(out)
            self._out = []
        return data
