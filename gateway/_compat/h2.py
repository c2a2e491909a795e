"""The ``h2`` library's connection made cheaper per request, and freed by reference counting.

Every helper here relies on something ``h2`` or ``hpack`` does not promise;
``tests/unit/compat/test_h2.py`` checks each assumption against the installed versions.

* :func:`release_connection`: ``h2.connection.H2Connection`` keeps a dispatch table of its own
  bound methods (``_frame_dispatch_table``, private), a reference cycle: every closed HTTP/2
  connection would wait for the cyclic garbage collector, whose full collections then walk
  thousands of dead connections under churn. Once a connection is over, the table is dropped.
* :func:`speed_up`: a connection's HPACK encoder and decoder (the public attributes ``encoder``
  and ``decoder``) replaced by subclasses that cost less per request:

  - :class:`LiteralEncoder` sends plain ``(name, value)`` fields as literals *without indexing*
    (RFC 7541 6.2.2; an exact static-table match as its index), each field's bytes built once and
    kept in a bounded cache shared by every connection. Such a block neither reads nor changes
    the dynamic table, so no per-field table search is needed, and what ``hpack`` itself encodes
    afterwards (a pending table-size update, never-indexed fields) stays in step with the client.
  - :class:`CachingDecoder` remembers the decoded list of a header block made only of one-byte
    indexed fields (what a client repeating its requests sends, once its fields are in the
    dynamic table): such a block does not change the table, so while no other block was decoded
    since, the same bytes decode to the same list. Any other block empties the memory.

* :func:`validate_headers`: ``h2``'s inbound header validation (``h2.utilities.validate_headers``,
  a chain of seven generators) with a one-pass check in front: a header list the check finds
  plainly valid is returned as it is (and remembered, so that the same list again is not
  checked again), anything else goes through ``h2``'s own chain, which raises the same error it
  always did. Installed as ``h2.stream.validate_headers`` (the name
  ``H2Stream._process_received_headers`` calls) by :func:`install`.
* :func:`utf8_encode_headers`: ``h2`` copies every header list it sends, field by field, to
  turn ``str`` into ``bytes``; a list that is plain ``(bytes, bytes)`` tuples already is sent as
  it is (``h2.stream.utf8_encode_headers``, installed by :func:`install`).
* :func:`frame_serialize`, :func:`data_body`, :func:`headers_body`: ``hyperframe``'s
  ``Frame.serialize`` and the DATA and HEADERS bodies, the same bytes with fewer Python calls
  (the flags read from ``Flags._flags``, a private set), installed on the classes by :func:`install`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import h2.stream
import h2.utilities
import hyperframe.frame
from hpack import Decoder, Encoder
from hpack.hpack import DEFAULT_MAX_HEADER_LIST_SIZE, encode_integer
from hpack.table import HeaderTable

__all__ = ["CachingDecoder", "LiteralEncoder", "install", "release_connection", "speed_up", "utf8_encode_headers",
           "validate_headers", "frame_serialize", "data_body", "headers_body"]


def release_connection(connection: Any) -> None:
    """Break the connection's reference cycle (it must not receive frames afterwards)."""
    connection._frame_dispatch_table = None


# -- HPACK -------------------------------------------------------------------------------

_STATIC_FIELD: dict[tuple[bytes, bytes], int] = {}
_STATIC_NAME: dict[bytes, int] = {}
for _index, _field in enumerate(HeaderTable.STATIC_TABLE, 1):
    _STATIC_FIELD.setdefault(_field, _index)
    _STATIC_NAME.setdefault(_field[0], _index)

#: The encoded bytes of fields already sent (any connection); emptied when full.
_FIELDS: dict[tuple[bytes, bytes], bytes] = {}
_FIELDS_MAX = 2048
#: Longer values are encoded each time rather than kept.
_VALUE_CACHED_MAX = 512


def _literal(name: bytes, value: bytes) -> bytes:
    """One field as RFC 7541 6.1 (an exact static-table match) or 6.2.2 (literal without
    indexing, no Huffman coding)."""
    index = _STATIC_FIELD.get((name, value))
    if index is not None:
        return bytes((0x80 | index,))
    index = _STATIC_NAME.get(name)
    if index is not None:
        head = bytes(encode_integer(index, 4))
    else:
        head = b"\x00" + bytes(encode_integer(len(name), 7)) + name
    return head + bytes(encode_integer(len(value), 7)) + value


