"""The ``email`` scope of a message read from an IMAP mailbox (``docs/asgi-email.md``)."""

from __future__ import annotations

from email import policy
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import Any

from gateway.protocols.imap.config import ImapListenerConfig

__all__ = ["message_scope", "tls_details"]

_HEADERS = BytesHeaderParser(policy=policy.compat32)
ASGI_VERSION = {"version": "3.0", "spec_version": "1.0"}


def _addresses(values: list[Any] | None) -> list[str]:
    return [address for _, address in getaddresses([str(v) for v in values or ()]) if address]


def message_scope(config: ImapListenerConfig, uid: int, raw: bytes, *, uidvalidity: int | None,
                  tls: dict[str, Any] | None, state: dict[str, Any] | None, can_send: bool) -> dict[str, Any]:
    """The scope for message ``uid`` of the configured mailbox.

    ``recipients`` (what routers route on): the configured ones, else the ``Delivered-To`` headers
    the delivering server added, else ``To`` and ``Cc``. ``sender``: ``Return-Path`` (the envelope
    sender the delivering server recorded, RFC 5321 §4.4), else ``From``.
    """
    headers = _HEADERS.parsebytes(raw, headersonly=True)
    recipients = list(config.recipients)
    if not recipients:
        recipients = _addresses(headers.get_all("Delivered-To")) or _addresses(
            [*(headers.get_all("To") or ()), *(headers.get_all("Cc") or ())]
        )
    senders = _addresses(headers.get_all("Return-Path")) or _addresses(headers.get_all("From"))
    return {
        "type": "email",
        "asgi": ASGI_VERSION,
        "source": "imap",
        "sender": senders[0] if senders else "",
        "recipients": recipients,
        "helo": None,
        "client": None,
        "server": (config.host, config.effective_port),
        "tls": tls,
        "auth_user": None,
        "mailbox": config.mailbox,
        "uid": uid,
        "uidvalidity": uidvalidity,
        "size": len(raw),
        "state": dict(state) if state else {},
        "extensions": {"email.send": {}} if can_send else {},
    }


def tls_details(transport: Any) -> dict[str, Any] | None:
    """The ``tls`` scope key for our client connection: the server's certificate and the session."""
    try:
        connection = transport.getHandle()
        from OpenSSL import crypto

        peer = connection.get_peer_certificate()
        return {
            "server_cert": crypto.dump_certificate(crypto.FILETYPE_PEM, peer).decode("ascii") if peer else None,
            "client_cert_chain": [],
            "client_cert_name": None,
            "client_cert_error": None,
            "tls_version": connection.get_protocol_version(),
            "cipher_suite": None,
            "cipher_name": connection.get_cipher_name(),
        }
    except Exception:  # not a TLS transport, or the handshake is not finished
        return None
