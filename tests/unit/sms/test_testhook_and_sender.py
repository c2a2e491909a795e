"""sign_test_webhook (checked by the provider modules themselves), its CLI, and the sender's
error mapping without a network."""

from __future__ import annotations

import asyncio
import json
import shlex
import time
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError

from gateway.protocols.sms import OutboundMessage, SendError, StatusUpdate, WebhookRequest, InboundMessage
from gateway.protocols.sms.providers import create_provider
from gateway.protocols.sms.sender import SmsSender, load_trust_root
from gateway.protocols.sms.testhook import main, sign_test_webhook

from .bridge_harness import ACCOUNTS, SEND_ANSWERS, FakeSender

URL = "https://sms.example.com/hook?tenant=a"


@pytest.mark.parametrize("provider", list(ACCOUNTS))
@pytest.mark.parametrize("kind", ["message", "status"])
def test_signed_webhooks_verify_with_the_provider_module(provider: str, kind: str) -> None:
    _, settings, credentials = ACCOUNTS[provider]
    hook = sign_test_webhook(provider, URL, kind=kind, text="hi", message_id="abc", **credentials)
    event = create_provider(provider, **settings).receive(
        WebhookRequest(hook.method, hook.url, hook.headers, hook.body), now=time.time())
    assert isinstance(event, InboundMessage if kind == "message" else StatusUpdate)
    assert event.message_id == "abc"


def test_vonage_jwt_signing() -> None:
    hook = sign_test_webhook("vonage", URL, signature_secret="s", signature_method="jwt", api_key="k", text="jwt!")
    provider = create_provider("vonage", signature_secret="s", signature_method="jwt", api_key="k")
    event = provider.receive(WebhookRequest(hook.method, hook.url, hook.headers, hook.body), now=time.time())
    assert isinstance(event, InboundMessage) and event.text == "jwt!"


def test_missing_credentials_and_unknown_provider() -> None:
    with pytest.raises(ValueError, match="auth_token"):
        sign_test_webhook("twilio", URL)
    with pytest.raises(ValueError, match="unknown SMS provider"):
        sign_test_webhook("sinch", URL, secret="x")
    with pytest.raises(ValueError, match="kind"):
        sign_test_webhook("generic", URL, secret="x", kind="other")


def test_cli_prints_a_curl_line_that_carries_the_signed_request(capsys: Any) -> None:
    assert main(["generic", URL, "--credential", "secret=s3", "--text", "it's here",
                 "--target", "http://127.0.0.1:9/hook?tenant=a"]) == 0
    words = shlex.split(capsys.readouterr().out)
    assert words[:4] == ["curl", "-sS", "-X", "POST"] and words[-1] == "http://127.0.0.1:9/hook?tenant=a"
    body = words[words.index("--data-binary") + 1].encode()
    headers = [tuple(words[i + 1].split(": ", 1)) for i, w in enumerate(words) if w == "-H"]
    event = create_provider("generic", secret="s3").receive(WebhookRequest("POST", URL, headers, body), now=time.time())
    assert isinstance(event, InboundMessage) and event.text == "it's here"
    assert main(["twilio", URL]) == 2


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.parametrize("provider", list(ACCOUNTS))
def test_fake_exchange_round_trip_per_provider(provider: str) -> None:
    _, settings, _ = ACCOUNTS[provider]
    settings = dict(settings, default_from="+441134960000")
    settings.setdefault("base_url", "https://api.example.net")
    sender = FakeSender(SEND_ANSWERS[provider])
    result = run(sender.send(create_provider(provider, **settings), OutboundMessage(to="+14155550100", text="x")))
    assert result.message_id.endswith("out") and len(sender.requests) == 1


class _Refusing:
    def request(self, *args: Any, **kwargs: Any) -> Any:
        return defer.fail(ConnectionRefusedError("nobody home"))


class _Hanging:
    def request(self, *args: Any, **kwargs: Any) -> Any:
        return defer.Deferred()


def test_unreachable_provider_is_a_retryable_send_error() -> None:
    provider = create_provider("generic", secret="s", base_url="https://api.example.net/send", default_from="x")
    sender = SmsSender(None, client=_Refusing())
    with pytest.raises(SendError) as info:
        run(sender.send(provider, OutboundMessage(to="+14155550100", text="x")))
    assert info.value.http_status == 0 and info.value.retryable and "nobody home" in info.value.message


def test_a_silent_provider_times_out() -> None:
    provider = create_provider("generic", secret="s", base_url="https://api.example.net/send", default_from="x")
    sender = SmsSender(None, client=_Hanging(), timeout=0.05)
    with pytest.raises(SendError, match="no answer from api.example.net within 0.05 s"):
        run(sender.send(provider, OutboundMessage(to="+14155550100", text="x")))


def test_trust_root_needs_a_certificate(tmp_path: Any) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing here")
    with pytest.raises(ValueError, match="no PEM certificate"):
        load_trust_root(str(empty))
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    assert load_trust_root(str(bundle)) is not None


def test_send_result_event_shapes() -> None:
    from gateway.protocols.sms.asgi import send_result_event
    from gateway.protocols.errors import LocalProtocolError

    ok = create_provider("generic", secret="s").parse_send_response(200, {}, json.dumps({"id": "a"}).encode())
    assert send_result_event(1, ok)["message_ids"] == ["a"]
    bad = send_result_event(2, LocalProtocolError("no sender"))
    assert bad["ok"] is False and bad["error"]["message"] == "no sender" and bad["error"]["http_status"] is None
