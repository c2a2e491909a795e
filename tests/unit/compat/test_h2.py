"""gateway._compat.h2: the h2/hpack internals it relies on are there, and what replaces them
behaves as h2's and hpack's own (differential, with hypothesis)."""

from __future__ import annotations

import gc
import weakref

import h2.config
import h2.connection
import h2.stream
import h2.utilities
import hpack.exceptions
import pytest
from h2.exceptions import ProtocolError
from h2.utilities import HeaderValidationFlags
from hpack import Decoder, Encoder, HeaderTuple, NeverIndexedHeaderTuple
from hpack.table import HeaderTable
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway._compat import h2 as compat
from gateway._compat.h2 import CachingDecoder, LiteralEncoder, release_connection, speed_up


def test_a_released_connection_is_freed_without_the_garbage_collector() -> None:
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    connection.initiate_connection()
    assert isinstance(connection._frame_dispatch_table, dict)  # the private attribute this relies on
    ref = weakref.ref(connection)
    enabled = gc.isenabled()
    gc.disable()
    try:
        release_connection(connection)
        del connection
        assert ref() is None
    finally:
        if enabled:
            gc.enable()


# -- the internals relied on -------------------------------------------------------------------


def test_h2_calls_the_names_that_are_replaced() -> None:
    # H2Stream looks validate_headers up in its module's globals, on every header block.
    assert "validate_headers" in h2.stream.H2Stream._process_received_headers.__code__.co_names
    assert h2.stream.validate_headers in (h2.utilities.validate_headers, compat.validate_headers)
    assert "utf8_encode_headers" in h2.stream.H2Stream.send_headers.__code__.co_names
    assert h2.stream.utf8_encode_headers in (h2.utilities.utf8_encode_headers, compat.utf8_encode_headers)
    # The connection's coders are the attributes its header paths use.
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    assert type(connection.encoder) is Encoder and type(connection.decoder) is Decoder
    assert "decode" in h2.connection._decode_headers.__code__.co_names
    assert "encoder" in h2.connection.H2Connection.send_headers.__code__.co_names
    # hpack: a pending table-size update, the decoder's limits, the static table.
    assert Encoder().header_table.resized is False
    decoder = Decoder()
    assert isinstance(decoder.header_table_size, int) and isinstance(decoder.max_allowed_table_size, int)
    assert HeaderTable.STATIC_TABLE[7] == (b":status", b"200")


def test_speed_up_keeps_the_decoder_limits() -> None:
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    connection.decoder.max_header_list_size = 1234
    speed_up(connection)
    assert isinstance(connection.encoder, LiteralEncoder) and isinstance(connection.decoder, CachingDecoder)
    assert connection.decoder.max_header_list_size == 1234


# -- validate_headers ---------------------------------------------------------------------------

_NAMES = [b":method", b":scheme", b":path", b":authority", b":protocol", b":status", b":bogus", b"host",
          b"te", b"connection", b"keep-alive", b"user-agent", b"Accept", b"x-a:b", b"", b"x y", b"cookie"]
_VALUES = [b"GET", b"CONNECT", b"POST", b"http", b"/", b"", b"example.com", b"other.org", b"trailers",
           b"gzip", b" lead", b"trail\t", b"a\x00b", b"a\nb", b"a\rb", b"websocket", b"TRAILERS"]
_fields = st.lists(st.tuples(st.sampled_from(_NAMES), st.sampled_from(_VALUES)), max_size=8)
_request = st.lists(
    st.tuples(st.sampled_from(_NAMES), st.sampled_from(_VALUES)), max_size=4
).map(lambda extra: [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b":authority", b"example.com"),
                     *extra])
_flags = st.builds(HeaderValidationFlags, st.just(False), st.booleans(), st.booleans(), st.booleans())


def _outcome(function, headers, flags):  # type: ignore[no-untyped-def]
    try:
        return "ok", list(function(headers, flags))
    except ProtocolError as exc:
        return "error", str(exc)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(_fields, _request), st.one_of(_flags, st.just(HeaderValidationFlags(False, False, False, False))))
