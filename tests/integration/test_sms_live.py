"""SMS webhooks over real HTTP to a running daemon, and sms.send to a local fake provider API (TLS).

One daemon (``tests.sms_apps:app``) with three SMS listeners: ``sms`` (one account per provider,
``public_url`` set, sending to the fake API over HTTPS trusted through ``ca_file``), ``vectors``
(accounts that check the providers' published test vectors) and ``proxied`` (no ``public_url``;
127.0.0.1 is a trusted proxy).
"""

from __future__ import annotations

import html
import json
import re
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from gateway.protocols.sms.testhook import TestWebhook, sign_test_webhook
from tests.integration.daemon import Daemon

pytestmark = pytest.mark.slow

PUBLIC = "https://sms.example.test"
TELNYX_SEED = bytes(range(1, 33))
CREDENTIALS: dict[str, dict[str, Any]] = {
    "twilio": {"auth_token": "tw-token"},
    "vonage": {"signature_secret": "vn-secret", "signature_method": "sha256"},
    "plivo": {"auth_token": "pl-token"},
    "telnyx": {"private_key": TELNYX_SEED},
    "generic": {"secret": "gen-secret"},
}
SUCCESS = {"twilio": 200, "vonage": 204, "plivo": 200, "telnyx": 200, "generic": 200}
REFUSED_NUMBER = "+15005550009"


class FakeAPI(BaseHTTPRequestHandler):
    """Plays the five providers' send endpoints; records every request."""

    requests: list[dict[str, Any]] = []
    ANSWERS = {
        "/2010-04-01/Accounts/AC123/Messages.json": (201, {"sid": "SMsent1", "status": "queued", "num_segments": "1"}),
        "/sms/json": (200, {"message-count": "1", "messages": [{"status": "0", "message-id": "vonage-1"}]}),
        "/v1/Account/MA123/Message/": (202, {"api_id": "a", "message": "queued", "message_uuid": ["plivo-1"]}),
        "/v2/messages": (200, {"data": {"id": "telnyx-1", "to": [{"status": "queued"}], "parts": 1}}),
        "/generic/send": (200, {"id": "generic-1", "status": "queued"}),
    }

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        FakeAPI.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                                 "body": body})
        status, answer = self.ANSWERS.get(self.path, (404, {"error": "no such endpoint"}))
        if REFUSED_NUMBER.encode() in body or REFUSED_NUMBER[1:].encode() in body:
            status, answer = 400, {"error": "invalid destination", "code": 21211, "message": "invalid destination",
                                   "errors": [{"code": "40310", "detail": "invalid destination"}]}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    trustme = pytest.importorskip("trustme")
    tmp = tmp_path_factory.mktemp("api")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAPI)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    yield server.server_address[1], ca_file
    server.shutdown()
    server.server_close()


