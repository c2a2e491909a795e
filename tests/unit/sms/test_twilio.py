"""Twilio: X-Twilio-Signature (published vectors and self-signed requests), parsing, TwiML, sends."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl

import pytest

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.sms import (
    ALPHANUMERIC,
    DELIVERED,
    PHONE,
    QUEUED,
    SHORT_CODE,
    UNDELIVERED,
    UNKNOWN_STATUS,
    InboundMessage,
    Media,
    OutboundMessage,
    SendError,
    StatusUpdate,
    WebhookRequest,
)
from gateway.protocols.sms.providers.twilio import TwilioProvider, body_sha256, compute_signature, url_variants

from .helpers import FORM, NOW, expect_rejection, form

TOKEN = "12345"
VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675309"), ("Digits", "1234"),
                 ("From", "+14158675309"), ("To", "+18005551212")]
URL = "https://gw.example.com/sms/twilio"
INBOUND = [
    ("ToCountry", "US"), ("ToState", "CA"), ("SmsMessageSid", "SM0123456789abcdef0123456789abcdef"),
    ("NumMedia", "0"), ("ToCity", "SAN FRANCISCO"), ("FromZip", ""), ("SmsSid", "SM0123456789abcdef0123456789abcdef"),
    ("FromState", ""), ("SmsStatus", "received"), ("FromCity", ""), ("Body", "Hello & <welcome> 👋"),
    ("FromCountry", "GB"), ("To", "+14155552671"), ("ToZip", "94105"), ("NumSegments", "1"),
    ("MessageSid", "SM0123456789abcdef0123456789abcdef"), ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
    ("From", "+447400123456"), ("ApiVersion", "2010-04-01"),
]


# -- published vectors (twilio-python tests/unit/test_request_validator.py, Twilio docs) ----------

def test_vector_form_params() -> None:
    assert compute_signature(TOKEN, VECTOR_URL, VECTOR_PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_vector_url_with_port() -> None:
    url = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    assert compute_signature(TOKEN, url, VECTOR_PARAMS) == "kvajT1Ptam85bY51eRf/AJRuM3w="


def test_vector_older_docs_example() -> None:
    params = [(k, "+12349013030" if k in ("Caller", "From") else v) for k, v in VECTOR_PARAMS]
    assert compute_signature(TOKEN, VECTOR_URL, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", params


def test_vector_repeated_keys() -> None:
    params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert compute_signature(TOKEN, VECTOR_URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def test_vector_json_body_sha256() -> None:
    body = b'{"property": "value", "boolean": true}'
    assert body_sha256(body) == "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    url = VECTOR_URL + "&bodySHA256=" + body_sha256(body)
    assert compute_signature(TOKEN, url) == "a9nBmqA0ju/hNViExpshrM61xv4="


def test_vectors_pass_through_verify() -> None:
    provider = TwilioProvider(auth_token=TOKEN)
    request = WebhookRequest("POST", VECTOR_URL, {"X-Twilio-Signature": "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                                                  "Content-Type": FORM}, form(VECTOR_PARAMS))
    provider.verify(request, now=NOW)
    # The ':443' variant of the same request verifies too (Twilio is inconsistent about ports).
    ported = WebhookRequest("POST", VECTOR_URL, {"X-Twilio-Signature": "kvajT1Ptam85bY51eRf/AJRuM3w="},
                            form(VECTOR_PARAMS))
    provider.verify(ported, now=NOW)
    body = b'{"property": "value", "boolean": true}'
    json_request = WebhookRequest(
        "POST", VECTOR_URL + "&bodySHA256=" + body_sha256(body),
        [(b"x-twilio-signature", b"a9nBmqA0ju/hNViExpshrM61xv4="), (b"content-type", b"application/json")], body)
    provider.verify(json_request, now=NOW)


def test_url_variants() -> None:
    assert url_variants("https://h.example/p?q=1") == ["https://h.example/p?q=1", "https://h.example:443/p?q=1"]
    assert url_variants("http://h.example:8080/p") == ["http://h.example:8080/p", "http://h.example/p"]
    assert url_variants("https://[::1]/x") == ["https://[::1]/x", "https://[::1]:443/x"]


# -- self-signed requests ---------------------------------------------------------------------

def signed(params=INBOUND, url: str = URL, token: str = TOKEN, **changes) -> WebhookRequest:
    headers = {"X-Twilio-Signature": compute_signature(token, url, params), "Content-Type": FORM}
    return WebhookRequest(changes.get("method", "POST"), changes.get("request_url", url),
                          changes.get("headers", headers), changes.get("body", form(params)))


def test_valid_signature_is_accepted_and_parsed() -> None:
    message = TwilioProvider(auth_token=TOKEN).receive(signed(), now=NOW)
    assert isinstance(message, InboundMessage)
    assert message.text == "Hello & <welcome> 👋"


def test_wrong_secret() -> None:
    expect_rejection(lambda: TwilioProvider(auth_token=TOKEN).verify(signed(token="other"), now=NOW),
                     403, "does not match")


def test_tampered_body() -> None:
    tampered = [(k, "Hello & <welcome> 👋!" if k == "Body" else v) for k, v in INBOUND]
    request = signed(body=form(tampered))
    expect_rejection(lambda: TwilioProvider(auth_token=TOKEN).verify(request, now=NOW), 403)


def test_extra_parameter_is_tampering() -> None:
    request = signed(body=form(INBOUND + [("Extra", "1")]))
    expect_rejection(lambda: TwilioProvider(auth_token=TOKEN).verify(request, now=NOW), 403)


@pytest.mark.parametrize("other", [URL + "?x=1", "https://gw.example.com/sms/twilio2",
                                   "http://gw.example.com/sms/twilio", "https://evil.example.com/sms/twilio"])
def test_tampered_url(other: str) -> None:
    expect_rejection(lambda: TwilioProvider(auth_token=TOKEN).verify(signed(request_url=other), now=NOW), 403)


def test_missing_header() -> None:
    request = signed(headers={"Content-Type": FORM})
    expect_rejection(lambda: TwilioProvider(auth_token=TOKEN).verify(request, now=NOW), 403, "missing")


def test_json_body_without_body_hash_is_not_signed() -> None:
    request = WebhookRequest("POST", URL, {"X-Twilio-Signature": compute_signature(TOKEN, URL),
                                           "Content-Type": "application/json"}, b'{"a": "b"}')
    expect_rejection(lambda: TwilioProvider(auth_token=TOKEN).verify(request, now=NOW), 403, "bodySHA256")


def test_json_body_tampered_after_hashing() -> None:
    url = URL + "?bodySHA256=" + body_sha256(b'{"a": "b"}')
    request = WebhookRequest("POST", url, {"X-Twilio-Signature": compute_signature(TOKEN, url)}, b'{"a": "c"}')
    expect_rejection(lambda: TwilioProvider(auth_token=TOKEN).verify(request, now=NOW), 403, "bodySHA256")


def test_get_webhook_signs_the_url_only() -> None:
    url = URL + "?" + form(INBOUND).decode()
    request = WebhookRequest("GET", url, {"X-Twilio-Signature": compute_signature(TOKEN, url)})
    message = TwilioProvider(auth_token=TOKEN).receive(request, now=NOW)
    assert isinstance(message, InboundMessage) and message.from_.value == "+447400123456"


def test_verification_can_be_turned_off_explicitly() -> None:
    with pytest.raises(ValueError, match="auth_token"):
        TwilioProvider()
    provider = TwilioProvider(verify_signatures=False)
    assert isinstance(provider.receive(signed(headers={}), now=NOW), InboundMessage)


# -- parsing ----------------------------------------------------------------------------------

def test_inbound_fields() -> None:
    message = TwilioProvider(auth_token=TOKEN).parse(signed())
    assert message == InboundMessage(
        provider="twilio", message_id="SM0123456789abcdef0123456789abcdef",
        from_=message.from_, to=message.to, text="Hello & <welcome> 👋", encoding="UCS-2", segments=1,
        account="AC0123456789abcdef0123456789abcdef", country="GB",
    )
    assert (message.from_.value, message.from_.kind, message.from_.country) == ("+447400123456", PHONE, "GB")
    assert (message.to.value, message.to.country) == ("+14155552671", "US")
    assert message.raw["ApiVersion"] == "2010-04-01"
    assert message.dedup_key == "twilio:message:SM0123456789abcdef0123456789abcdef"


def test_segments_computed_when_twilio_omits_them() -> None:
    params = [(k, v) for k, v in INBOUND if k not in ("NumSegments", "Body")] + [("Body", "a" * 161)]
    message = TwilioProvider(auth_token=TOKEN).parse(signed(params))
    assert (message.encoding, message.segments) == ("GSM-7", 2)


def test_mms_media() -> None:
    params = [(k, v) for k, v in INBOUND if k != "NumMedia"] + [
        ("NumMedia", "2"), ("MediaUrl0", "https://api.twilio.com/m/ME1"), ("MediaContentType0", "image/jpeg"),
        ("MediaUrl1", "https://api.twilio.com/m/ME2"), ("MediaContentType1", "video/mp4")]
    message = TwilioProvider(auth_token=TOKEN).parse(signed(params))
    assert message.media == (Media("https://api.twilio.com/m/ME1", "image/jpeg"),
                             Media("https://api.twilio.com/m/ME2", "video/mp4"))


@pytest.mark.parametrize(("sender", "kind", "value"), [("MyBrand", ALPHANUMERIC, "MyBrand"),
                                                       ("88088", SHORT_CODE, "88088")])
def test_non_phone_senders_are_flagged(sender: str, kind: str, value: str) -> None:
    params = [(k, sender if k == "From" else v) for k, v in INBOUND]
    message = TwilioProvider(auth_token=TOKEN).parse(signed(params))
    assert (message.from_.kind, message.from_.value, message.country) == (kind, value, "GB")


@pytest.mark.parametrize("missing", ["MessageSid", "From", "To"])
def test_missing_fields(missing: str) -> None:
    drop = {"MessageSid", "SmsMessageSid", "SmsSid"} if missing == "MessageSid" else {missing}
    params = [(k, v) for k, v in INBOUND if k not in drop]
    expect_rejection(lambda: TwilioProvider(auth_token=TOKEN).parse(signed(params)), 400, missing)


@pytest.mark.parametrize("body", [b"Body=%ff", b"a&b", b"Body=\xff"])
def test_bad_form_encoding(body: bytes) -> None:
    request = WebhookRequest("POST", URL, {"Content-Type": FORM}, body)
    expect_rejection(lambda: TwilioProvider(auth_token=TOKEN).parse(request), 400)
    signed_request = WebhookRequest("POST", URL, {"X-Twilio-Signature": "x"}, body)
    expect_rejection(lambda: TwilioProvider(auth_token=TOKEN).verify(signed_request, now=NOW), 400)


def test_unexpected_method() -> None:
    expect_rejection(lambda: TwilioProvider(auth_token=TOKEN).parse(signed(method="PUT")), 405)


@pytest.mark.parametrize(("status", "normal", "error"), [("delivered", DELIVERED, None), ("queued", QUEUED, None),
                                                         ("undelivered", UNDELIVERED, "30003"),
                                                         ("brand_new_status", UNKNOWN_STATUS, None)])
def test_status_callbacks(status: str, normal: str, error: str | None) -> None:
    params = [("MessageSid", "SM1"), ("SmsSid", "SM1"), ("AccountSid", "AC1"), ("From", "+14155552671"),
              ("To", "+447400123456"), ("MessageStatus", status), ("SmsStatus", status), ("ApiVersion", "2010-04-01")]
    if error:
        params.append(("ErrorCode", error))
    update = TwilioProvider(auth_token=TOKEN).receive(signed(params), now=NOW)
    assert update == StatusUpdate(provider="twilio", message_id="SM1", status=normal, provider_status=status,
                                  error_code=error, to=update.to, account="AC1")
    assert update.to is not None and update.to.value == "+447400123456"
    assert update.dedup_key == f"twilio:status:SM1:{status}"


# -- replies ----------------------------------------------------------------------------------

def test_twiml_reply() -> None:
    provider = TwilioProvider(auth_token=TOKEN)
    message = provider.parse(signed())
    response = provider.respond(message, ["Thanks!", "a < b & c > d"])
    assert response.status == 200
    assert dict(response.headers)["content-type"].startswith("text/xml")
    assert response.body == ('<?xml version="1.0" encoding="UTF-8"?><Response><Message>Thanks!</Message>'
                             '<Message>a &lt; b &amp; c &gt; d</Message></Response>').encode()


def test_no_reply_is_an_empty_twiml_response() -> None:
    provider = TwilioProvider(auth_token=TOKEN)
    for event in (provider.parse(signed()), None):
        assert provider.respond(event).body == b'<?xml version="1.0" encoding="UTF-8"?><Response />'


def test_reply_text_xml_cannot_carry() -> None:
    provider = TwilioProvider(auth_token=TOKEN)
    with pytest.raises(LocalProtocolError, match="U\\+0001"):
        provider.respond(provider.parse(signed()), ["bad \x01"])


def test_no_inline_reply_to_an_alphanumeric_sender() -> None:
    provider = TwilioProvider(auth_token=TOKEN)
    message = provider.parse(signed([(k, "MyBrand" if k == "From" else v) for k, v in INBOUND]))
    with pytest.raises(LocalProtocolError, match="alphanumeric"):
        provider.respond(message, ["hi"])
    assert provider.respond(message).status == 200  # acknowledging it is fine


def test_texts_for_a_status_update_are_a_local_error() -> None:
    provider = TwilioProvider(auth_token=TOKEN)
    with pytest.raises(LocalProtocolError, match="sms.send"):
        provider.respond(StatusUpdate("twilio", "SM1", DELIVERED, "delivered"), ["hi"])


def test_failure_response_and_retry_policy() -> None:
    provider = TwilioProvider(auth_token=TOKEN)
    assert provider.failure_response().status == provider.retry_policy.failure_status == 503
    assert provider.retry_policy.retries is False and provider.retry_policy.deadline == 15.0


# -- sending ----------------------------------------------------------------------------------

def test_build_send() -> None:
    provider = TwilioProvider(auth_token="tok", account_sid="AC123", default_from="+14155550000",
                              base_url="http://127.0.0.1:9999/")
    outbound = OutboundMessage("+44 7400 123456", "Hi €", media_urls=("https://x/a.png", "https://x/b.png"),
                               status_callback="https://gw.example.com/status")
    request = provider.build_send(outbound)
    assert (request.method, request.url) == ("POST", "http://127.0.0.1:9999/2010-04-01/Accounts/AC123/Messages.json")
    headers = dict(request.headers)
    assert headers["authorization"] == "Basic " + base64.b64encode(b"AC123:tok").decode()
    assert headers["content-type"] == FORM
    assert parse_qsl(request.body.decode()) == [
        ("To", "+447400123456"), ("From", "+14155550000"), ("Body", "Hi €"), ("MediaUrl", "https://x/a.png"),
        ("MediaUrl", "https://x/b.png"), ("StatusCallback", "https://gw.example.com/status")]


def test_build_send_normalises_and_uses_api_key_or_service() -> None:
    provider = TwilioProvider(auth_token="tok", account_sid="AC123", api_key_sid="SK1", api_key_secret="sec",
                              messaging_service_sid="MG1", default_region="GB")
    request = provider.build_send(OutboundMessage("07400 123456", "Hi"))
    assert dict(request.headers)["authorization"] == "Basic " + base64.b64encode(b"SK1:sec").decode()
    assert request.url == "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages.json"
    assert dict(parse_qsl(request.body.decode())) == {"To": "+447400123456", "MessagingServiceSid": "MG1", "Body": "Hi"}


@pytest.mark.parametrize(("provider", "message", "match"), [
    (TwilioProvider(auth_token="t"), OutboundMessage("+14155552671", "x", "+1415"), "account_sid"),
    (TwilioProvider(auth_token="t", account_sid="AC1"), OutboundMessage("+14155552671", "x"), "sender"),
    (TwilioProvider(auth_token="t", account_sid="AC1"), OutboundMessage("MyBrand", "x", "+1"), "not a phone"),
    (TwilioProvider(verify_signatures=False, account_sid="AC1"), OutboundMessage("+14155552671", "x", "+1"),
     "auth_token"),
])
def test_build_send_local_errors(provider: TwilioProvider, message: OutboundMessage, match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        provider.build_send(message)


def test_parse_send_response_created() -> None:
    body = json.dumps({"sid": "SM9", "status": "queued", "num_segments": "2", "error_code": None}).encode()
    result = TwilioProvider(auth_token="t").parse_send_response(201, {"content-type": "application/json"}, body)
    assert (result.message_id, result.status, result.provider_status, result.segments) == ("SM9", QUEUED, "queued", 2)


@pytest.mark.parametrize(("status", "body", "code", "retryable"), [
    (400, {"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400}, "21211", False),
    (429, {"code": 20429, "message": "Too Many Requests", "status": 429}, "20429", True),
    (503, "<html>unavailable</html>", None, True),
    (201, {"status": "queued"}, None, False),
])
def test_parse_send_response_errors(status: int, body: object, code: str | None, retryable: bool) -> None:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    with pytest.raises(SendError) as info:
        TwilioProvider(auth_token="t").parse_send_response(status, (), raw)
    assert (info.value.provider, info.value.http_status, info.value.code, info.value.retryable) == (
        "twilio", status, code, retryable)
    if isinstance(body, dict) and "message" in body:
        assert info.value.message == body["message"]
