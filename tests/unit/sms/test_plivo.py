"""Plivo: X-Plivo-Signature-V3 (vectors checked against plivo-python 4.63.0), parsing, XML, sends."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import pytest

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.sms import (
    DELIVERED,
    QUEUED,
    UNDELIVERED,
    UNKNOWN_STATUS,
    InboundMessage,
    Media,
    OutboundMessage,
    SendError,
    StatusUpdate,
    WebhookRequest,
)
from gateway.protocols.sms.providers.plivo import PlivoProvider, compute_signature_v3, signature_base_v3

from .helpers import FORM, NOW, expect_rejection, form

TOKEN = "MYAUTHTOKEN"
NONCE = "12345678901234567890"
PARAMS = [("From", "14155550100"), ("To", "14155550199"), ("Text", "hello"), ("Type", "sms"),
          ("MessageUUID", "1f0a1e2c-0000-4000-8000-000000000000")]
URL = "https://gw.example.com/sms/plivo"


@pytest.mark.parametrize(("url", "expected"), [
    (URL, "lNsuoDLRCt/TQoALW1k5zFee/uRFMAdDmXWo1IjUbOM="),
    (URL + "?tenant=a&b=2", "NH0CDtFKeb57gtOsrbcL5HP9drfD5aaqz/pEZM86hew="),
])
def test_vectors(url: str, expected: str) -> None:
    assert compute_signature_v3(TOKEN, "POST", url, NONCE, PARAMS) == expected
    request = WebhookRequest("POST", url, {"X-Plivo-Signature-V3": expected, "X-Plivo-Signature-V3-Nonce": NONCE,
                                           "Content-Type": FORM}, form(PARAMS))
    assert isinstance(PlivoProvider(auth_token=TOKEN).receive(request, now=NOW), InboundMessage)


def test_signature_base_shapes() -> None:
    assert signature_base_v3("POST", URL, PARAMS) == (
        URL + "?From14155550100MessageUUID1f0a1e2c-0000-4000-8000-000000000000Text" + "helloTo14155550199Typesms")
    assert signature_base_v3("POST", URL + "?b=2&a=1&a=0", [("X", "1")]) == URL + "?a=0&a=1&b=2.X1"
    assert signature_base_v3("POST", URL + "?b=2", []) == URL + "?b=2"
    assert signature_base_v3("POST", URL, []) == URL
    assert signature_base_v3("GET", URL + "?b=2&a=x%20y", [("ignored", "1")]) == URL + "?a=x y&b=2"
    assert signature_base_v3("GET", URL, []) == URL


def plivo_python_signature(token: str, uri: str, nonce: str, params: dict[str, str]) -> str:
    """An independent transcription of plivo-python 4.x ``validate_v3_signature`` for POST, which
    reads the UTF-8 of non-ASCII parameters back as Latin-1 and encodes it again."""
    parsed = urlparse(uri.encode("utf-8"))
    base = urlunparse((parsed.scheme.decode(), parsed.netloc.decode(), parsed.path.decode(), "", "", "")).encode()
    query = {k.decode("latin-1"): [x.decode("latin-1") for x in v]
             for k, v in parse_qs(parsed.query, keep_blank_values=True).items()}
    query_string = "&".join("&".join(f"{k}={v}" for v in sorted(query[k])) for k in sorted(query))
    base += ("?" + query_string).encode() if query_string or params else b""
    base += b"." if query_string and params else b""
    base += "".join(f"{k}{params[k]}" for k in sorted(params)).encode("utf-8")
    data = f"{base.decode('latin-1')}.{nonce}".encode("utf-8")
    return base64.b64encode(hmac.new(token.encode(), data, hashlib.sha256).digest()).decode()


def test_independent_transcription_agrees_on_the_vectors() -> None:
    assert plivo_python_signature(TOKEN, URL, NONCE, dict(PARAMS)) == "lNsuoDLRCt/TQoALW1k5zFee/uRFMAdDmXWo1IjUbOM="


@pytest.mark.parametrize("text", ["héllo wörld", "Привет 👋", "€ [x]"])
def test_non_ascii_text_signed_either_way_is_accepted(text: str) -> None:
    params = [(k, text if k == "Text" else v) for k, v in PARAMS]
    provider = PlivoProvider(auth_token=TOKEN)
    node_style = compute_signature_v3(TOKEN, "POST", URL, NONCE, params)
    python_style = plivo_python_signature(TOKEN, URL, NONCE, dict(params))
    assert node_style != python_style  # the two SDKs really disagree on non-ASCII
    for signature in (node_style, python_style):
        request = WebhookRequest("POST", URL, {"X-Plivo-Signature-V3": signature,
                                               "X-Plivo-Signature-V3-Nonce": NONCE}, form(params))
        assert provider.receive(request, now=NOW).text == text


def signed(params=PARAMS, url: str = URL, token: str = TOKEN, header: str = "X-Plivo-Signature-V3",
           **changes) -> WebhookRequest:
    headers = {header: compute_signature_v3(token, "POST", url, NONCE, params),
               "X-Plivo-Signature-V3-Nonce": NONCE, "Content-Type": FORM}
    headers.update(changes.get("extra_headers", {}))
    for name in changes.get("drop", ()):
        headers.pop(name)
    return WebhookRequest("POST", changes.get("request_url", url), headers, changes.get("body", form(params)))


def test_comma_separated_signature_list() -> None:
    good = compute_signature_v3(TOKEN, "POST", URL, NONCE, PARAMS)
    request = signed(extra_headers={"X-Plivo-Signature-V3": f"bm9wZQ==, {good}"})
    PlivoProvider(auth_token=TOKEN).verify(request, now=NOW)


def test_main_account_signature() -> None:
    request = signed(token="MAINTOKEN", header="X-Plivo-Signature-Ma-V3")
    PlivoProvider(auth_token="SUBTOKEN", main_auth_token="MAINTOKEN").verify(request, now=NOW)
    expect_rejection(lambda: PlivoProvider(auth_token="SUBTOKEN").verify(request, now=NOW), 403)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"token": "WRONG"}, "does not match"),
    ({"body": form([(k, "hellO" if k == "Text" else v) for k, v in PARAMS])}, "does not match"),
    ({"request_url": URL + "?x=1"}, "does not match"),
    ({"request_url": "https://gw.example.com/sms/other"}, "does not match"),
    ({"drop": ["X-Plivo-Signature-V3-Nonce"]}, "missing"),
    ({"drop": ["X-Plivo-Signature-V3"]}, "missing"),
    ({"extra_headers": {"X-Plivo-Signature-V3-Nonce": "99999999999999999999"}}, "does not match"),
])
def test_rejections(kwargs: dict, match: str) -> None:
    expect_rejection(lambda: PlivoProvider(auth_token=TOKEN).verify(signed(**kwargs), now=NOW), 403, match)


def test_v2_signature_alone_is_not_accepted() -> None:
    v2 = base64.b64encode(hmac.new(TOKEN.encode(), (URL + NONCE).encode(), hashlib.sha256).digest()).decode()
    request = WebhookRequest("POST", URL, {"X-Plivo-Signature-V2": v2, "X-Plivo-Signature-V2-Nonce": NONCE},
                             form(PARAMS))
    expect_rejection(lambda: PlivoProvider(auth_token=TOKEN).verify(request, now=NOW), 403)


def test_get_callback() -> None:
    url = URL + "?" + urlencode([("MessageUUID", "m1"), ("Status", "delivered"), ("To", "14155550100")])
    request = WebhookRequest("GET", url, {"X-Plivo-Signature-V3": compute_signature_v3(TOKEN, "GET", url, NONCE),
                                          "X-Plivo-Signature-V3-Nonce": NONCE})
    update = PlivoProvider(auth_token=TOKEN).receive(request, now=NOW)
    assert isinstance(update, StatusUpdate) and update.status == DELIVERED


# -- parsing ----------------------------------------------------------------------------------

def test_inbound_fields() -> None:
    params = PARAMS + [("Units", "1"), ("TotalRate", "0"), ("TotalAmount", "0"), ("MessageIntent", ""),
                       ("PowerpackUUID", "")]
    message = PlivoProvider(auth_token=TOKEN).parse(signed(params))
    assert (message.message_id, message.text, message.encoding, message.segments) == (
        "1f0a1e2c-0000-4000-8000-000000000000", "hello", "GSM-7", 1)
    assert (message.from_.value, message.to.value, message.country) == ("+14155550100", "+14155550199", "US")


def test_inbound_mms() -> None:
    params = [("From", "14155550100"), ("To", "14155550199"), ("Type", "mms"), ("Body", "look"),
              ("MessageUUID", "m2"), ("MediaCount", "2"), ("Media2", "https://media.plivo.com/b"),
              ("Media1", "https://media.plivo.com/a")]
    message = PlivoProvider(auth_token=TOKEN).parse(signed(params))
    assert message.text == "look"
    assert message.media == (Media("https://media.plivo.com/a"), Media("https://media.plivo.com/b"))


@pytest.mark.parametrize(("status", "code", "normal", "error"), [
    ("delivered", "000", DELIVERED, None), ("queued", "", QUEUED, None),
    ("undelivered", "200", UNDELIVERED, "200"), ("mystery", "", UNKNOWN_STATUS, None)])
def test_status_callbacks(status: str, code: str, normal: str, error: str | None) -> None:
    params = [("MessageUUID", "m1"), ("From", "14155550199"), ("To", "447400123456"), ("Type", "sms"),
              ("Status", status), ("Units", "2"), ("ErrorCode", code), ("Sequence", "3")]
    update = PlivoProvider(auth_token=TOKEN).parse(signed(params))
    assert update == StatusUpdate("plivo", "m1", normal, status, error_code=error, to=update.to, segments=2)
    assert update.to.value == "+447400123456"


@pytest.mark.parametrize("missing", ["MessageUUID", "From", "To"])
def test_missing_fields(missing: str) -> None:
    params = [(k, v) for k, v in PARAMS if k != missing]
    expect_rejection(lambda: PlivoProvider(auth_token=TOKEN).parse(signed(params)), 400, missing)


def test_malformed_body_is_400_in_verify_and_parse() -> None:
    request = signed(body=b"From=%E0%A4%A&To")
    expect_rejection(lambda: PlivoProvider(auth_token=TOKEN).verify(request, now=NOW), 400)
    expect_rejection(lambda: PlivoProvider(auth_token=TOKEN).parse(request), 400)


# -- replies and sends ------------------------------------------------------------------------

def test_message_xml_reply() -> None:
    provider = PlivoProvider(auth_token=TOKEN)
    response = provider.respond(provider.parse(signed()), ["Got it", "x<y"])
    assert response.status == 200 and dict(response.headers)["content-type"].startswith("application/xml")
    assert response.body == (
        b'<?xml version="1.0" encoding="utf-8"?><Response>'
        b'<Message src="14155550199" dst="14155550100" type="sms">Got it</Message>'
        b'<Message src="14155550199" dst="14155550100" type="sms">x&lt;y</Message></Response>')
    assert provider.respond(None).body == b'<?xml version="1.0" encoding="utf-8"?><Response></Response>'


def test_build_send() -> None:
    provider = PlivoProvider(auth_id="MA123", auth_token="tok", default_from="+14155550199")
    request = provider.build_send(OutboundMessage("+447400123456", "hi", media_urls=("https://x/a.png",),
                                                  status_callback="https://gw/status"))
    assert (request.method, request.url) == ("POST", "https://api.plivo.com/v1/Account/MA123/Message/")
    assert dict(request.headers)["authorization"] == "Basic " + base64.b64encode(b"MA123:tok").decode()
    assert json.loads(request.body) == {"src": "14155550199", "dst": "447400123456", "text": "hi", "type": "mms",
                                        "media_urls": ["https://x/a.png"], "url": "https://gw/status",
                                        "method": "POST"}
    with pytest.raises(LocalProtocolError, match="auth_id"):
        PlivoProvider(auth_token="tok").build_send(OutboundMessage("+447400123456", "hi", "+1"))


def test_parse_send_response() -> None:
    body = {"api_id": "a1", "message": "message(s) queued", "message_uuid": ["u1"]}
    result = PlivoProvider(auth_token="t").parse_send_response(202, {}, json.dumps(body).encode())
    assert (result.message_ids, result.status) == (("u1",), QUEUED)
    for status, answer, retryable in [(400, {"api_id": "a", "error": "invalid dst"}, False),
                                      (401, {"api_id": "a", "error": {"message": "Authentication failed"}}, False),
                                      (500, {}, True), (202, {"api_id": "a"}, False)]:
        with pytest.raises(SendError) as info:
            PlivoProvider(auth_token="t").parse_send_response(status, {}, json.dumps(answer).encode())
        assert (info.value.http_status, info.value.retryable) == (status, retryable)
        if status == 400:
            assert info.value.message == "invalid dst"
        if status == 401:
            assert info.value.message == "Authentication failed"
