"""Property tests: hostile input only ever raises RemoteProtocolError; sign-then-verify round trips."""

from __future__ import annotations

import base64
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.protocols.errors import RemoteProtocolError
from gateway.protocols.sms import InboundMessage, WebhookRequest
from gateway.protocols.sms.providers.generic import GenericProvider
from gateway.protocols.sms.providers.generic import compute_signature as generic_signature
from gateway.protocols.sms.providers.plivo import PlivoProvider, compute_signature_v3
from gateway.protocols.sms.providers.telnyx import TelnyxProvider
from gateway.protocols.sms.providers.twilio import TwilioProvider
from gateway.protocols.sms.providers.twilio import compute_signature as twilio_signature
from gateway.protocols.sms.providers.vonage import VonageProvider
from gateway.protocols.sms.providers.vonage import compute_signature as vonage_signature
from tests.strategies import sms as sms_st

from .helpers import NOW, form
from .test_telnyx import KEY, PUBLIC

HEADER_NAMES = ["x-twilio-signature", "x-plivo-signature-v3", "x-plivo-signature-v3-nonce",
                "x-plivo-signature-ma-v3", "telnyx-signature-ed25519", "telnyx-timestamp", "authorization",
                "x-sms-signature", "x-sms-timestamp"]

PROVIDERS = [
    TwilioProvider(auth_token="tok"),
    VonageProvider(signature_secret="sec"),
    VonageProvider(signature_secret="sec", signature_method="jwt"),
    PlivoProvider(auth_token="tok"),
    TelnyxProvider(public_key=PUBLIC),
    GenericProvider(secret="sec"),
]
UNVERIFIED = [type(p)(verify_signatures=False) for p in PROVIDERS]

# The round-trip properties are cheap to satisfy; cap them so the ci profile stays well under a
# minute on a loaded 2-core machine (the hostile-input property keeps the profile's full count).
capped = settings(max_examples=min(settings.default.max_examples, 150))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(method=st.sampled_from(["POST", "GET", "PUT"]), url=sms_st.urls(),
       headers=sms_st.headers_with(HEADER_NAMES), body=sms_st.bodies,
       now=st.floats(min_value=0, max_value=4e9))
def test_arbitrary_requests_only_raise_remote_protocol_error(method, url, headers, body, now) -> None:
    request = WebhookRequest(method, url, headers, body)
    for provider in PROVIDERS + UNVERIFIED:
        try:
            provider.receive(request, now=now)
        except RemoteProtocolError as error:
            assert error.hint in (400, 403, 405, 415)
        try:
            provider.parse(request)
        except RemoteProtocolError as error:
            assert error.hint in (400, 405)


@capped
@given(fields=st.dictionaries(st.sampled_from(["MessageSid", "From", "To", "Body", "NumMedia", "NumSegments",
                                              "MessageStatus", "SmsStatus", "MediaUrl0", "FromCountry",
                                              "msisdn", "to", "messageId", "text", "type", "status", "concat",
                                              "concat-ref", "concat-total", "concat-part", "MessageUUID",
                                              "Status", "Text", "Media1", "Units", "ErrorCode"]),
                              sms_st.text, max_size=12))
def test_field_combinations_only_raise_remote_protocol_error(fields: dict[str, str]) -> None:
    body = form(fields)
    for provider in UNVERIFIED[:4]:
        for request in (WebhookRequest("POST", "https://h/x", {}, body),
                        WebhookRequest("POST", "https://h/x", {"content-type": "application/json"},
                                       json.dumps(fields).encode())):
            try:
                provider.parse(request)
            except RemoteProtocolError as error:
                assert error.hint == 400


@capped
@given(url=sms_st.urls(), params=sms_st.params)
def test_twilio_sign_then_verify(url: str, params: list[tuple[str, str]]) -> None:
    provider = TwilioProvider(auth_token="tok")
    request = WebhookRequest("POST", url, {"x-twilio-signature": twilio_signature("tok", url, params)}, form(params))
    provider.verify(request, now=NOW)


@capped
@given(url=sms_st.urls(), params=sms_st.params, nonce=st.text(alphabet="0123456789", min_size=1, max_size=20))
def test_plivo_sign_then_verify(url: str, params: list[tuple[str, str]], nonce: str) -> None:
    signature = compute_signature_v3("tok", "POST", url, nonce, params)
    request = WebhookRequest("POST", url, {"x-plivo-signature-v3": signature, "x-plivo-signature-v3-nonce": nonce},
                             form(params))
    PlivoProvider(auth_token="tok").verify(request, now=NOW)


@capped
@given(params=st.dictionaries(sms_st.keys, sms_st.text, max_size=8),
       method=st.sampled_from(["md5hash", "md5", "sha1", "sha256", "sha512"]),
       skew=st.integers(min_value=-300, max_value=300))
