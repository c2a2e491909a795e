"""Vonage SMS API: signed requests (vonage-node-sdk vectors), JWT, parsing, sends."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import parse_qsl, urlencode

import pytest

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.sms import (
    DELIVERED,
    FAILED,
    PHONE,
    SENT,
    Concat,
    InboundMessage,
    OutboundMessage,
    SendError,
    StatusUpdate,
    WebhookRequest,
    join_parts,
)
from gateway.protocols.sms.providers.vonage import VonageProvider, compute_signature, signature_base

from .helpers import FORM, JSON, NOW, expect_rejection, form

SECRET = "my_secret_key_for_testing"
VECTOR = {"message-timestamp": "2013-11-21 15:27:30", "messageId": "020000001B0FE827", "msisdn": "14843472194",
          "text": "Test again", "timestamp": "1385047698", "to": "13239877404", "type": "text"}
VECTOR_NOW = 1385047698.0
VECTOR_SIGS = {
    "md5hash": "d2e7b1dc968737c5998ad624e02f90b7",
    "md5": "DDEBD46008C2D4E93CCE578A332A52D5",
    "sha1": "27D0D05C2876C7CB1720DBCDBA4D492E1E55C09A",
    "sha256": "DDB8397C2B90AAC7F3882D306475C9A5058C92322EEF43C92B298B6E0FC0D330",
    "sha512": ("E0D3C650F8C9D1A5C174D10DDDBFB003E561F59B265616208B0487C5D819481CD3C311D59CF6165ECD1139622D5BA3A2"
               "56C0D763AC4A9AD9144B5A426B94FE82"),
}
URL = "https://gw.example.com/sms/vonage"


@pytest.mark.parametrize("method", sorted(VECTOR_SIGS))
def test_published_vectors(method: str) -> None:
    assert compute_signature(SECRET, VECTOR, method) == VECTOR_SIGS[method]


@pytest.mark.parametrize("method", sorted(VECTOR_SIGS))
@pytest.mark.parametrize("transport", ["get", "form", "json"])
def test_published_vectors_verify_over_each_transport(method: str, transport: str) -> None:
    params = dict(VECTOR, sig=VECTOR_SIGS[method])
    provider = VonageProvider(signature_secret=SECRET, signature_method=method)
    if transport == "get":
        request = WebhookRequest("GET", URL + "?" + urlencode(params))
    elif transport == "form":
        request = WebhookRequest("POST", URL, {"content-type": FORM}, form(params))
    else:
        request = WebhookRequest("POST", URL, {"content-type": JSON}, json.dumps(params).encode())
    message = provider.receive(request, now=VECTOR_NOW)
    assert isinstance(message, InboundMessage)
    assert (message.from_.value, message.to.value, message.text) == ("+14843472194", "+13239877404", "Test again")


def test_signature_comparison_ignores_case() -> None:
    params = dict(VECTOR, sig=VECTOR_SIGS["md5hash"].upper())
    VonageProvider(signature_secret=SECRET).verify(WebhookRequest("POST", URL, {}, form(params)), now=VECTOR_NOW)


def test_signature_base_replaces_ampersand_and_equals_in_values() -> None:
    assert signature_base({"text": "a&b=c", "b": "1", "sig": "x"}) == "&b=1&text=a_b_c"


def signed_params(now: float = NOW, method: str = "md5hash", secret: str = SECRET, **extra: str) -> dict:
    params = {"msisdn": "447400123456", "to": "447700900001", "messageId": "0A0000000123ABCD1",
              "text": "Hi & bye = ok", "type": "text", "keyword": "HI", "api-key": "abcd1234",
              "message-timestamp": "2023-11-14 22:13:20", "timestamp": str(int(now)), "nonce": "aaaa-bbbb"}
    params.update(extra)
    params["sig"] = compute_signature(secret, params, method)
    return params


def test_self_signed_hmac_request() -> None:
    provider = VonageProvider(signature_secret="s3cret", signature_method="sha256hmac")
    params = signed_params(method="sha256", secret="s3cret")
    request = WebhookRequest("POST", URL, {"content-type": FORM}, form(params))
    assert isinstance(provider.receive(request, now=NOW), InboundMessage)


@pytest.mark.parametrize(("change", "match"), [
    ({"secret": "other"}, "does not match"),
    ({"method": "sha1"}, "does not match"),
])
def test_wrong_secret_or_method(change: dict, match: str) -> None:
    request = WebhookRequest("POST", URL, {}, form(signed_params(**change)))
    expect_rejection(lambda: VonageProvider(signature_secret=SECRET).verify(request, now=NOW), 403, match)


def test_tampered_parameter() -> None:
    params = signed_params()
    params["text"] = "Hi & bye = OK"
    request = WebhookRequest("POST", URL, {}, form(params))
    expect_rejection(lambda: VonageProvider(signature_secret=SECRET).verify(request, now=NOW), 403)


def test_missing_sig() -> None:
    params = signed_params()
    del params["sig"]
    request = WebhookRequest("POST", URL, {}, form(params))
    expect_rejection(lambda: VonageProvider(signature_secret=SECRET).verify(request, now=NOW), 403, "sig")


@pytest.mark.parametrize("skew", [-301, 301, 86400])
def test_stale_or_replayed_timestamp(skew: float) -> None:
    request = WebhookRequest("POST", URL, {}, form(signed_params(now=NOW)))
    expect_rejection(lambda: VonageProvider(signature_secret=SECRET).verify(request, now=NOW + skew), 403, "stale")
    VonageProvider(signature_secret=SECRET, timestamp_tolerance=abs(skew)).verify(request, now=NOW + skew)


def test_signed_request_without_timestamp() -> None:
    params = signed_params()
    del params["timestamp"], params["sig"]
    params["sig"] = compute_signature(SECRET, params)
    request = WebhookRequest("POST", URL, {}, form(params))
    expect_rejection(lambda: VonageProvider(signature_secret=SECRET).verify(request, now=NOW), 403, "timestamp")


# -- Messages API JWT ---------------------------------------------------------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict, secret: str = SECRET, alg: str = "HS256") -> str:
    head = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


MESSAGES_INBOUND = json.dumps({
    "channel": "sms", "message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "to": "447700900001",
    "from": "447400123456", "timestamp": "2023-11-14T22:13:20Z", "text": "Hello ☃", "message_type": "text",
    "sms": {"num_messages": "1", "keyword": "HELLO"}, "usage": {"price": "0.0057", "currency": "EUR"},
}).encode()


def jwt_request(token: str | None, body: bytes = MESSAGES_INBOUND) -> WebhookRequest:
    headers = {"content-type": JSON}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return WebhookRequest("POST", URL, headers, body)


def claims(**changes: object) -> dict:
    base = {"iat": int(NOW), "jti": "c9f1", "iss": "Vonage", "api_key": "abcd1234",
            "payload_hash": hashlib.sha256(MESSAGES_INBOUND).hexdigest(), "application_id": "app"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def test_jwt_signed_messages_api_webhook() -> None:
    provider = VonageProvider(signature_secret=SECRET, signature_method="jwt", api_key="abcd1234")
    message = provider.receive(jwt_request(jwt(claims())), now=NOW + 5)
    assert isinstance(message, InboundMessage)
    assert (message.message_id, message.text, message.from_.value, message.encoding, message.segments) == (
        "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "Hello ☃", "+447400123456", "UCS-2", 1)


@pytest.mark.parametrize(("token", "body", "match"), [
    (None, MESSAGES_INBOUND, "Bearer"),
    ("not-a-jwt", MESSAGES_INBOUND, "Bearer"),
    ("a.b.c", MESSAGES_INBOUND, "malformed"),
    (jwt(claims(), secret="other"), MESSAGES_INBOUND, "signature"),
    (jwt(claims(), alg="none"), MESSAGES_INBOUND, "HS256"),
    (jwt(claims()), MESSAGES_INBOUND.replace(b"Hello", b"Jello"), "payload_hash"),
    (jwt(claims(payload_hash=None)), MESSAGES_INBOUND, "payload_hash"),
    (jwt(claims(iat=int(NOW) - 3600)), MESSAGES_INBOUND, "iat"),
    (jwt(claims(iat=None)), MESSAGES_INBOUND, "iat"),
    (jwt(claims(exp=int(NOW) - 1)), MESSAGES_INBOUND, "expired"),
    (jwt(claims(api_key="someone-else")), MESSAGES_INBOUND, "api_key"),
])
def test_jwt_rejections(token: str | None, body: bytes, match: str) -> None:
    provider = VonageProvider(signature_secret=SECRET, signature_method="jwt", api_key="abcd1234")
    expect_rejection(lambda: provider.verify(jwt_request(token, body), now=NOW), 403, match)


def test_messages_api_status() -> None:
    body = {"message_uuid": "aaaa", "to": "447400123456", "from": "447700900001", "timestamp": "2023-11-14T22:13:20Z",
            "status": "rejected", "channel": "sms",
            "error": {"type": "https://developer.vonage.com/api-errors/messages#1320", "title": 1320,
                      "detail": "Message failed because the number is blocked"}}
    update = VonageProvider(signature_secret=SECRET).parse(WebhookRequest("POST", URL, {"content-type": JSON},
                                                                          json.dumps(body).encode()))
    assert isinstance(update, StatusUpdate)
    assert (update.status, update.provider_status, update.error_code, update.to.value) == (
        FAILED, "rejected", "1320", "+447400123456")
    assert update.error_message == "Message failed because the number is blocked"


# -- parsing ----------------------------------------------------------------------------------

def parse(params: dict, transport: str = "form") -> object:
    if transport == "get":
        request = WebhookRequest("GET", URL + "?" + urlencode(params))
    else:
        request = WebhookRequest("POST", URL, {"content-type": FORM}, form(params))
    return VonageProvider(signature_secret=SECRET).parse(request)


def test_inbound_fields() -> None:
    message = parse(signed_params())
    assert isinstance(message, InboundMessage)
    assert (message.provider, message.message_id, message.text, message.encoding, message.segments) == (
        "vonage", "0A0000000123ABCD1", "Hi & bye = ok", "GSM-7", 1)
    assert (message.from_.value, message.from_.kind, message.country) == ("+447400123456", PHONE, "GB")
    assert message.to.value == "+447700900001"
    assert message.account == "abcd1234"
    assert message.concat is None
    assert message.raw["keyword"] == "HI"


def test_unicode_and_binary_types() -> None:
    assert parse(signed_params(type="unicode", text="Привет")).encoding == "UCS-2"
    binary = parse(signed_params(type="binary", text="", data="0102", udh="050003CC0201"))
    assert (binary.encoding, binary.text, binary.segments) == ("binary", "", 1)


def test_concatenated_part() -> None:
    message = parse(signed_params(**{"concat": "true", "concat-ref": "108", "concat-total": "3", "concat-part": "2"}))
    assert message.concat == Concat("108", 3, 2)


@pytest.mark.parametrize("bad", [{"concat-part": "4"}, {"concat-total": "x"}, {"concat-ref": ""}])
def test_malformed_concat(bad: dict) -> None:
    params = signed_params(**{"concat": "true", "concat-ref": "108", "concat-total": "3", "concat-part": "2"})
    params.update(bad)
    expect_rejection(lambda: parse(params), 400, "concat")


@pytest.mark.parametrize(("status", "err", "normal", "error_code"), [
    ("delivered", "0", DELIVERED, None), ("accepted", "0", SENT, None), ("failed", "5", FAILED, "5")])
def test_delivery_receipts(status: str, err: str, normal: str, error_code: str | None) -> None:
    params = {"msisdn": "447400123456", "to": "AcmeInc", "network-code": "23410", "messageId": "0A00000001",
              "price": "0.03330000", "status": status, "scts": "2001011400", "err-code": err,
              "api-key": "abcd1234", "message-timestamp": "2020-01-01 12:00:00"}
    update = parse(params, "get")
    assert isinstance(update, StatusUpdate)
    assert (update.message_id, update.status, update.provider_status, update.error_code) == (
        "0A00000001", normal, status, error_code)
    assert update.to.value == "+447400123456" and update.account == "abcd1234"


@pytest.mark.parametrize("missing", ["messageId", "msisdn", "to"])
def test_missing_fields(missing: str) -> None:
    params = signed_params()
    del params[missing]
    expect_rejection(lambda: parse(params), 400, missing)


@pytest.mark.parametrize("body", [b"{", b"[1, 2]", b'"text"', b"\xff\xfe{"])
def test_bad_json(body: bytes) -> None:
    request = WebhookRequest("POST", URL, {"content-type": JSON}, body)
    expect_rejection(lambda: VonageProvider(signature_secret=SECRET).parse(request), 400)
    expect_rejection(lambda: VonageProvider(signature_secret=SECRET).verify(request, now=NOW), 400)


def test_no_inline_replies() -> None:
    provider = VonageProvider(signature_secret=SECRET)
    message = parse(signed_params())
    assert provider.supports_inline_reply is False and provider.reply_body(message, ["x"]) is None
    assert provider.respond(message).status == 204
    with pytest.raises(LocalProtocolError, match="sms.send"):
        provider.respond(message, ["hello"])
    assert provider.failure_response().status == 503 and provider.retry_policy.retries


@pytest.mark.parametrize(("settings", "match"), [
    ({"signature_method": "crc32", "signature_secret": "x"}, "signature_method"),
    ({}, "signature_secret"),
    ({"signature_secret": "x", "default_region": "XX"}, "region"),
    ({"signature_secret": "x", "base_url": "ftp://x"}, "base_url"),
    ({"signature_secret": "x", "timestamp_tolerance": 0}, "tolerance"),
])
def test_configuration_errors(settings: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        VonageProvider(**settings)


# -- sending ----------------------------------------------------------------------------------

def test_build_send() -> None:
    provider = VonageProvider(api_key="key", api_secret="secret", verify_signatures=False, default_from="AcmeInc")
    request = provider.build_send(OutboundMessage("+447400123456", "Привет", status_callback="https://gw/dlr"))
    assert (request.method, request.url) == ("POST", "https://rest.nexmo.com/sms/json")
    assert dict(request.headers)["content-type"] == FORM
    assert parse_qsl(request.body.decode()) == [
        ("api_key", "key"), ("api_secret", "secret"), ("from", "AcmeInc"), ("to", "447400123456"),
        ("text", "Привет"), ("type", "unicode"), ("callback", "https://gw/dlr"), ("status-report-req", "1")]
    plain = provider.build_send(OutboundMessage("+447400123456", "hi", from_="+447700900001"))
    assert dict(parse_qsl(plain.body.decode()))["from"] == "447700900001"
    assert "type" not in dict(parse_qsl(plain.body.decode()))


@pytest.mark.parametrize(("provider", "message", "match"), [
    (VonageProvider(verify_signatures=False), OutboundMessage("+447400123456", "x", "A"), "api_key"),
    (VonageProvider(verify_signatures=False, api_key="k", api_secret="s"),
     OutboundMessage("+447400123456", "x", "A", media_urls=("https://x/a.png",)), "media"),
])
def test_build_send_local_errors(provider: VonageProvider, message: OutboundMessage, match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        provider.build_send(message)


def test_parse_send_response_multipart() -> None:
    body = {"message-count": "2", "messages": [
        {"to": "447400123456", "message-id": "0A01", "status": "0", "remaining-balance": "3.14"},
        {"to": "447400123456", "message-id": "0A02", "status": "0", "remaining-balance": "3.11"}]}
    result = VonageProvider(verify_signatures=False).parse_send_response(200, {}, json.dumps(body).encode())
    assert (result.message_ids, result.segments, result.status) == (("0A01", "0A02"), 2, "queued")


@pytest.mark.parametrize(("status", "body", "code", "retryable"), [
    (200, {"message-count": "1", "messages": [{"status": "2", "error-text": "Missing to param"}]}, "2", False),
    (200, {"message-count": "1", "messages": [{"status": "1", "error-text": "Throttled"}]}, "1", True),
    (401, {"type": "https://developer.nexmo.com/api-errors#unauthorized", "title": "Unauthorized"}, None, False),
    (500, None, None, True),
    (200, {"messages": []}, None, False),
])
def test_parse_send_response_errors(status: int, body: object, code: str | None, retryable: bool) -> None:
    with pytest.raises(SendError) as info:
        VonageProvider(verify_signatures=False).parse_send_response(status, {}, json.dumps(body).encode())
    assert (info.value.code, info.value.retryable, info.value.http_status) == (code, retryable, status)


def test_join_parts_reassembles_a_concatenated_message() -> None:
    texts = {1: "a" * 153, 2: "Привет", 3: " end"}
    parts = [parse(signed_params(messageId=f"0A0{n}", text=texts[n], type="unicode" if n == 2 else "text",
                                 **{"concat": "true", "concat-ref": "7", "concat-total": "3", "concat-part": str(n)}))
             for n in (3, 1, 2)]
    whole = join_parts(parts)
    assert (whole.text, whole.segments, whole.encoding, whole.concat, whole.message_id) == (
        texts[1] + texts[2] + texts[3], 3, "UCS-2", None, "0A01")
    with pytest.raises(LocalProtocolError, match="do not make up"):
        join_parts(parts[:2])
    with pytest.raises(LocalProtocolError, match="do not make up"):
        join_parts(parts + [parts[0]])
    with pytest.raises(LocalProtocolError, match="concatenated"):
        join_parts([parse(signed_params())])
