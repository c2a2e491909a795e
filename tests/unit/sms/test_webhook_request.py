"""WebhookRequest (what the adapter supplies), the provider registry, and shared behaviour."""

from __future__ import annotations

import pytest

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.sms import PROVIDERS, InboundMessage, StatusUpdate, WebhookRequest, create_provider
from gateway.protocols.sms.providers.base import Provider
from gateway.protocols.sms.core import MAX_FORM_FIELDS

from .helpers import expect_rejection


def test_headers_from_mapping_or_byte_pairs() -> None:
    by_mapping = WebhookRequest("post", "https://h/x", {"X-Twilio-Signature": "abc", b"Content-Type": b"text/plain"})
    pairs = [(b"x-twilio-signature", b"abc"), ("content-type", "text/plain")]
    by_pairs = WebhookRequest("POST", "https://h/x", pairs)
    assert by_mapping == by_pairs
    assert by_mapping.method == "POST"
    assert by_mapping.header("X-TWILIO-SIGNATURE") == "abc"
    assert by_mapping.header("missing") is None


def test_repeated_headers_are_joined() -> None:
    request = WebhookRequest("POST", "https://h/x", [("x-a", "1"), ("X-A", "2")])
    assert request.header("x-a") == "1,2"


def test_latin1_header_bytes() -> None:
    assert WebhookRequest("POST", "https://h/x", [(b"x-a", b"caf\xe9")]).header("x-a") == "café"


def test_media_type() -> None:
    request = WebhookRequest("POST", "https://h/x", {"Content-Type": "Application/JSON; charset=UTF-8"})
    assert request.media_type == "application/json" and request.is_json
    assert WebhookRequest("POST", "https://h/x", {"content-type": "application/vnd.api+json"}).is_json
    assert WebhookRequest("POST", "https://h/x").media_type == ""


@pytest.mark.parametrize("url", ["/sms/twilio", "gw.example.com/sms", "ftp://h/x", "https:///x"])
def test_url_must_be_absolute(url: str) -> None:
    with pytest.raises(LocalProtocolError, match="absolute public URL"):
        WebhookRequest("POST", url)


def test_form_and_query_parsing() -> None:
    request = WebhookRequest("POST", "https://h/x?a=1&a=2&b=&c", {}, b"Body=Hi+there%21&Empty=&Body=2")
    assert request.query == (("a", "1"), ("a", "2"), ("b", ""), ("c", ""))
    assert request.form == (("Body", "Hi there!"), ("Empty", ""), ("Body", "2"))
    assert request.params() == request.form
    assert WebhookRequest("GET", "https://h/x?a=1").params() == (("a", "1"),)
    assert WebhookRequest("POST", "https://h/x").form == ()


@pytest.mark.parametrize("body", [b"a", b"a=%ff", b"a=\xff", b"&&&", b"a=1&b", b"a=%C3"])
def test_bad_form_bodies(body: bytes) -> None:
    expect_rejection(lambda: WebhookRequest("POST", "https://h/x", {}, body).form, 400)


def test_form_field_limit() -> None:
    body = "&".join(f"k{i}=v" for i in range(MAX_FORM_FIELDS + 1)).encode()
    expect_rejection(lambda: WebhookRequest("POST", "https://h/x", {}, body).form, 400)
    url = "https://h/x?" + "&".join(f"k{i}=v" for i in range(MAX_FORM_FIELDS + 1))
    expect_rejection(lambda: WebhookRequest("GET", url).query, 400)


@pytest.mark.parametrize("body", [b"", b"{", b"[" * 100_000, b"\xff", b"NaN-ish", b'{"a": 1e999999}x'])
def test_bad_json_bodies(body: bytes) -> None:
    expect_rejection(lambda: WebhookRequest("POST", "https://h/x", {}, body).json_body, 400)


def test_json_object_requires_an_object() -> None:
    assert WebhookRequest("POST", "https://h/x", {}, b'{"a": [1]}').json_object() == {"a": [1]}
    expect_rejection(lambda: WebhookRequest("POST", "https://h/x", {}, b"[1]").json_object(), 400, "object")


def test_registry() -> None:
    assert sorted(PROVIDERS) == ["generic", "plivo", "telnyx", "twilio", "vonage"]
    provider = create_provider("twilio", auth_token="t", default_region="gb")
    assert provider.name == "twilio" and provider.default_region == "GB"
    with pytest.raises(ValueError, match="unknown SMS provider"):
        create_provider("sinch")
    with pytest.raises(ValueError, match="auth_tokn"):
        create_provider("twilio", auth_tokn="t")


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_every_provider_documents_its_retry_behaviour(name: str) -> None:
    cls = PROVIDERS[name]
    policy = cls.retry_policy
    assert policy.failure_status >= 500 and policy.summary
    assert issubclass(cls, Provider)
    provider = cls(verify_signatures=False)
    assert provider.failure_response().status == policy.failure_status
    assert cls.supports_inline_reply == (name in ("twilio", "plivo", "generic"))


@pytest.mark.parametrize(("hint", "status"), [(403, 403), (400, 400), (405, 405), (None, 400), ("x", 400)])
def test_error_response(hint: object, status: int) -> None:
    response = Provider.error_response(RemoteProtocolError("nope", hint=hint))
    assert response.status == status and response.body == b"nope\n"


def test_events_are_immutable_and_raw_is_read_only() -> None:
    provider = create_provider("generic", verify_signatures=False)
    event = provider.parse(WebhookRequest("POST", "https://h/x", {}, b'{"type":"status","id":"1","status":"sent"}'))
    assert isinstance(event, StatusUpdate) and not isinstance(event, InboundMessage)
    with pytest.raises(AttributeError):
        event.status = "delivered"  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.raw["status"] = "x"  # type: ignore[index]
    assert hash(event) == hash(StatusUpdate("generic", "1", "sent", "sent"))