def config(port: int, ca_file: Path) -> str:
    base = f"https://127.0.0.1:{port}"
    return f"""
application: tests.sms_apps:app
listeners:
  - name: sms
    protocol: sms
    endpoint: "tcp:0:interface=127.0.0.1"
    public_url: {PUBLIC}
    consumer_timeout: 3s
    accounts:
      - {{name: tw, provider: twilio, path: /twilio, auth_token: tw-token, account_sid: AC123,
         default_from: "+15005550006", base_url: "{base}", ca_file: "{ca_file}"}}
      - {{name: vn, provider: vonage, path: /vonage, signature_secret: vn-secret, signature_method: sha256,
         api_key: vkey, api_secret: vsecret, default_from: "+15005550006", base_url: "{base}", ca_file: "{ca_file}"}}
      - {{name: pl, provider: plivo, path: /plivo, auth_id: MA123, auth_token: pl-token,
         default_from: "+15005550006", base_url: "{base}", ca_file: "{ca_file}"}}
      - {{name: tx, provider: telnyx, path: /telnyx, public_key: "{telnyx_public()}", api_key: KEY123,
         default_from: "+15005550006", base_url: "{base}", ca_file: "{ca_file}"}}
      - {{name: gen, provider: generic, path: /generic, secret: gen-secret, send_token: tok,
         default_from: "+441134960000", base_url: "{base}/generic/send", ca_file: "{ca_file}"}}
      - {{name: untrusted, provider: generic, path: /untrusted, secret: gen-secret,
         default_from: "+441134960000", base_url: "{base}/generic/send"}}
      - {{name: open, provider: generic, path: /open, verify_signatures: false}}
  - name: vectors
    protocol: sms
    endpoint: "tcp:0:interface=127.0.0.1"
    public_url: https://mycompany.com
    accounts:
      - {{name: tw-vector, provider: twilio, path: /myapp.php, auth_token: "12345"}}
      - {{name: vn-vector, provider: vonage, path: /vonage, signature_secret: my_secret_key_for_testing,
         timestamp_tolerance: 20000d}}
      - {{name: tx-vector, provider: telnyx, path: /telnyx, public_key: "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=",
         timestamp_tolerance: 20000d}}
  - name: plivo-vector
    protocol: sms
    endpoint: "tcp:0:interface=127.0.0.1"
    public_url: https://gw.example.com
    accounts:
      - {{name: pl-vector, provider: plivo, path: /sms/plivo, auth_token: MYAUTHTOKEN}}
  - name: proxied
    protocol: sms
    endpoint: "tcp:0:interface=127.0.0.1"
    proxy: {{trusted: [127.0.0.1]}}
    accounts:
      - {{name: behind, provider: twilio, path: /twilio, auth_token: tw-token}}
logging: {{level: info}}
"""


def telnyx_public() -> str:
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.from_private_bytes(TELNYX_SEED).public_key()
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, api: tuple[int, Path]) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("sms")
    gateway = Daemon(tmp, config(*api), env={"GATEWAY_SMS_LOG": str(tmp / "deliveries.jsonl")}).start()
    yield gateway
    gateway.stop()


def deliveries(daemon: Daemon) -> list[dict[str, Any]]:
    path = daemon.tmp / "deliveries.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def post(daemon: Daemon, hook: TestWebhook, listener: str = "sms", extra: list[tuple[str, str]] | None = None,
         url: str | None = None) -> httpx.Response:
    """Send a webhook signed for its public URL to the daemon's real address."""
    target = url or hook.url.replace(PUBLIC, daemon.url(listener))
    return httpx.post(target, content=hook.body, headers=list(hook.headers) + (extra or []), timeout=10)


def sign(provider: str, path: str | None = None, **kwargs: Any) -> TestWebhook:
    return sign_test_webhook(provider, f"{PUBLIC}{path or '/' + provider}", **CREDENTIALS[provider], **kwargs)


def test_start_up_warns_about_the_account_without_verification(daemon: Daemon) -> None:
    output = daemon.output()
    assert "signature verification is OFF for account open" in output
    assert output.count("signature verification is OFF") == 1


@pytest.mark.parametrize("provider", list(CREDENTIALS))
def test_each_provider_self_signed_is_delivered_once(daemon: Daemon, provider: str) -> None:
    ident = f"live-{provider}-{time.time_ns()}"
    hook = sign(provider, text="hello live", message_id=ident, from_="+447400123456")
    assert post(daemon, hook).status_code == SUCCESS[provider]
    assert post(daemon, hook).status_code == SUCCESS[provider]  # the provider's redelivery
    mine = [d for d in deliveries(daemon) if d["scope"]["message_id"] == ident]
    assert len(mine) == 1
    [delivery] = mine
    assert delivery["scope"]["from"] == "+447400123456" and delivery["scope"]["country"] == "GB"
    assert delivery["event"]["text"] == "hello live" and delivery["state"] == {"booted": "yes"}


def test_twilio_inline_reply_is_twiml(daemon: Daemon) -> None:
    answer = post(daemon, sign("twilio", text="echo over the wire"))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/xml")
    assert answer.text.endswith("<Response><Message>echo: over the wire</Message></Response>")