def test_vonage_sign_then_verify(params: dict[str, str], method: str, skew: int) -> None:
    params = {k: v for k, v in params.items() if k not in ("sig", "timestamp")}
    params["timestamp"] = str(int(NOW))
    params["sig"] = vonage_signature("sec", params, method)
    request = WebhookRequest("POST", "https://h/x", {}, form(params))
    VonageProvider(signature_secret="sec", signature_method=method).verify(request, now=NOW + skew)


@given(body=st.binary(max_size=500), skew=st.integers(min_value=-300, max_value=300))
def test_telnyx_sign_then_verify(body: bytes, skew: int) -> None:
    stamp = str(int(NOW))
    signature = base64.b64encode(KEY.sign(stamp.encode() + b"|" + body)).decode()
    request = WebhookRequest("POST", "https://h/x", {"telnyx-signature-ed25519": signature,
                                                     "telnyx-timestamp": stamp}, body)
    TelnyxProvider(public_key=PUBLIC).verify(request, now=NOW + skew)


@given(text=sms_st.text, sender=st.sampled_from(["+447400123456", "447400123456", "MyBrand", "88088"]))
def test_generic_sign_verify_parse(text: str, sender: str) -> None:
    body = json.dumps({"type": "message", "id": "x", "from": sender, "to": "+441134960000", "text": text}).encode()
    stamp = str(int(NOW))
    request = WebhookRequest("POST", "https://h/x", {"x-sms-signature": generic_signature("sec", stamp, body),
                                                     "x-sms-timestamp": stamp}, body)
    message = GenericProvider(secret="sec").receive(request, now=NOW)
    assert isinstance(message, InboundMessage) and message.text == text


def _xml_safe(text: str) -> bool:
    return all((c >= " " or c in "\t\n\r") and c not in "\ufffe\uffff" for c in text)


@given(texts=st.lists(sms_st.text.filter(_xml_safe), max_size=3))
def test_twiml_replies_are_well_formed_xml(texts: list[str]) -> None:
    import xml.etree.ElementTree as ET

    body = TwilioProvider.twiml(texts)
    root = ET.fromstring(body)
    assert root.tag == "Response"
    # XML normalises CR and CRLF to LF in character data.
    assert [m.text or "" for m in root] == [t.replace("\r\n", "\n").replace("\r", "\n") for t in texts]


@capped
@given(telnyx=sms_st.telnyx_documents, generic=sms_st.generic_documents, vonage=sms_st.vonage_documents)
def test_structured_json_only_raises_remote_protocol_error(telnyx: bytes, generic: bytes, vonage: bytes) -> None:
    for provider, body in ((UNVERIFIED[4], telnyx), (UNVERIFIED[5], generic), (UNVERIFIED[1], vonage)):
        request = WebhookRequest("POST", "https://h/x", {"content-type": "application/json"}, body)
        try:
            event = provider.parse(request)
        except RemoteProtocolError as error:
            assert error.hint == 400
        else:
            assert event.provider == provider.name


@capped
@given(url=sms_st.urls(), params=sms_st.params.filter(bool), data=st.data())
def test_twilio_any_changed_value_is_rejected(url: str, params: list[tuple[str, str]], data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(params) - 1))
    key, value = params[index]
    changed = data.draw(sms_st.text.filter(lambda v: v != value))
    tampered = params[:index] + [(key, changed)] + params[index + 1:]
    if sorted(set(tampered)) == sorted(set(params)):
        return  # the change duplicated another pair: same signed content
    request = WebhookRequest("POST", url, {"x-twilio-signature": twilio_signature("tok", url, params)},
                             form(tampered))
    try:
        TwilioProvider(auth_token="tok").verify(request, now=NOW)
    except RemoteProtocolError as error:
        assert error.hint == 403
    else:
        raise AssertionError("a tampered Twilio request verified")


@given(body=st.binary(min_size=1, max_size=300), data=st.data())
def test_telnyx_any_flipped_bit_is_rejected(body: bytes, data: st.DataObject) -> None:
    stamp = str(int(NOW))
    signature = base64.b64encode(KEY.sign(stamp.encode() + b"|" + body)).decode()
    position = data.draw(st.integers(min_value=0, max_value=len(body) * 8 - 1))
    flipped = bytearray(body)
    flipped[position // 8] ^= 1 << (position % 8)
    request = WebhookRequest("POST", "https://h/x", {"telnyx-signature-ed25519": signature,
                                                     "telnyx-timestamp": stamp}, bytes(flipped))
    try:
        TelnyxProvider(public_key=PUBLIC).verify(request, now=NOW)
    except RemoteProtocolError as error:
        assert error.hint == 403
    else:
        raise AssertionError("a tampered Telnyx request verified")
