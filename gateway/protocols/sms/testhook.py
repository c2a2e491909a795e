"""Signed test webhooks: what a provider would send, signed as the provider signs it.

:func:`sign_test_webhook` builds an inbound message (or a delivery status) in a provider's own
format and signs it with the account's credentials, so that a running daemon accepts it exactly as
it would the provider's. A ``gateway sms-test`` command can call it; until then::

    python -m gateway.protocols.sms.testhook generic https://sms.example.com/generic \\
        --credential secret=s3cret --text "hello" --send

prints the request as a ``curl`` command line, or (with ``--send``) sends it with the standard
library and prints the answer. Telnyx signs with *its* private key, which nobody else has: to test a
Telnyx account, configure it with the public key of a key pair you made and pass the private key
(``--credential private_key=<base64 of the 32-byte seed>``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import shlex
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from gateway.protocols.sms.encoding import UCS2, detect_encoding

__all__ = ["TestWebhook", "sign_test_webhook", "main"]

_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"


@dataclass(frozen=True)
class TestWebhook:
    """A signed webhook request, ready to send."""

    __test__ = False  # not a pytest test class, despite the name

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def curl(self) -> str:
        """The request as a ``curl`` command line (the body passed verbatim)."""
        parts = ["curl", "-sS", "-X", self.method]
        for name, value in self.headers:
            parts += ["-H", f"{name}: {value}"]
        if self.body:
            parts += ["--data-binary", self.body.decode("utf-8")]
        parts.append(self.url)
        return " ".join(shlex.quote(part) for part in parts)


def _digits(number: str) -> str:
    return number.lstrip("+")


def _need(credentials: dict[str, Any], name: str, provider: str) -> Any:
    value = credentials.get(name)
    if not value:
        raise ValueError(f"{provider}: the credential {name!r} is needed to sign")
    return value


def _twilio(url: str, fields: dict[str, str], credentials: dict[str, Any]) -> TestWebhook:
    from gateway.protocols.sms.providers.twilio import compute_signature

    pairs = sorted(fields.items())
    signature = compute_signature(_need(credentials, "auth_token", "twilio"), url, pairs)
    return TestWebhook("POST", url, (("content-type", _FORM), ("x-twilio-signature", signature)),
                       urlencode(pairs).encode("ascii"))


def _vonage(url: str, fields: dict[str, str], credentials: dict[str, Any], now: int) -> TestWebhook:
    from gateway.protocols.sms.providers.vonage import compute_signature

    secret = _need(credentials, "signature_secret", "vonage")
    method = str(credentials.get("signature_method", "md5hash"))
    if method == "jwt":
        body = json.dumps(fields).encode()
        claims = {"iat": now, "jti": os.urandom(8).hex(), "payload_hash": hashlib.sha256(body).hexdigest()}
        if credentials.get("api_key"):
            claims["api_key"] = credentials["api_key"]
        segments = [base64.urlsafe_b64encode(json.dumps(part, separators=(",", ":")).encode()).rstrip(b"=")
                    for part in ({"alg": "HS256", "typ": "JWT"}, claims)]
        signing_input = b".".join(segments)
        signature = base64.urlsafe_b64encode(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest())
        token = (signing_input + b"." + signature.rstrip(b"=")).decode("ascii")
        return TestWebhook("POST", url, (("content-type", _JSON), ("authorization", f"Bearer {token}")), body)
    signed = dict(fields, timestamp=str(now), nonce=os.urandom(8).hex())
    if credentials.get("api_key"):
        signed["api-key"] = credentials["api_key"]
    signed["sig"] = compute_signature(secret, signed, method)
    return TestWebhook("POST", url, (("content-type", _FORM),), urlencode(sorted(signed.items())).encode("ascii"))


def _plivo(url: str, fields: dict[str, str], credentials: dict[str, Any]) -> TestWebhook:
    from gateway.protocols.sms.providers.plivo import compute_signature_v3

    nonce = str(credentials.get("nonce") or os.urandom(10).hex())
    pairs = sorted(fields.items())
    signature = compute_signature_v3(_need(credentials, "auth_token", "plivo"), "POST", url, nonce, pairs)
    headers = (("content-type", _FORM), ("x-plivo-signature-v3", signature), ("x-plivo-signature-v3-nonce", nonce))
    return TestWebhook("POST", url, headers, urlencode(pairs).encode("ascii"))


def _telnyx_key(value: Any) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if isinstance(value, Ed25519PrivateKey):
        return value
    raw = value
    if isinstance(value, str):
        raw = bytes.fromhex(value) if len(value) == 64 else base64.b64decode(value, validate=True)
    if len(raw) != 32:
        raise ValueError("telnyx: private_key must be the 32-byte Ed25519 seed (base64 or hex)")
    return Ed25519PrivateKey.from_private_bytes(bytes(raw))


def _telnyx(url: str, document: dict[str, Any], credentials: dict[str, Any], now: int) -> TestWebhook:
    key = _telnyx_key(_need(credentials, "private_key", "telnyx"))
    body = json.dumps(document, separators=(",", ":")).encode()
    signature = base64.b64encode(key.sign(f"{now}|".encode() + body)).decode("ascii")
    headers = (("content-type", _JSON), ("telnyx-signature-ed25519", signature), ("telnyx-timestamp", str(now)))
    return TestWebhook("POST", url, headers, body)


def _generic(url: str, document: dict[str, Any], credentials: dict[str, Any], now: int) -> TestWebhook:
    from gateway.protocols.sms.providers.generic import compute_signature

    body = json.dumps(document, separators=(",", ":")).encode()
    signature = compute_signature(_need(credentials, "secret", "generic"), str(now), body)
    headers = (("content-type", _JSON), ("x-sms-signature", signature), ("x-sms-timestamp", str(now)))
    return TestWebhook("POST", url, headers, body)


def _telnyx_document(kind: str, message_id: str, sender: str, recipient: str, text: str, status: str) -> dict[str, Any]:
    if kind == "status":
        payload = {"id": message_id, "direction": "outbound", "from": {"phone_number": sender},
                   "to": [{"phone_number": recipient, "status": status}], "parts": 1}
        event_type = "message.finalized"
    else:
        payload = {"id": message_id, "direction": "inbound", "type": "SMS", "text": text,
                   "from": {"phone_number": sender}, "to": [{"phone_number": recipient, "status": "webhook_delivered"}]}
        event_type = "message.received"
    return {"data": {"record_type": "event", "id": os.urandom(16).hex(), "event_type": event_type,
                     "payload": payload}, "meta": {"attempt": 1}}


def sign_test_webhook(
    provider: str,
    url: str,
    *,
    text: str = "Hello from the gateway",
    from_: str = "+447400123456",
    to: str = "+441134960000",
    message_id: str | None = None,
    kind: str = "message",
    status: str = "delivered",
    now: float | None = None,
    **credentials: Any,
) -> TestWebhook:
    """A webhook as ``provider`` would send it to ``url``, signed with ``credentials``.

    Args:
        provider: ``twilio``, ``vonage``, ``plivo``, ``telnyx`` or ``generic``.
        url: the public URL the account's webhook is configured at (what gets signed).
        text: the message text (``kind="message"``).
        from_, to: the message's sender and recipient: for an inbound message, their number and
            ours; for a status, ours (the message we sent) and theirs.
        message_id: the provider's id (random when not given).
        kind: ``"message"`` (an inbound text) or ``"status"`` (a delivery report).
        status: the provider's status word for ``kind="status"`` (``delivered``).
        now: Unix time to sign with (default: the clock).
        **credentials: twilio ``auth_token``; vonage ``signature_secret``, ``signature_method``,
            ``api_key``; plivo ``auth_token`` (``nonce``); telnyx ``private_key``; generic ``secret``.

    Raises:
        ValueError: unknown provider or kind, or a missing credential.
    """
    stamp = int(time.time() if now is None else now)
    if kind not in ("message", "status"):
        raise ValueError(f"kind must be 'message' or 'status', got {kind!r}")
    ident = message_id or os.urandom(16).hex()
    if provider == "twilio":
        account = str(credentials.get("account_sid") or "AC" + "0" * 32)
        if kind == "status":
            fields = {"MessageSid": ident, "MessageStatus": status, "To": to, "From": from_, "AccountSid": account}
        else:
            fields = {"MessageSid": ident, "SmsSid": ident, "AccountSid": account, "From": from_, "To": to,
                      "Body": text, "NumMedia": "0", "NumSegments": "1", "SmsStatus": "received",
                      "ApiVersion": "2010-04-01"}
        return _twilio(url, fields, credentials)
    if provider == "vonage":
        if credentials.get("signature_method") == "jwt":
            fields = ({"message_uuid": ident, "to": _digits(to), "from": _digits(from_), "status": status,
                       "timestamp": str(stamp)} if kind == "status" else
                      {"channel": "sms", "message_uuid": ident, "to": _digits(to), "from": _digits(from_),
                       "text": text, "message_type": "text", "timestamp": str(stamp)})
        elif kind == "status":
            fields = {"messageId": ident, "msisdn": _digits(to), "to": _digits(from_), "status": status,
                      "err-code": "0", "message-timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp))}
        else:
            kind_of_text = "unicode" if detect_encoding(text) == UCS2 else "text"
            fields = {"messageId": ident, "msisdn": _digits(from_), "to": _digits(to), "text": text, "type": kind_of_text,
                      "message-timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp))}
        return _vonage(url, fields, credentials, stamp)
    if provider == "plivo":
        fields = ({"MessageUUID": ident, "Status": status, "To": _digits(to), "From": _digits(from_), "Units": "1"}
                  if kind == "status" else
                  {"MessageUUID": ident, "From": _digits(from_), "To": _digits(to), "Text": text, "Type": "sms",
                   "Units": "1"})
        return _plivo(url, fields, credentials)
    if provider == "telnyx":
        return _telnyx(url, _telnyx_document(kind, ident, from_, to, text, status), credentials, stamp)
    if provider == "generic":
        document = ({"type": "status", "id": ident, "status": status, "to": to, "from": from_} if kind == "status" else
                    {"type": "message", "id": ident, "from": from_, "to": to, "text": text})
        return _generic(url, document, credentials, stamp)
    raise ValueError(f"unknown SMS provider {provider!r}; expected twilio, vonage, plivo, telnyx or generic")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gateway.protocols.sms.testhook``: print (or send) a signed test webhook."""
    parser = argparse.ArgumentParser(prog="python -m gateway.protocols.sms.testhook", description=__doc__.split("\n\n")[0])
    parser.add_argument("provider", choices=["twilio", "vonage", "plivo", "telnyx", "generic"])
    parser.add_argument("url", help="the public webhook URL of the account (what the provider signs)")
    parser.add_argument("--credential", action="append", default=[], metavar="NAME=VALUE",
                        help="a signing credential, e.g. auth_token=..., secret=..., private_key=...")
    parser.add_argument("--text", default="Hello from the gateway")
    parser.add_argument("--from", dest="from_", default="+447400123456")
    parser.add_argument("--to", default="+441134960000")
    parser.add_argument("--kind", choices=["message", "status"], default="message")
    parser.add_argument("--status", default="delivered")
    parser.add_argument("--message-id")
    parser.add_argument("--send", action="store_true", help="send it and print the answer instead of a curl line")
    parser.add_argument("--target", help="send to this URL instead (e.g. http://127.0.0.1:8080/...) while signing --url")
    args = parser.parse_args(argv)
    credentials = dict(item.split("=", 1) for item in args.credential if "=" in item)
    try:
        hook = sign_test_webhook(args.provider, args.url, text=args.text, from_=args.from_, to=args.to,
                                 message_id=args.message_id, kind=args.kind, status=args.status, **credentials)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    target = args.target or hook.url
    if not args.send:
        print(hook.curl() if target == hook.url else hook.curl().replace(shlex.quote(hook.url), shlex.quote(target)))
        return 0
    request = urllib.request.Request(target, data=hook.body, headers=dict(hook.headers), method=hook.method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - a URL the user gave
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    print(status)
    print(body.decode("utf-8", "replace"))
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