def test_a_consumer_gets_status_callbacks(daemon: Daemon) -> None:
    ident = f"status-{time.time_ns()}"
    hook = sign("telnyx", kind="status", status="delivered", message_id=ident, from_="+15005550006",
                to="+14155550123")
    assert post(daemon, hook).status_code == 200
    [delivery] = [d for d in deliveries(daemon) if d["scope"]["message_id"] == ident]
    assert delivery["handler"] == "USText" and delivery["event"]["type"] == "sms.status"
    assert delivery["scope"]["kind"] == "status" and delivery["event"]["status"] == "delivered"


@pytest.mark.parametrize("provider", list(CREDENTIALS))
def test_bad_input_never_reaches_the_application(daemon: Daemon, provider: str) -> None:
    before = len(deliveries(daemon))
    good = sign(provider, text="tampered?")
    unsigned = [(k, v) for k, v in good.headers if k == "content-type"]
    body = good.body if provider != "vonage" else b"&".join(p for p in good.body.split(b"&") if not p.startswith(b"sig="))
    target = good.url.replace(PUBLIC, daemon.url("sms"))
    assert httpx.post(target, content=body, headers=unsigned).status_code == 403
    assert httpx.post(target, content=good.body.replace(b"tampered", b"Tampered"), headers=list(good.headers)).status_code == 403
    wrong_key = {k: (bytes(32) if isinstance(v, bytes) else v if k == "signature_method" else "wrong")
                 for k, v in CREDENTIALS[provider].items()}
    assert post(daemon, sign_test_webhook(provider, good.url, **wrong_key)).status_code == 403
    if provider in ("vonage", "telnyx", "generic"):
        assert post(daemon, sign(provider, now=time.time() - 3600)).status_code == 403  # replayed
    assert httpx.post(target, content=b"x" * (256 * 1024), headers=list(good.headers)).status_code == 413
    assert len(deliveries(daemon)) == before


def test_malformed_unknown_path_and_method(daemon: Daemon) -> None:
    from gateway.protocols.sms.testhook import _generic

    malformed = _generic(f"{PUBLIC}/generic", {"type": "message"}, CREDENTIALS["generic"], int(time.time()))
    assert post(daemon, malformed).status_code == 400
    assert httpx.post(daemon.url("sms") + "/no-such-account", content=b"{}").status_code == 404
    assert httpx.put(daemon.url("sms") + "/generic", content=b"{}").status_code == 405
    unsigned = json.dumps({"type": "message", "id": f"open-{time.time_ns()}", "from": "+447400123456",
                           "to": "+441134960000", "text": "no signature needed"}).encode()
    assert httpx.post(daemon.url("sms") + "/open", content=unsigned,
                      headers={"content-type": "application/json"}).status_code == 200


