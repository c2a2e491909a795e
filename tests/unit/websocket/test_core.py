"""The sans-IO RFC 6455 codec (WebSocket over HTTP/2): frames in any chunking, every violation's close code."""

from __future__ import annotations

import zlib

import pytest
from autobahn.websocket.compress import PerMessageDeflate, PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from hypothesis import given, strategies as st

from gateway.protocols.websocket.core import (
    CloseReceived,
    Message,
    Ping,
    Pong,
    WebSocketCodec,
    WebSocketError,
    parse_extensions,
)
from tests.integration.h2client import ws_frame, ws_parse
from tests.strategies.http import splits

texts = st.text(max_size=300)
blobs = st.binary(max_size=300)


def events_of(codec: WebSocketCodec, chunks: list[bytes]) -> list[object]:
    out: list[object] = []
    for chunk in chunks:
        codec.receive_data(chunk)
        while (event := codec.next_event()) is not None:
            out.append(event)
    return out


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, object]:
    """A message (maybe fragmented, with pings between fragments) and the event it reads as."""
    if draw(st.booleans()):
        data: str | bytes = draw(texts)
        payload = data.encode()  # type: ignore[union-attr]
        opcode = 0x1
    else:
        data = payload = draw(blobs)
        opcode = 0x2
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
    pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)])]
    wire = b""
    for i, piece in enumerate(pieces):
        wire += ws_frame(opcode if i == 0 else 0x0, piece, fin=i == len(pieces) - 1)
        if i < len(pieces) - 1 and draw(st.booleans()):
            wire += ws_frame(0x9, b"p")  # control frames may come between fragments (RFC 6455 5.4)
    return wire, Message(data)


@given(st.lists(messages(), max_size=5), st.data())
def test_messages_in_any_chunking(sequence: list[tuple[bytes, object]], data: st.DataObject) -> None:
    wire = b"".join(w for w, _ in sequence) + ws_frame(0x8, (1000).to_bytes(2, "big") + b"done")
    events = events_of(WebSocketCodec(), data.draw(splits(wire)))
    assert [e for e in events if isinstance(e, Message)] == [m for _, m in sequence]
    assert events[-1] == CloseReceived(1000, "done")


@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_events_or_a_close_code(wire: bytes) -> None:
    codec = WebSocketCodec(max_frame_size=100, max_message_size=150)
    try:
        events_of(codec, [wire])
    except WebSocketError as exc:
        assert exc.code in (1002, 1007, 1009)


@pytest.mark.parametrize(("wire", "code"), [
    (b"\x81\x05hello", 1002),  # not masked
    (ws_frame(0x3, b"x"), 1002),  # reserved opcode
    (ws_frame(0x1, b"x", rsv1=True), 1002),  # RSV1 without permessage-deflate
    (ws_frame(0x0, b"x"), 1002),  # continuation without a message
    (ws_frame(0x1, b"a", fin=False) + ws_frame(0x1, b"b"), 1002),  # a new message inside one
    (ws_frame(0x9, b"x", fin=False), 1002),  # fragmented control frame
    (ws_frame(0x9, b"x" * 126), 1002),  # control frame over 125 bytes
    (ws_frame(0x8, b"\x03"), 1002),  # one-byte close payload
    (ws_frame(0x8, (1005).to_bytes(2, "big")), 1002),  # a code no one may send
    (ws_frame(0x8, (1000).to_bytes(2, "big") + b"\xff"), 1007),  # close reason not UTF-8
    (ws_frame(0x1, b"\xff\xfe"), 1007),  # text not UTF-8
    (ws_frame(0x1, b"\xe2\x82", fin=False) + ws_frame(0x0, b"\x28"), 1007),  # broken across fragments
    (ws_frame(0x2, b"x" * 101), 1009),  # frame over max_frame_size
    (ws_frame(0x2, b"x" * 80, fin=False) + ws_frame(0x0, b"x" * 80), 1009),  # message over max_message_size
    (bytes((0x82, 0x80 | 126)) + (5).to_bytes(2, "big") + b"mask" + b"x" * 5, 1002),  # length not minimal
])
def test_violations_close_with_the_code_of_rfc_6455(wire: bytes, code: int) -> None:
    with pytest.raises(WebSocketError) as info:
        events_of(WebSocketCodec(max_frame_size=100, max_message_size=150), [wire])
    assert info.value.code == code


def test_utf8_split_across_fragments_is_fine() -> None:
    euro = "€".encode()
    events = events_of(WebSocketCodec(), [ws_frame(0x1, euro[:2], fin=False) + ws_frame(0x0, euro[2:])])
    assert events == [Message("€")]


def test_control_frames_and_sending() -> None:
    codec = WebSocketCodec()
    events = events_of(codec, [ws_frame(0x9, b"hi") + ws_frame(0xA, b"yo") + ws_frame(0x8, b"")])
    assert events == [Ping(b"hi"), Pong(b"yo"), CloseReceived(1005, "")]
    assert codec.closed
    assert ws_parse(codec.pong(b"hi") + codec.close(1001, "bye") + codec.close(None)) == [
        (0x8A, b"hi"), (0x88, b"\x03\xe9bye"), (0x88, b"")]
    assert ws_parse(codec.message("t") + codec.message(b"b" * 70000)) == [(0x81, b"t"), (0x82, b"b" * 70000)]


def deflate() -> PerMessageDeflate:
    offer = PerMessageDeflateOffer.parse(parse_extensions("permessage-deflate; client_max_window_bits")[0][1])
    return PerMessageDeflate.create_from_offer_accept(True, PerMessageDeflateOfferAccept(offer))


def test_permessage_deflate_both_ways_and_the_bomb() -> None:
    codec = WebSocketCodec(max_message_size=10_000, deflate=deflate())
    compressor = zlib.compressobj(wbits=-15)
    small = compressor.compress(b"abc" * 100) + compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]
    assert events_of(codec, [ws_frame(0x1, small, rsv1=True)]) == [Message("abc" * 100)]
    ((first, payload),) = ws_parse(codec.message("xyz" * 50))
    assert first == 0xC1
    assert zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff") == b"xyz" * 50
    bomb = compressor.compress(b"\x00" * 1_000_000) + compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]
    assert len(bomb) < 2000
    with pytest.raises(WebSocketError) as info:
        events_of(codec, [ws_frame(0x2, bomb, rsv1=True)])
    assert info.value.code == 1009


def test_parse_extensions() -> None:
    assert parse_extensions('permessage-deflate; client_max_window_bits; server_max_window_bits="10", x-ext') == [
        ("permessage-deflate", {"client_max_window_bits": [True], "server_max_window_bits": ["10"]}), ("x-ext", {})]
