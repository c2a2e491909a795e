"""The sans-IO HTTP/2 core: the frame guard's budgets and limits around h2."""

from __future__ import annotations

import struct

import h2.config
import h2.connection
import h2.events
import pytest
from hypothesis import given, strategies as st

from gateway.protocols.errors import RemoteProtocolError
from gateway.protocols.http2.core import PREFACE, Budget, FrameGuard, H2Core, H2Limits, is_preface
from tests.strategies.http import splits

ENHANCE_YOUR_CALM = 0xB


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream_id) + payload


frames = st.one_of(
    st.builds(lambda n, s: frame(0x0, 0x1 if n else 0, s, b"d" * n), st.integers(0, 40), st.integers(1, 9)),  # DATA
    st.builds(lambda s: frame(0x1, 0x4, s, b"h"), st.integers(1, 60)),  # HEADERS
    st.just(frame(0x6, 0, 0, b"12345678")),  # PING
    st.just(frame(0x6, 0x1, 0, b"12345678")),  # PING ACK
    st.just(frame(0x4, 0, 0)),  # SETTINGS
    st.just(frame(0x8, 0, 0, b"\x00\x00\x00\x01")),  # WINDOW_UPDATE
    st.builds(lambda k: frame(k, 0, 1, b"x"), st.integers(10, 255)),  # unknown types
)


def charges(chunks: list[bytes], limits: H2Limits) -> tuple[int, int, str | None]:
    guard = FrameGuard(limits, 0.0)
    error = None
    try:
        for chunk in chunks:
            guard.scan(chunk, 0.0)
    except RemoteProtocolError as exc:
        error = exc.message
    return guard.control_frames, guard.new_streams, error


@given(st.lists(frames, max_size=30), st.data())
def test_any_chunking_charges_the_same(stream: list[bytes], data: st.DataObject) -> None:
    wire = PREFACE + b"".join(stream)
    limits = H2Limits(max_control_frames_per_second=8, max_streams_per_second=5)
    assert charges([wire], limits) == charges(data.draw(splits(wire)), limits)


@given(st.lists(frames, max_size=30))
def test_budgets_hold_exactly(stream: list[bytes]) -> None:
    limits = H2Limits(max_control_frames_per_second=8, max_streams_per_second=5)
    control, streams, error = charges([PREFACE + b"".join(stream)], limits)
    assert control <= 9 and streams <= 6
    assert (error is not None) == (control == 9 or streams == 6)


def test_budget_refills_with_time() -> None:
    budget = Budget(rate=10, burst=10, now=0.0)
    assert all(budget.take(0.0) for _ in range(10))
    assert not budget.take(0.0)
    assert budget.take(0.1)  # one token back after a tenth of a second
    assert not budget.take(0.1)
    assert all(budget.take(100.0) for _ in range(10))  # never more than the burst


def test_continuation_flood_is_cut_at_the_header_block_limit() -> None:
    guard = FrameGuard(H2Limits(max_header_list_size=4096), 0.0)
    guard.scan(PREFACE + frame(0x1, 0, 1, b"h" * 1000), 0.0)
    guard.scan(frame(0x9, 0, 1, b"c" * 7000), 0.0)  # 8000 <= 2 * 4096
    with pytest.raises(RemoteProtocolError, match="CONTINUATION flood") as info:
        guard.scan(frame(0x9, 0, 1, b"c" * 1000), 0.0)
    assert info.value.hint == ENHANCE_YOUR_CALM


def test_empty_continuation_frames_are_control_frames() -> None:
    guard = FrameGuard(H2Limits(max_control_frames_per_second=3), 0.0)
    guard.scan(PREFACE + frame(0x1, 0, 1, b"h"), 0.0)
    with pytest.raises(RemoteProtocolError, match="empty CONTINUATION"):
        guard.scan(frame(0x9, 0, 1) * 4, 0.0)


def test_oversized_frames_are_refused_at_their_header() -> None:
    guard = FrameGuard(H2Limits(), 0.0)
    with pytest.raises(RemoteProtocolError) as info:
        guard.scan(PREFACE + struct.pack(">I", 1 << 20)[1:] + b"\x00\x00\x00\x00\x00\x01", 0.0)
    assert info.value.hint == 0x6  # FRAME_SIZE_ERROR


def test_preface_detection() -> None:
    assert is_preface(PREFACE) and is_preface(PREFACE[:5]) and is_preface(PREFACE + b"rest")
    assert not is_preface(b"GET / HTTP/1.1\r\n") and not is_preface(b"")


def client() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    return conn


def test_core_serves_requests_and_announces_its_limits() -> None:
    limits = H2Limits(max_concurrent_streams=7, stream_window=100_000, connection_window=500_000)
    core = H2Core(limits, 0.0)
    peer = client()
    settings = [e for e in peer.receive_data(core.data_to_send()) if isinstance(e, h2.events.RemoteSettingsChanged)]
    changed = {code: setting.new_value for code, setting in settings[0].changed_settings.items()}
    assert changed[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 7
    assert changed[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] == 100_000
    assert changed[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1
    assert peer.outbound_flow_control_window == 500_000
    peer.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/")], end_stream=True)
    events = core.receive_data(peer.data_to_send(), 0.0)
    assert [type(e) for e in events if isinstance(e, (h2.events.RequestReceived, h2.events.StreamEnded))] == [
        h2.events.RequestReceived, h2.events.StreamEnded]


def test_a_broken_limit_queues_a_goaway() -> None:
    core = H2Core(H2Limits(max_control_frames_per_second=5), 0.0)
    peer = client()
    peer.receive_data(core.data_to_send())
    with pytest.raises(RemoteProtocolError) as info:
        core.receive_data(peer.data_to_send() + frame(0x6, 0, 0, b"12345678") * 6, 0.0)
    assert info.value.hint == ENHANCE_YOUR_CALM
    events = peer.receive_data(core.data_to_send())
    goaway = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway and goaway[0].error_code == ENHANCE_YOUR_CALM


def test_provoked_resets_are_charged() -> None:
    core = H2Core(H2Limits(max_control_frames_per_second=3), 0.0)
    peer = client()
    peer.receive_data(core.data_to_send())
    wire = peer.data_to_send()
    for stream_id in (1, 3, 5):
        peer.send_headers(stream_id, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/")])
    wire += peer.data_to_send()
    core.receive_data(wire, 0.0)
    # WINDOW_UPDATEs that overflow each stream's window: h2 resets the streams itself.
    overflow = b"".join(frame(0x8, 0, s, (0x7FFFFFFF).to_bytes(4, "big")) for s in (1, 3))
    core.receive_data(overflow, 0.0)
    assert core.provoked_resets == 2
    # The client's SETTINGS and these two resets spent the budget of 3: the next reset breaks it.
    with pytest.raises(RemoteProtocolError, match="reset a stream"):
        core.receive_data(frame(0x8, 0, 5, (0x7FFFFFFF).to_bytes(4, "big")), 0.0)


def test_the_listener_recognises_the_preface_without_loading_h2() -> None:
    from gateway.protocols.http2 import listener

    assert listener.PREFACE == PREFACE