def test_published_vectors_pass_verification_over_http(daemon: Daemon) -> None:
    # Twilio's (twilio-python unit test): a voice-call body, so it is verified, then refused as
    # "no MessageSid" (400) — not 403. The :443 form is accepted as well.
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
              "From": "+14158675309", "To": "+18005551212"}
    url = daemon.url("vectors") + "/myapp.php?foo=1&bar=2"
    form = {"content-type": "application/x-www-form-urlencoded"}
    for signature, expected in (("RSOYDt4T1cUTdK1PDd93/VVr8B8=", 400), ("kvajT1Ptam85bY51eRf/AJRuM3w=", 400),
                                ("RSOYDt4T1cUTdK1PDd93/VVr8B9=", 403)):
        answer = httpx.post(url, content=urlencode(params), headers={**form, "x-twilio-signature": signature})
        assert answer.status_code == expected, answer.text
    # Vonage's md5hash vector (vonage-node-sdk), a real inbound SMS: delivered.
    vonage = {"message-timestamp": "2013-11-21 15:27:30", "messageId": "020000001B0FE827", "msisdn": "14843472194",
              "text": "Test again", "timestamp": "1385047698", "to": "13239877404", "type": "text"}
    for sig, expected in (("d2e7b1dc968737c5998ad624e02f90b8", 403), ("d2e7b1dc968737c5998ad624e02f90b7", 204)):
        answer = httpx.post(daemon.url("vectors") + "/vonage", content=urlencode({**vonage, "sig": sig}), headers=form)
        assert answer.status_code == expected, answer.text
    [delivery] = [d for d in deliveries(daemon) if d["scope"]["message_id"] == "020000001B0FE827"]
    assert delivery["scope"]["from"] == "+14843472194" and delivery["event"]["text"] == "Test again"
    # Telnyx (reference doc, checked with telnyx's verifier): verified, then "no payload.id" (400).
    body = (b'{"data":{"event_type":"message.received","payload":{"from":{"phone_number":"+18665550001"},'
            b'"to":[{"phone_number":"+18445550001"}],"text":"Hello"}}}')
    signature = "tNtZAR9HaUrO1MWUKUzGUwyjeiZL1ehIsDXHOpxg3ghrzRkowQTy1do4sGKDAbgEQ5Eks9qeHmmmJx+YtVguBA=="
    for sig, expected in ((signature, 400), (signature[:-4] + "AAA=", 403)):
        answer = httpx.post(daemon.url("vectors") + "/telnyx", content=body, headers={
            "content-type": "application/json", "telnyx-signature-ed25519": sig, "telnyx-timestamp": "1700000000"})
        assert answer.status_code == expected, answer.text
    # Plivo V3 (reference doc, checked against plivo-python), without and with a query.
    plivo = {"From": "14155550100", "To": "14155550199", "Text": "hello", "Type": "sms",
             "MessageUUID": "1f0a1e2c-0000-4000-8000-000000000000"}
    for query, sig in (("", "lNsuoDLRCt/TQoALW1k5zFee/uRFMAdDmXWo1IjUbOM="),
                       ("?tenant=a&b=2", "NH0CDtFKeb57gtOsrbcL5HP9drfD5aaqz/pEZM86hew=")):
        headers = {**form, "x-plivo-signature-v3": sig, "x-plivo-signature-v3-nonce": "12345678901234567890"}
        answer = httpx.post(daemon.url("plivo-vector") + "/sms/plivo" + query, content=urlencode(plivo), headers=headers)
        assert answer.status_code == 200, answer.text
        bad = httpx.post(daemon.url("plivo-vector") + "/sms/plivo" + query, content=urlencode(plivo),
                         headers={**headers, "x-plivo-signature-v3-nonce": "1"})
        assert bad.status_code == 403
    assert len([d for d in deliveries(daemon) if d["scope"]["message_id"] == plivo["MessageUUID"]]) == 1


def test_behind_a_trusted_proxy_the_forwarded_url_is_signed(daemon: Daemon) -> None:
    # Twilio signs the URL: only the one the (trusted) proxy reports verifies.
    hook = sign_test_webhook("twilio", "https://hooks.example.org/twilio", auth_token="tw-token")
    forwarded = [("x-forwarded-proto", "https"), ("x-forwarded-host", "hooks.example.org")]
    assert post(daemon, hook, "proxied", url=daemon.url("proxied") + "/twilio").status_code == 403
    assert post(daemon, hook, "proxied", forwarded, url=daemon.url("proxied") + "/twilio").status_code == 200


def test_failure_and_timeout_answer_the_retry_status(daemon: Daemon) -> None:
    flaky = sign("generic", text="flaky", message_id=f"flaky-{time.time_ns()}")
    assert post(daemon, flaky).status_code == 503
    assert post(daemon, flaky).status_code == 200
    assert post(daemon, sign("plivo", text="fail")).status_code == 503
    # Telnyx waits 2 s: the daemon answers at 1.5 s, before this application acknowledges (at
    # 2.2 s, within the listener's 3 s consumer_timeout), so the answer is the retry status...
    assert post(daemon, sign("telnyx", text="slow 2.2")).status_code == 503
    # ...unless the application acknowledged first (then it works on, the provider has its 200).
    assert post(daemon, sign("telnyx", text="ack-first 3")).status_code == 200


