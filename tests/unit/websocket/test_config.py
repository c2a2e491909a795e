"""The ``websocket:`` settings of an HTTP listener, and the frame helpers."""

from __future__ import annotations

import os
import textwrap
from typing import Any

import pytest
from autobahn.websocket.xormasker import create_xor_masker
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from gateway.config import ConfigError, load_config_text
from gateway.protocols.http.config import HttpListenerConfig
from gateway.protocols.websocket import frames
from gateway.protocols.websocket.config import WebSocketConfig


def listener(extra: str) -> HttpListenerConfig:
    text = "application: tests.ws_apps:app\nlisteners:\n  - name: web\n    protocol: http\n" \
           "    endpoint: tcp:0:interface=127.0.0.1\n" + textwrap.indent(textwrap.dedent(extra).strip("\n"), "    ") + "\n"
    config = load_config_text(text, "gw.yaml", environ={}, import_applications=False)
    result = config.listeners[0]
    assert isinstance(result, HttpListenerConfig)
    return result


def test_defaults() -> None:
    ws = listener("").websocket
    assert ws == WebSocketConfig()
    assert ws.enabled and ws.per_message_deflate.enabled and ws.per_message_deflate.window_bits == 15
    assert (ws.max_frame_size, ws.max_message_size) == (1024 * 1024, 1024 * 1024)
    assert (ws.ping_interval, ws.ping_timeout, ws.max_lifetime, ws.allowed_origins) == (20.0, 20.0, None, ())


def test_every_key() -> None:
    ws = listener("""
    websocket:
      enabled: true
      per_message_deflate: {enabled: false, window_bits: 9, memory_level: 1}
      max_frame_size: 64KiB
      max_message_size: 2MiB
      handshake_timeout: 3s
      accept_timeout: 500ms
      close_timeout: 1s
      ping_interval: off
      ping_timeout: 2s
      max_lifetime: 1h
      allowed_origins: [https://example.com, "https://*.example.org:8443", "null"]
      max_connections: 7
      read_high_water: 1MiB
      write_high_water: 16KiB
    """).websocket
    assert not ws.per_message_deflate.enabled and ws.per_message_deflate.window_bits == 9
    assert (ws.max_frame_size, ws.max_message_size, ws.handshake_timeout, ws.accept_timeout) == (65536, 2 * 1024 * 1024, 3.0, 0.5)
    assert (ws.ping_interval, ws.max_lifetime, ws.max_connections) == (None, 3600.0, 7)
    assert ws.allowed_origins == ("https://example.com", "https://*.example.org:8443", "null")
    assert (ws.read_high_water, ws.write_high_water) == (1024 * 1024, 16 * 1024)


@pytest.mark.parametrize(("extra", "message"), [
    ("websocket: {per_message_deflate: {window_bits: 8}}", "must be from 9 to 15"),
    ("websocket: {per_message_deflate: {memory_level: 10}}", "must be from 1 to 9"),
    ("websocket: {allowed_origins: [example.com]}", "is not an origin"),
    ("websocket: {allowed_origins: ['https://a.*.com']}", "wildcard"),
    ("websocket: {ping_interval: 0s}", "greater than zero"),
    ("websocket: {accept_timeout: 0}", "greater than zero"),
    ("websocket: {read_high_water: 0}", "greater than zero"),
    ("websocket: {max_conections: 3}", "max_connections"),
])
def test_bad_values_are_reported_with_their_path(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        listener(extra)
    assert message in str(info.value) and "listeners[0].websocket" in str(info.value)


@given(st.binary(max_size=3000), st.binary(min_size=4, max_size=4))
def test_unmask_matches_autobahn_and_is_its_own_inverse(payload: bytes, mask: bytes) -> None:
    masked = frames.unmask(payload, mask)
    assert masked == create_xor_masker(mask, len(payload)).process(payload)
    assert frames.unmask(masked, mask) == payload


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_frames_we_build_parse_as_rfc_6455_frames(size: int) -> None:
    payload = os.urandom(size)
    reader = StreamReader()
    reader.feed_data(frames.frame(frames.BINARY, payload) + frames.frame(frames.TEXT, b"z"))
    parsed = [run(Frame.parse(reader.read_exact, mask=False)) for _ in range(2)]
    assert [(f.opcode, f.fin, bytes(f.data)) for f in parsed] == [(Opcode.BINARY, True, payload), (Opcode.TEXT, True, b"z")]
    assert frames.frame(frames.TEXT | frames.RSV1, b"z") == b"\xc1\x01z"  # RFC 7692 6: RSV1 marks compression


def run(generator: Any) -> Any:
    try:
        while True:
            next(generator)
    except StopIteration as done:
        return done.value
