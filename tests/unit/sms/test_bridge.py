"""The webhook bridge in-process: verification, public URL, scopes, bad input."""

from __future__ import annotations

import pytest

from gateway.protocols.sms.testhook import sign_test_webhook

from .bridge_harness import PROVIDERS, SUCCESS, Harness, Recorder, hook


@pytest.mark.parametrize("provider", PROVIDERS)
def test_signed_message_reaches_the_application_once_with_the_scope(harness: Harness, recorder: Recorder,
                                                                    provider: str) -> None:
    status, _, _ = harness.post(hook(harness, provider, text="héllo ✓", from_="+14155550123",
                                     to="+441134960000", message_id="id-1"))
    assert status == SUCCESS[provider]
    [(scope, event)] = recorder.deliveries
    assert scope["type"] == "sms" and scope["kind"] == "message"
    assert (scope["provider"], scope["account"]) == (provider, provider)
    assert (scope["from"], scope["to"], scope["country"]) == ("+14155550123", "+441134960000", "US")
    assert scope["message_id"] == "id-1" and scope["state"] == {"booted": "yes"}
    assert scope["asgi"]["spec_version"] == "1.0"
    assert event["type"] == "sms.receive" and event["text"] == "héllo ✓"
    assert event["encoding"] == "UCS-2" and event["segments"] == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_status_callback_becomes_sms_status(harness: Harness, recorder: Recorder, provider: str) -> None:
    status, _, _ = harness.post(hook(harness, provider, kind="status", status="delivered", message_id="out-9",
                                     from_="+441134960000", to="+14155550123"))
    assert status == SUCCESS[provider]
    [(scope, event)] = recorder.deliveries
    assert scope["kind"] == "status" and scope["message_id"] == "out-9"
    assert (scope["from"], scope["to"]) == ("+441134960000", "+14155550123")
    assert event["type"] == "sms.status" and event["status"] == "delivered" and event["to"] == "+14155550123"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unsigned_and_wrongly_signed_are_403_and_never_reach_the_application(harness: Harness, recorder: Recorder,
                                                                            provider: str) -> None:
    good = hook(harness, provider)
    unsigned = [(k, v) for k, v in good.headers if k == "content-type"]
    body = good.body
    if provider == "vonage":  # the signature is a body parameter
        body = b"&".join(p for p in body.split(b"&") if not p.startswith(b"sig="))
    assert harness.request("POST", good.url, unsigned, body)[0] == 403
    wrong = sign_test_webhook(provider, good.url, **{k: (b"\x07" * 32 if isinstance(v, bytes) else "wrong")
                                                     for k, v in harness.credentials(provider).items()
                                                     if k != "signature_method"},
                              **({"signature_method": "sha256"} if provider == "vonage" else {}))
    assert harness.post(wrong)[0] == 403
    tampered = good.body.replace(b"Hello", b"Jello")
    assert tampered != good.body
    assert harness.request("POST", good.url, good.headers, tampered)[0] == 403
    assert recorder.deliveries == []


@pytest.mark.parametrize("provider", ["vonage", "telnyx", "generic"])
def test_replayed_requests_outside_the_window_are_403(harness: Harness, recorder: Recorder, provider: str) -> None:
    import time

    old = hook(harness, provider, now=time.time() - 3600)
    status, _, body = harness.post(old)
    assert status == 403 and (b"stale" in body or b"iat" in body)
    assert recorder.deliveries == []


def test_signed_url_must_be_the_public_one(recorder: Recorder) -> None:
    h = Harness(recorder)
    try:
        signed_for_other_host = sign_test_webhook("twilio", "https://elsewhere.example.org/twilio", auth_token="tw-token")
        # Same path, posted to our listener: the URL we rebuild is the configured public one.
        assert h.request("POST", h.url("twilio"), signed_for_other_host.headers, signed_for_other_host.body)[0] == 403
        assert recorder.deliveries == []
    finally:
        h.close()


def test_without_public_url_only_a_trusted_proxy_gives_the_url(recorder: Recorder) -> None:
    h = Harness(recorder, public=None, proxies=["10.0.0.0/8"])
    try:
        signed = sign_test_webhook("twilio", "https://hooks.example.com/twilio", auth_token="tw-token")
        forwarded = [*signed.headers, ("x-forwarded-proto", "https"), ("x-forwarded-host", "hooks.example.com")]
        # From an untrusted peer the Host header (and forged proxy headers) are not believed.
        status, _, _ = h.request("POST", "http://hooks.example.com/twilio", forwarded, signed.body,
                                 client=("203.0.113.7", 5000))
        assert status == 403
        status, _, _ = h.request("POST", "http://internal:8080/twilio", forwarded, signed.body,
                                 client=("10.1.2.3", 5000))
        assert status == 200
        # A trusted proxy that passes Host on and only says the scheme.
        again = sign_test_webhook("twilio", "https://hooks.example.com/twilio", auth_token="tw-token")
        status, _, _ = h.request("POST", "http://hooks.example.com/twilio",
                                 [*again.headers, ("x-forwarded-proto", "https")], again.body,
                                 client=("10.1.2.3", 5000))
        assert status == 200
        assert len(recorder.deliveries) == 2
    finally:
        h.close()


def test_forwarded_port_is_part_of_the_signed_url(recorder: Recorder) -> None:
    h = Harness(recorder, public=None, proxies=["10.0.0.0/8"])
    try:
        signed = sign_test_webhook("plivo", "https://hooks.example.com:8443/plivo", auth_token="pl-token")
        headers = [*signed.headers, ("x-forwarded-proto", "https"), ("x-forwarded-host", "hooks.example.com"),
                   ("x-forwarded-port", "8443")]
        assert h.request("POST", "http://internal/plivo", headers, signed.body, client=("10.0.0.2", 1))[0] == 200
    finally:
        h.close()


def test_unknown_path_method_and_huge_bodies(harness: Harness, recorder: Recorder) -> None:
    good = hook(harness, "generic")
    assert harness.request("POST", harness.url("generic").replace("/generic", "/nope"), good.headers,
                           good.body)[0] == 404
    assert harness.request("PUT", good.url, good.headers, good.body)[0] == 405
    huge = b"x" * (64 * 1024 + 1)
    assert harness.request("POST", good.url, [("content-length", str(len(huge)))], huge)[0] == 413
    # Without a Content-Length (chunked): counted while it arrives.
    assert harness.request("POST", good.url, [], huge, chunk=4096)[0] == 413
    assert recorder.deliveries == []


@pytest.mark.parametrize("provider", ["twilio", "plivo", "generic", "telnyx"])
def test_malformed_but_signed_bodies_are_400(harness: Harness, recorder: Recorder, provider: str) -> None:
    import time

    from gateway.protocols.sms.testhook import _generic, _plivo, _telnyx, _twilio

    now = int(time.time())
    creds = harness.credentials(provider)
    if provider == "twilio":
        bad = _twilio(harness.url(provider), {"From": "+14155550123"}, creds)  # no MessageSid
    elif provider == "plivo":
        bad = _plivo(harness.url(provider), {"Text": "x"}, creds)
    elif provider == "generic":
        bad = _generic(harness.url(provider), {"type": "message", "id": "1", "from": "+1", "text": 5}, creds, now)
    else:
        bad = _telnyx(harness.url(provider), {"data": "nope"}, creds, now)
    assert harness.post(bad)[0] == 400
    assert recorder.deliveries == []