class LiteralEncoder(Encoder):
    """An HPACK encoder that sends plain ``(bytes, bytes)`` fields as literals without indexing
    (see the module); anything else (a pending table-size update, other field types) is left to
    :class:`hpack.Encoder`."""

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        if self.header_table.resized or type(headers) is not list:
            return super().encode(headers, huffman)
        fields = _FIELDS
        parts = []
        for field in headers:
            if type(field) is not tuple:
                return super().encode(headers, huffman)
            block = fields.get(field)
            if block is None:
                if len(field) != 2:
                    return super().encode(headers, huffman)
                name, value = field
                if type(name) is not bytes or type(value) is not bytes:
                    return super().encode(headers, huffman)
                block = _literal(name, value)
                if len(value) <= _VALUE_CACHED_MAX:
                    if len(fields) >= _FIELDS_MAX:
                        fields.clear()
                    fields[field] = block
            parts.append(block)
        return b"".join(parts)


#: Bytes 0x81-0xFE: each one a whole indexed field (RFC 7541 6.1) of index 1-126.
_ONE_BYTE_INDEXED = bytes(range(0x81, 0xFF))
#: At most this many blocks of at most this many bytes (fields) are remembered per connection:
#: a few kilobytes at worst, whatever the client sends.
_BLOCKS_MAX = 4
_BLOCK_CACHED_MAX = 48


class CachingDecoder(Decoder):
    """An HPACK decoder that remembers the lists of blocks made only of one-byte indexed fields
    (see the module)."""

    def __init__(self, max_header_list_size: int = DEFAULT_MAX_HEADER_LIST_SIZE) -> None:
        super().__init__(max_header_list_size)
        self._blocks: dict[bytes, list[Any]] = {}

    def decode(self, data: bytes, raw: bool = False) -> Any:
        blocks = self._blocks
        if raw and type(data) is bytes:
            headers = blocks.get(data)
            if headers is not None and self.header_table_size <= self.max_allowed_table_size:
                return headers.copy()
            if len(data) <= _BLOCK_CACHED_MAX and not data.translate(None, _ONE_BYTE_INDEXED):
                decoded = super().decode(data, raw)
                if len(blocks) >= _BLOCKS_MAX:
                    blocks.clear()
                blocks[data] = list(decoded)
                return decoded
        if blocks:
            blocks.clear()
        return super().decode(data, raw)


def speed_up(connection: Any) -> None:
    """Give a new ``H2Connection`` (nothing sent or received yet) the cheaper HPACK coders."""
    old = connection.decoder
    decoder = CachingDecoder(old.max_header_list_size)
    decoder.max_allowed_table_size = old.max_allowed_table_size
    connection.decoder = decoder
    connection.encoder = LiteralEncoder()


# -- header validation ---------------------------------------------------------------------

_h2_validate_headers = h2.utilities.validate_headers
#: Bytes a field name may hold (RFC 9113 8.2.1: not 0x00-0x20, 0x41-0x5a, 0x7f-0xff).
_NAME_BYTES = bytes(c for c in range(0x21, 0x7F) if not 0x41 <= c <= 0x5A)
_CONNECTION_HEADERS = h2.utilities.CONNECTION_HEADERS
_REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path"))
#: Request header lists found valid lately (the check is a function of the fields alone): a
#: client repeating its requests is checked once. Lists of up to 1 KiB, at most 256 of them.
_VALID: set[tuple[Any, ...]] = set()
_VALID_MAX = 256
_VALID_SIZE_MAX = 1024


