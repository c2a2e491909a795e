"""SASL exchanges for SMTP AUTH (RFC 4954): PLAIN (RFC 4616) and LOGIN.

The core drives one :class:`SaslExchange` per AUTH command. Each step returns either the next
reply to send (a ``334`` challenge, or an error reply that ends the exchange) or, once the client
has given everything, an :class:`~gateway.protocols.smtp.events.AuthCredentials` decision for the
upper layer. Verifying the password is never done here.
"""

from __future__ import annotations

import binascii

from gateway.protocols.smtp import replies
from gateway.protocols.smtp.events import AuthCredentials

__all__ = ["SaslExchange", "decode_base64"]


def decode_base64(data: bytes) -> bytes | None:
    """Strict base64 (RFC 4648 §4, padding required); None when malformed."""
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def _text(raw: bytes) -> str | None:
    """A SASL string: UTF-8 without NUL (RFC 4616 §2), or None."""
    if b"\0" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


class SaslExchange:
    """The state of one AUTH exchange for ``mechanism`` ("PLAIN" or "LOGIN")."""

    __slots__ = ("mechanism", "_username")

    def __init__(self, mechanism: str) -> None:
        self.mechanism = mechanism
        self._username: str | None = None

    def start(self, initial: str | None) -> bytes | AuthCredentials:
        """Begin with the AUTH command's optional initial response (RFC 4954 §4)."""
        if initial is None:
            return (
                replies.AUTH_EMPTY_CHALLENGE if self.mechanism == "PLAIN" else replies.AUTH_USERNAME
            )
        if initial == "=":  # RFC 4954 §4: "=" is an empty initial response
            return self._step(b"")
        if not initial.isascii():
            return replies.AUTH_BAD_BASE64
        raw = decode_base64(initial.encode("ascii"))
        if raw is None:
            return replies.AUTH_BAD_BASE64
        return self._step(raw)

    def respond(self, line: bytes) -> bytes | AuthCredentials:
        """Continue with one client response line (without its CRLF)."""
        if line == b"*":
            return replies.AUTH_CANCELLED  # RFC 4954 §4: the client cancels with "*"
        raw = decode_base64(line)
        if raw is None:
            return replies.AUTH_BAD_BASE64
        return self._step(raw)

    def _step(self, raw: bytes) -> bytes | AuthCredentials:
        if self.mechanism == "PLAIN":
            # RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
            parts = raw.split(b"\0")
            if len(parts) != 3:
                return replies.AUTH_BAD_RESPONSE
            authzid, username, password = (_text(p) for p in parts)
            if authzid is None or not username or not password:
                return replies.AUTH_BAD_RESPONSE
            return AuthCredentials("PLAIN", authzid, username, password)
        text = _text(raw)
        if not text:
            return replies.AUTH_BAD_RESPONSE
        if self._username is None:
            self._username = text
            return replies.AUTH_PASSWORD
        return AuthCredentials("LOGIN", "", self._username, text)
