"""The generic JSON webhook format: HMAC-SHA256 over timestamp.body, parsing, replies, sends."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.sms import (
    DELIVERED,
    UNKNOWN_STATUS,
    InboundMessage,
    Media,
    OutboundMessage,
    SendError,
    StatusUpdate,
    WebhookRequest,
)
from gateway.protocols.sms.providers.generic import GenericProvider, compute_signature

from .helpers import JSON, NOW, expect_rejection

SECRET = "whsec_test"
URL = "https://gw.example.com/sms/generic"
MESSAGE = {"type": "message", "id": "m-1", "from": "+447400123456", "to": "+441134960000", "text": "hello",
           "media": [{"url": "https://files.example/a.png", "content_type": "image/png"}]}


def test_signature_definition() -> None:
    # Independent computation of the documented scheme.
    expected = hmac.new(b"whsec_test", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert compute_signature(SECRET, "1700000000", b"{}") == "v1=" + expected


def signed(document: object = MESSAGE, timestamp: int = int(NOW), secret: str = SECRET, **changes) -> WebhookRequest:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    headers = {"X-SMS-Signature": compute_signature(secret, str(timestamp), body),
               "X-SMS-Timestamp": str(timestamp), "Content-Type": JSON}
    headers.update(changes.get("headers", {}))
    return WebhookRequest(changes.get("method", "POST"), URL, headers, changes.get("body", body))


def test_valid_message() -> None:
    message = GenericProvider(secret=SECRET).receive(signed(), now=NOW)
    assert isinstance(message, InboundMessage)
    assert (message.message_id, message.text, message.encoding, message.segments, message.country) == (
        "m-1", "hello", "GSM-7", 1, "GB")
    assert message.media == (Media("https://files.example/a.png", "image/png"),)


def test_rotation_list() -> None:
    request = signed(headers={"X-SMS-Signature": "v1=00ff, " + compute_signature(SECRET, str(int(NOW)),
                                                                                  json.dumps(MESSAGE).encode())})
    GenericProvider(secret=SECRET).verify(request, now=NOW)


@pytest.mark.parametrize(("kwargs", "now", "match"), [
    ({"secret": "other"}, NOW, "does not match"),
    ({"body": json.dumps(dict(MESSAGE, text="HELLO")).encode()}, NOW, "does not match"),
    ({"headers": {"X-SMS-Timestamp": str(int(NOW) + 1)}}, NOW, "does not match"),
    ({"headers": {"X-SMS-Signature": ""}}, NOW, "missing"),
    ({}, NOW + 1000, "stale"),
])
def test_rejections(kwargs: dict, now: float, match: str) -> None:
    expect_rejection(lambda: GenericProvider(secret=SECRET).verify(signed(**kwargs), now=now), 403, match)


def test_status() -> None:
    update = GenericProvider(secret=SECRET).receive(
        signed({"type": "status", "id": "m-1", "status": "Delivered", "to": "+447400123456"}), now=NOW)
    assert update == StatusUpdate("generic", "m-1", DELIVERED, "Delivered", to=update.to)
    odd = GenericProvider(secret=SECRET).parse(signed({"type": "status", "id": "m-2", "status": "bounced",
                                                       "error_code": 42}))
    assert (odd.status, odd.error_code) == (UNKNOWN_STATUS, "42")


@pytest.mark.parametrize(("document", "match"), [
    ({"type": "carrier-pigeon", "id": "x"}, "type"),
    ({"type": "message", "from": "+447400123456", "to": "+441134960000"}, "id"),
    (dict(MESSAGE, text=5), "text"),
    (dict(MESSAGE, media={"url": "x"}), "media"),
    (dict(MESSAGE, media=[{"type": "x"}]), "url"),
    (dict(MESSAGE, encoding="EBCDIC"), "encoding"),
    ({k: v for k, v in MESSAGE.items() if k != "from"}, "from"),
    ({"type": "status", "id": "x"}, "status"),
    (b"not json", "JSON"),
])
def test_malformed(document: object, match: str) -> None:
    expect_rejection(lambda: GenericProvider(secret=SECRET).receive(signed(document), now=NOW), 400, match)


def test_inline_replies() -> None:
    provider = GenericProvider(secret=SECRET)
    response = provider.respond(provider.parse(signed()), ["one", "två"])
    assert (response.status, dict(response.headers)["content-type"]) == (200, "application/json")
    assert json.loads(response.body) == {"replies": [{"to": "+447400123456", "text": "one"},
                                                     {"to": "+447400123456", "text": "två"}]}


def test_send() -> None:
    provider = GenericProvider(secret=SECRET, base_url="http://127.0.0.1:9000/send", send_token="tok",
                               default_from="ACME")
    request = provider.build_send(OutboundMessage("+447400123456", "hi"))
    assert (request.method, request.url, dict(request.headers)["authorization"]) == (
        "POST", "http://127.0.0.1:9000/send", "Bearer tok")
    assert json.loads(request.body) == {"to": "+447400123456", "from": "ACME", "text": "hi"}
    assert provider.parse_send_response(202, {}, b'{"id": "s-1"}').message_id == "s-1"
    with pytest.raises(SendError) as info:
        provider.parse_send_response(400, {}, b'{"error": "bad number", "code": "E1"}')
    assert (info.value.message, info.value.code, info.value.retryable) == ("bad number", "E1", False)
    with pytest.raises(LocalProtocolError, match="base_url"):
        GenericProvider(secret=SECRET, default_from="ACME").build_send(OutboundMessage("+447400123456", "hi"))