def validate_headers(headers: Iterable[Any], flags: Any) -> Iterable[Any]:
    """``h2.utilities.validate_headers`` (same arguments, same errors), one pass for a plainly
    valid request header list (see the module)."""
    if type(headers) is not list:
        headers = list(headers)
    if flags.is_trailer or flags.is_response_header or flags.is_push_promise:
        return _h2_validate_headers(headers, flags)
    key = tuple(headers)
    if key in _VALID:
        return headers
    size = 0
    pseudo: set[bytes] = set()
    regular = False
    method = authority = host = None
    for field in headers:
        name = field[0]
        value = field[1]
        size += len(name) + len(value)
        if not name or name.translate(None, _NAME_BYTES) or name.find(b":", 1) != -1:
            return _h2_validate_headers(headers, flags)
        if value and (
            b"\x00" in value or b"\n" in value or b"\r" in value
            or value[0] in (0x20, 0x09) or value[-1] in (0x20, 0x09)
        ):
            return _h2_validate_headers(headers, flags)
        if name[0] == 0x3A:
            if regular or name in pseudo or name not in _REQUEST_PSEUDO:
                return _h2_validate_headers(headers, flags)
            pseudo.add(name)
            if name == b":method":
                method = value
            elif name == b":authority":
                authority = value
            elif name == b":path" and not value:
                return _h2_validate_headers(headers, flags)
        else:
            regular = True
            if name in _CONNECTION_HEADERS or (name == b"te" and value.lower() != b"trailers"):
                return _h2_validate_headers(headers, flags)
            if name == b"host":
                if host is not None:
                    return _h2_validate_headers(headers, flags)
                host = value
    # An ordinary request (not CONNECT): :method, :scheme and :path, and :authority or host
    # (the same if both).
    if (
        method is None or method == b"CONNECT" or len(pseudo) < 3 or b":scheme" not in pseudo
        or b":path" not in pseudo or (authority is None and host is None)
        or (authority is not None and host is not None and authority != host)
    ):
        return _h2_validate_headers(headers, flags)
    if size <= _VALID_SIZE_MAX:
        if len(_VALID) >= _VALID_MAX:
            _VALID.clear()
        _VALID.add(key)
    return headers


_h2_utf8_encode_headers = h2.utilities.utf8_encode_headers


def utf8_encode_headers(headers: Iterable[Any]) -> list[Any]:
    """``h2.utilities.utf8_encode_headers``: a list of plain ``(bytes, bytes)`` tuples is
    returned as it is (h2 would rebuild it equal, field by field); anything else goes to h2's."""
    if type(headers) is list:
        for field in headers:
            if type(field) is not tuple or len(field) != 2 or type(field[0]) is not bytes or type(field[1]) is not bytes:
                break
        else:
            return headers
    return _h2_utf8_encode_headers(headers)


# -- frame serialisation (hyperframe) -------------------------------------------------------

_STRUCT_HBBBL = struct.Struct(">HBBBL")
_frame_serialize = hyperframe.frame.Frame.serialize
_data_body = hyperframe.frame.DataFrame.serialize_body
_headers_body = hyperframe.frame.HeadersFrame.serialize_body


def frame_serialize(self: Any) -> bytes:
    """``hyperframe.frame.Frame.serialize`` reading the flag set directly (``Flags._flags``)
    instead of through ``Flags.__contains__``, one Python call per defined flag."""
    body = self.serialize_body()
    length = self.body_len = len(body)
    bits = 0
    present = self.flags._flags
    if present:
        for flag, bit in self.defined_flags:
            if flag in present:
                bits |= bit
    return _STRUCT_HBBBL.pack((length >> 8) & 0xFFFF, length & 0xFF, self.type, bits, self.stream_id & 0x7FFFFFFF) + body


def data_body(self: Any) -> bytes:
    """``DataFrame.serialize_body``: an unpadded frame's body is its data."""
    data = self.data
    if type(data) is bytes and not self.pad_length and "PADDED" not in self.flags._flags:
        return data
    return _data_body(self)


def headers_body(self: Any) -> bytes:
    """``HeadersFrame.serialize_body``: without padding or priority, the body is the block."""
    data = self.data
    present = self.flags._flags
    if type(data) is bytes and not self.pad_length and "PADDED" not in present and "PRIORITY" not in present:
        return data
    return _headers_body(self)


def install() -> None:
    """Put :func:`validate_headers` and :func:`utf8_encode_headers` where ``h2``'s streams call
    them, and the frame serialisers on hyperframe's classes (idempotent)."""
    h2.stream.validate_headers = validate_headers  # type: ignore[assignment]
    h2.stream.utf8_encode_headers = utf8_encode_headers
    hyperframe.frame.Frame.serialize = frame_serialize  # type: ignore[method-assign]
    hyperframe.frame.DataFrame.serialize_body = data_body  # type: ignore[method-assign]
    hyperframe.frame.HeadersFrame.serialize_body = headers_body  # type: ignore[method-assign]
