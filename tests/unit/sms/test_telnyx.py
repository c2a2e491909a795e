"""Telnyx: Ed25519 webhook signatures with timestamp tolerance, events, sends."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.sms import (
    DELIVERED,
    FAILED,
    QUEUED,
    SENT,
    UNDELIVERED,
    InboundMessage,
    Media,
    OtherEvent,
    OutboundMessage,
    SendError,
    StatusUpdate,
    WebhookRequest,
)
from gateway.protocols.sms.providers.telnyx import TelnyxProvider

from .helpers import JSON, expect_rejection

# Reference doc §4.7: private key bytes(range(32)), checked with telnyx's own verifier.
VECTOR_PUBLIC_KEY = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
VECTOR_BODY = (b'{"data":{"event_type":"message.received","payload":{"from":{"phone_number":"+18665550001"},'
               b'"to":[{"phone_number":"+18445550001"}],"text":"Hello"}}}')
VECTOR_SIGNATURE = "tNtZAR9HaUrO1MWUKUzGUwyjeiZL1ehIsDXHOpxg3ghrzRkowQTy1do4sGKDAbgEQ5Eks9qeHmmmJx+YtVguBA=="
NOW = 1_700_000_000
URL = "https://gw.example.com/sms/telnyx"

KEY = Ed25519PrivateKey.generate()
PUBLIC = base64.b64encode(KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()

INBOUND = {
    "data": {
        "record_type": "event", "id": "bf6307bd-884d-4c1f-b6ea-c62b8c495d3c", "event_type": "message.received",
        "occurred_at": "2019-01-23T18:10:02.574Z",
        "payload": {
            "record_type": "message", "direction": "inbound", "id": "7ee4241c-f127-47e5-9c34-3aac291f8058",
            "type": "MMS", "messaging_profile_id": "0f512bda-ae1e-4597-8e11-e5f5686b97d3",
            "from": {"phone_number": "+18665550001", "carrier": "T-MOBILE USA, INC.", "line_type": "Wireless"},
            "to": [{"phone_number": "+18445550001", "status": "delivered", "carrier": "TELNYX LLC",
                    "line_type": "VoIP"}],
            "cc": [], "text": "Hello, World!", "subject": "From Telnyx!",
            "media": [{"url": "https://media.telnyx.com/a.png", "content_type": "image/png", "sha256": None,
                       "size": None}],
            "encoding": "GSM-7", "parts": 1, "tags": ["Greetings"],
        },
    },
    "meta": {"attempt": 1, "delivered_to": "https://gw.example.com/sms/telnyx"},
}


def test_published_vector() -> None:
    headers = {"telnyx-signature-ed25519": VECTOR_SIGNATURE, "telnyx-timestamp": "1700000000", "content-type": JSON}
    TelnyxProvider(public_key=VECTOR_PUBLIC_KEY).verify(WebhookRequest("POST", URL, headers, VECTOR_BODY), now=NOW)


def test_vector_public_key_matches_its_private_key() -> None:
    public = Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()
    assert base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode() == VECTOR_PUBLIC_KEY


def signed(document: object = INBOUND, timestamp: int = NOW, key: Ed25519PrivateKey = KEY,
           **changes) -> WebhookRequest:
    body = json.dumps(document).encode() if not isinstance(document, bytes) else document
    signature = base64.b64encode(key.sign(f"{timestamp}|".encode() + body)).decode()
    headers = {"telnyx-signature-ed25519": signature, "telnyx-timestamp": str(timestamp), "content-type": JSON}
    headers.update(changes.get("headers", {}))
    for name in changes.get("drop", ()):
        headers.pop(name)
    return WebhookRequest(changes.get("method", "POST"), URL, headers, changes.get("body", body))


def test_self_signed_inbound_message() -> None:
    message = TelnyxProvider(public_key=PUBLIC).receive(signed(), now=NOW + 3)
    assert isinstance(message, InboundMessage)
    assert (message.message_id, message.text, message.encoding, message.segments) == (
        "7ee4241c-f127-47e5-9c34-3aac291f8058", "Hello, World!", "GSM-7", 1)
    assert (message.from_.value, message.to.value, message.country) == ("+18665550001", "+18445550001", "US")
    assert message.media == (Media("https://media.telnyx.com/a.png", "image/png"),)
    assert message.account == "0f512bda-ae1e-4597-8e11-e5f5686b97d3"


@pytest.mark.parametrize(("kwargs", "now", "match"), [
    ({"key": Ed25519PrivateKey.generate()}, NOW, "does not match"),
    ({"body": json.dumps(INBOUND).encode().replace(b"Hello", b"Jello")}, NOW, "does not match"),
    ({"headers": {"telnyx-timestamp": str(NOW + 1)}}, NOW, "does not match"),
    ({"drop": ["telnyx-signature-ed25519"]}, NOW, "missing"),
    ({"drop": ["telnyx-timestamp"]}, NOW, "missing"),
    ({"headers": {"telnyx-signature-ed25519": "not base64!"}}, NOW, "base64"),
    ({"headers": {"telnyx-signature-ed25519": base64.b64encode(b"short").decode()}}, NOW, "64 bytes"),
    ({"headers": {"telnyx-timestamp": "yesterday"}}, NOW, "timestamp"),
    ({}, NOW + 301, "stale"),
    ({}, NOW - 301, "stale"),
    ({"timestamp": NOW - 3600}, NOW, "stale"),
])
def test_rejections(kwargs: dict, now: int, match: str) -> None:
    expect_rejection(lambda: TelnyxProvider(public_key=PUBLIC).verify(signed(**kwargs), now=now), 403, match)


def test_tolerance_is_configurable() -> None:
    TelnyxProvider(public_key=PUBLIC, timestamp_tolerance=3600).verify(signed(timestamp=NOW - 3600), now=NOW)


def test_public_key_formats() -> None:
    raw = base64.b64decode(PUBLIC)
    TelnyxProvider(public_key=raw.hex()).verify(signed(), now=NOW)
    TelnyxProvider(public_key=raw).verify(signed(), now=NOW)
    for bad in ("bm90IGEga2V5", "%%%", "00" * 31):
        with pytest.raises(ValueError, match="public_key"):
            TelnyxProvider(public_key=bad)
    with pytest.raises(ValueError, match="public_key"):
        TelnyxProvider()


def status_document(event_type: str, status: str, errors: list | None = None) -> dict:
    return {"data": {"event_type": event_type, "id": "86f5", "occurred_at": "2019-01-23T18:10:02.574Z",
                     "record_type": "event",
                     "payload": {"id": "40385f64-5717-4562-b3fc-2c963f66afa6", "direction": "outbound",
                                 "from": {"phone_number": "+18445550001"}, "parts": 2,
                                 "to": [{"phone_number": "+18665550001", "status": status}],
                                 "errors": errors or []}}}


@pytest.mark.parametrize(("event_type", "status", "errors", "normal", "code"), [
    ("message.sent", "sent", None, SENT, None),
    ("message.sent", "queued", None, QUEUED, None),
    ("message.finalized", "delivered", None, DELIVERED, None),
    ("message.finalized", "delivery_failed", [{"code": "40008", "title": "Undeliverable",
                                               "detail": "The destination is not reachable"}], UNDELIVERED, "40008"),
    ("message.finalized", "sending_failed", [{"code": 40300, "title": "Blocked as spam"}], FAILED, "40300"),
])
def test_status_events(event_type: str, status: str, errors: list | None, normal: str, code: str | None) -> None:
    update = TelnyxProvider(public_key=PUBLIC).receive(signed(status_document(event_type, status, errors)), now=NOW)
    assert isinstance(update, StatusUpdate)
    assert (update.message_id, update.status, update.provider_status, update.error_code, update.segments) == (
        "40385f64-5717-4562-b3fc-2c963f66afa6", normal, status, code, 2)
    assert update.to.value == "+18665550001"
    if errors:
        assert update.error_message == errors[0].get("detail", errors[0]["title"])


def test_other_event_types_are_acknowledged_not_parsed() -> None:
    document = {"data": {"event_type": "message.link_click", "payload": {"url": "https://x"}}}
    event = TelnyxProvider(public_key=PUBLIC).receive(signed(document), now=NOW)
    assert event == OtherEvent("telnyx", "message.link_click")
    assert TelnyxProvider(public_key=PUBLIC).respond(event).status == 200


@pytest.mark.parametrize(("document", "match"), [
    (b"{", "JSON"), (b"[]", "object"), ({"data": []}, "event_type"), ({"meta": {}}, "event_type"),
    ({"data": {"event_type": "message.received", "payload": {"text": "x"}}}, "payload.id"),
    ({"data": {"event_type": "message.received", "payload": {"id": "m", "to": [{"phone_number": "+18445550001"}]}}},
     "from"),
    ({"data": {"event_type": "message.received", "payload": {"id": "m", "from": {"phone_number": "+18665550001"},
                                                              "to": []}}}, "to"),
])
def test_malformed_bodies(document: object, match: str) -> None:
    expect_rejection(lambda: TelnyxProvider(public_key=PUBLIC).receive(signed(document), now=NOW), 400, match)


def test_get_is_not_a_telnyx_method() -> None:
    expect_rejection(lambda: TelnyxProvider(public_key=PUBLIC).parse(signed(method="GET")), 405)


def test_no_inline_replies_and_retry_policy() -> None:
    provider = TelnyxProvider(public_key=PUBLIC)
    message = provider.parse(signed())
    assert provider.respond(message).status == 200
    with pytest.raises(LocalProtocolError):
        provider.respond(message, ["hi"])
    assert provider.retry_policy.deadline == 2.0 and provider.signs_timestamp


def test_build_send() -> None:
    provider = TelnyxProvider(api_key="KEY123", verify_signatures=False, default_from="+18445550001",
                              base_url="http://127.0.0.1:8080")
    request = provider.build_send(OutboundMessage("+18665550001", "Hello, World!", media_urls=("https://x/a.png",),
                                                  status_callback="https://gw/status"))
    assert (request.method, request.url) == ("POST", "http://127.0.0.1:8080/v2/messages")
    assert dict(request.headers)["authorization"] == "Bearer KEY123"
    assert json.loads(request.body) == {"to": "+18665550001", "from": "+18445550001", "text": "Hello, World!",
                                        "media_urls": ["https://x/a.png"], "webhook_url": "https://gw/status"}
    pooled = TelnyxProvider(api_key="K", verify_signatures=False, messaging_profile_id="prof")
    assert json.loads(pooled.build_send(OutboundMessage("+18665550001", "x")).body) == {
        "to": "+18665550001", "messaging_profile_id": "prof", "text": "x"}
    with pytest.raises(LocalProtocolError, match="api_key"):
        TelnyxProvider(verify_signatures=False).build_send(OutboundMessage("+18665550001", "x", "+18445550001"))


def test_parse_send_response() -> None:
    body = {"data": {"record_type": "message", "id": "40385f64", "to": [{"phone_number": "+18665550001",
                                                                         "status": "queued"}], "parts": 1}}
    result = TelnyxProvider(verify_signatures=False).parse_send_response(200, {}, json.dumps(body).encode())
    assert (result.message_id, result.status, result.segments) == ("40385f64", QUEUED, 1)
    errors = {"errors": [{"code": "10005", "title": "Resource not found", "detail": "Invalid 'from' address"}]}
    with pytest.raises(SendError) as info:
        TelnyxProvider(verify_signatures=False).parse_send_response(422, {}, json.dumps(errors).encode())
    assert (info.value.code, info.value.message, info.value.retryable) == ("10005", "Invalid 'from' address", False)
    with pytest.raises(SendError) as info:
        TelnyxProvider(verify_signatures=False).parse_send_response(503, {}, b"")
    assert info.value.retryable