def send_and_read_result(daemon: Daemon, provider: str, to: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ask the app to sms.send; returns (the sms.send.result it saw, the fake API's requests)."""
    FakeAPI.requests.clear()
    answer = post(daemon, sign(provider, text=f"send {to} hello there", from_="+447400123456"))
    assert answer.status_code == SUCCESS[provider], answer.text
    if provider == "generic":
        return json.loads(json.loads(answer.text)["replies"][0]["text"]), list(FakeAPI.requests)
    if provider in ("twilio", "plivo"):
        [text] = re.findall(r"<Message[^>]*>(.*?)</Message>", answer.text)
        return json.loads(html.unescape(text)), list(FakeAPI.requests)
    deadline = time.monotonic() + 5
    while len(FakeAPI.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    reply = FakeAPI.requests[1]
    text = (json.loads(reply["body"])["text"] if provider == "telnyx"
            else dict(parse_qsl(reply["body"].decode()))["text"])
    return json.loads(text), list(FakeAPI.requests)


def test_sms_send_reaches_each_provider_api_with_its_fields(daemon: Daemon) -> None:
    result, [twilio, *_] = send_and_read_result(daemon, "twilio", "+14155550100")
    assert result["ok"] and result["message_ids"] == ["SMsent1"] and result["id"] == "s1"
    assert (twilio["method"], twilio["path"]) == ("POST", "/2010-04-01/Accounts/AC123/Messages.json")
    assert twilio["headers"]["Authorization"] == "Basic " + __import__("base64").b64encode(b"AC123:tw-token").decode()
    assert dict(parse_qsl(twilio["body"].decode())) == {"To": "+14155550100", "From": "+15005550006", "Body": "hello there"}

    result, [vonage, reply] = send_and_read_result(daemon, "vonage", "+14155550100")
    assert result["ok"] and result["message_ids"] == ["vonage-1"]
    assert vonage["path"] == "/sms/json"
    assert dict(parse_qsl(vonage["body"].decode())) == {"api_key": "vkey", "api_secret": "vsecret",
                                                        "from": "15005550006", "to": "14155550100", "text": "hello there"}
    assert dict(parse_qsl(reply["body"].decode()))["to"] == "447400123456"  # the reply went to the sender

    result, [plivo, *_] = send_and_read_result(daemon, "plivo", "+14155550100")
    assert result["ok"] and result["message_ids"] == ["plivo-1"] and plivo["path"] == "/v1/Account/MA123/Message/"
    assert plivo["headers"]["Authorization"] == "Basic " + __import__("base64").b64encode(b"MA123:pl-token").decode()
    assert json.loads(plivo["body"]) == {"src": "15005550006", "dst": "14155550100", "text": "hello there"}

    result, [telnyx, reply] = send_and_read_result(daemon, "telnyx", "+14155550100")
    assert result["ok"] and result["message_ids"] == ["telnyx-1"] and telnyx["path"] == "/v2/messages"
    assert telnyx["headers"]["Authorization"] == "Bearer KEY123"
    assert json.loads(telnyx["body"]) == {"to": "+14155550100", "from": "+15005550006", "text": "hello there"}
    assert json.loads(reply["body"])["from"] == "+441134960000"

    result, [generic] = send_and_read_result(daemon, "generic", "+14155550100")
    assert result["ok"] and result["message_ids"] == ["generic-1"] and generic["path"] == "/generic/send"
    assert generic["headers"]["Authorization"] == "Bearer tok"
    assert generic["headers"]["Content-Type"] == "application/json"


def test_provider_errors_and_tls_failures_come_back_to_the_application(daemon: Daemon) -> None:
    result, requests = send_and_read_result(daemon, "generic", REFUSED_NUMBER)
    assert len(requests) == 1
    assert result["ok"] is False and result["error"] == {"http_status": 400, "code": "21211",
                                                         "message": "invalid destination", "retryable": False}
    result, requests = send_and_read_result(daemon, "twilio", REFUSED_NUMBER)
    assert result["ok"] is False and result["error"]["code"] == "21211"
    # The 'untrusted' account sends to the same server without its CA: verification refuses it.
    FakeAPI.requests.clear()
    hook = sign_test_webhook("generic", f"{PUBLIC}/untrusted", secret="gen-secret", text="send +14155550100 x")
    answer = post(daemon, hook)
    result = json.loads(json.loads(answer.text)["replies"][0]["text"])
    assert result["ok"] is False and result["error"]["http_status"] == 0 and result["error"]["retryable"]
    assert "certificate" in result["error"]["message"].lower()
    assert FakeAPI.requests == []