def test_validate_headers_agrees_with_h2(headers: list[tuple[bytes, bytes]], flags: HeaderValidationFlags) -> None:
    assert _outcome(compat.validate_headers, headers, flags) == _outcome(h2.utilities.validate_headers, headers, flags)


def test_validate_headers_passes_a_plain_request_through() -> None:
    headers = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a"), (b"accept", b"*/*")]
    assert compat.validate_headers(headers, HeaderValidationFlags(False, False, False, False)) is headers


# -- the HPACK coders ---------------------------------------------------------------------------

_header_names = st.sampled_from([b":status", b"content-type", b"content-length", b"date", b"server", b"x-custom",
                                 b"set-cookie", b"cache-control"])
_header_values = st.one_of(st.sampled_from([b"200", b"404", b"text/plain", b"13", b"", b"no-cache"]),
                           st.binary(max_size=600).filter(lambda v: b"\r" not in v))
_blocks = st.lists(st.lists(st.tuples(_header_names, _header_values), max_size=6), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(_blocks, st.data())
def test_literal_encoder_blocks_decode_to_the_same_fields(blocks: list[list[tuple[bytes, bytes]]], data: st.DataObject) -> None:
    encoder = LiteralEncoder()
    decoder = Decoder()
    decoder.max_header_list_size = 1 << 30
    for block in blocks:
        choice = data.draw(st.sampled_from(["plain", "never", "resize"]))
        fields: list[object] = list(block)
        if choice == "never" and block:
            # Fields hpack encodes itself (and indexes) interleave with the literal ones.
            fields[0] = NeverIndexedHeaderTuple(*block[0])
            fields.append(HeaderTuple(b"x-indexed", b"v"))
        elif choice == "resize":
            encoder.header_table_size = data.draw(st.sampled_from([0, 256, 4096]))
        decoded = decoder.decode(encoder.encode(fields), raw=True)
        assert [tuple(field) for field in decoded] == [tuple(field) for field in fields]
        assert decoder.header_table_size == encoder.header_table_size


def test_literal_encoder_leaves_the_dynamic_table_alone() -> None:
    encoder = LiteralEncoder()
    block = encoder.encode([(b":status", b"200"), (b"content-type", b"text/plain"), (b"x-new", b"1")])
    assert block[0] == 0x88  # :status 200, static index 8
    decoder = Decoder()
    decoder.decode(block, raw=True)
    assert len(decoder.header_table.dynamic_entries) == 0 and len(encoder.header_table.dynamic_entries) == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=1, max_size=30))
def test_caching_decoder_agrees_with_hpack(steps: list[tuple[int, bool]]) -> None:
    """Blocks of a real encoder, repeated (all-indexed once the fields are in the table) and
    changed (new fields shift the table): the caching decoder decodes each as hpack's does."""
    encoder = Encoder()
    plain, caching = Decoder(), CachingDecoder()
    requests = [[(b":method", b"GET"), (b":path", b"/%d" % i), (b":authority", b"h"), (b"user-agent", b"u%d" % i)]
                for i in range(6)]
    for which, resize in steps:
        if resize:
            encoder.header_table_size = 64 if encoder.header_table_size == 4096 else 4096
        block = encoder.encode(requests[which])
        assert caching.decode(block, raw=True) == plain.decode(block, raw=True)


def test_caching_decoder_remembers_an_indexed_block() -> None:
    encoder = Encoder()
    decoder = CachingDecoder()
    fields = [(b":method", b"GET"), (b":path", b"/"), (b"user-agent", b"bench")]
    decoder.decode(encoder.encode(fields), raw=True)
    again = encoder.encode(fields)
    assert not again.translate(None, bytes(range(0x81, 0xFF)))  # all one-byte indexed fields
    first = decoder.decode(again, raw=True)
    second = decoder.decode(again, raw=True)
    assert first == second == fields and first is not second
    with pytest.raises(hpack.exceptions.InvalidTableIndex):
        decoder.decode(b"\xfe", raw=True)  # index 126: no such entry, never remembered


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.sampled_from([b"a", b":status"]), st.sampled_from([b"1", b""])),
    st.tuples(st.sampled_from(["a", b"b"]), st.sampled_from(["1", b"2"])),
    st.builds(HeaderTuple, st.just(b"x"), st.just(b"y")),
    st.builds(NeverIndexedHeaderTuple, st.just(b"x"), st.just("y")),
), max_size=6))
def test_utf8_encode_headers_agrees_with_h2(headers: list[tuple[object, object]]) -> None:
    ours = compat.utf8_encode_headers(headers)
    theirs = h2.utilities.utf8_encode_headers(headers)
    assert ours == theirs and [type(f) for f in ours] == [type(f) for f in theirs]


# -- frame serialisation --------------------------------------------------------------------------

_frame_kinds = st.sampled_from(["data", "headers", "settings", "window", "rst", "ping"])


@settings(max_examples=500, deadline=None)
@given(_frame_kinds, st.integers(0, 2**31 - 1), st.binary(max_size=40), st.sets(st.sampled_from(
    ["END_STREAM", "END_HEADERS", "PADDED", "PRIORITY", "ACK"])), st.integers(0, 20), st.booleans())
def test_frame_serialisers_agree_with_hyperframe(kind: str, stream_id: int, data: bytes, flags: set[str],
                                                 pad: int, view: bool) -> None:
    from hyperframe import frame as hf

    if kind == "data":
        frame: hf.Frame = hf.DataFrame(max(stream_id, 1), memoryview(data) if view else data)
    elif kind == "headers":
        frame = hf.HeadersFrame(max(stream_id, 1), data, depends_on=3, stream_weight=7)
    elif kind == "settings":
        frame = hf.SettingsFrame(0, settings={1: 4096})
    elif kind == "window":
        frame = hf.WindowUpdateFrame(stream_id, window_increment=5)
    elif kind == "rst":
        frame = hf.RstStreamFrame(max(stream_id, 1), error_code=8)
    else:
        frame = hf.PingFrame(0, b"12345678")
    for flag in flags:
        if flag in frame.flags._valid_flags and not (kind == "settings" and flag == "ACK"):
            frame.flags.add(flag)
    if hasattr(frame, "pad_length"):
        frame.pad_length = pad if "PADDED" in frame.flags else 0
    body = {hf.DataFrame: compat._data_body, hf.HeadersFrame: compat._headers_body}.get(type(frame))
    if body is not None:
        assert type(frame).serialize_body(frame) == body(frame)
    assert compat.frame_serialize(frame) == _original_serialize(frame, body)


def _original_serialize(frame, body):  # type: ignore[no-untyped-def]
    """hyperframe's own serialize, with its own body serialiser."""
    from hyperframe import frame as hf

    saved = hf.Frame.serialize, hf.DataFrame.serialize_body, hf.HeadersFrame.serialize_body
    hf.Frame.serialize, hf.DataFrame.serialize_body, hf.HeadersFrame.serialize_body = (
        compat._frame_serialize, compat._data_body, compat._headers_body)
    try:
        return frame.serialize()
    finally:
        hf.Frame.serialize, hf.DataFrame.serialize_body, hf.HeadersFrame.serialize_body = saved


def test_hyperframe_internals_relied_on() -> None:
    from hyperframe import frame as hf

    frame = hf.HeadersFrame(1, b"x")
    frame.flags.add("END_HEADERS")
    assert frame.flags._flags == {"END_HEADERS"} and frame.pad_length == 0
    assert "serialize" not in vars(hf.DataFrame) and "serialize" not in vars(hf.HeadersFrame)
    assert hf.Frame.serialize in (compat.frame_serialize, compat._frame_serialize)
