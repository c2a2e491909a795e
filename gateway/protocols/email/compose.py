"""Turn an ``email.send`` ASGI message into an SMTP envelope and wire-ready message bytes.

Two forms (``docs/asgi-email.md``):

* structured: ``to`` (address or list), optional ``cc``/``bcc``, ``subject``, ``body`` (text),
  optional ``html``, ``from``, ``headers`` (a mapping or list of ``[name, value]`` pairs, e.g.
  ``In-Reply-To``); the message is built with :class:`email.message.EmailMessage`;
* full: ``message`` (the RFC 5322 bytes), with ``to``/``from`` as the envelope, taken from the
  message's ``To``/``Cc``/``Bcc`` and ``From`` headers when absent.

A ``Date`` and a ``Message-ID`` are added when missing (RFC 5322 §3.6). The result uses CRLF line
endings and is dot-stuffed (RFC 5321 §4.5.2) so it can be written after ``DATA`` as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate, getaddresses, make_msgid
from typing import Any

from gateway.protocols.errors import LocalProtocolError

__all__ = ["Outgoing", "compose", "wire_data"]

_POLICY = policy.SMTP.clone(cte_type="7bit")  # the Twisted client does not declare 8BITMIME
_NEWLINE = re.compile(rb"\r\n|\r|\n")
_ADDRESS = re.compile(r"[^\s<>@\",;:\\()\[\]]+@[A-Za-z0-9.\-\[\]:]+\Z")


@dataclass(frozen=True)
class Outgoing:
    """A message ready to submit.

    Attributes:
        sender: the envelope sender (``MAIL FROM``).
        recipients: the envelope recipients (``RCPT TO``), To + Cc + Bcc, duplicates removed.
        data: the message after ``DATA``: CRLF line endings, dot-stuffed, ending in CRLF.
    """

    sender: str
    recipients: tuple[str, ...]
    data: bytes


def _addresses(value: Any, field: str) -> list[str]:
    """Addresses from a string ("a@x, B <b@y>") or a list of strings; checked, ASCII only."""
    if value is None:
        return []
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise LocalProtocolError(f"email.send {field} must be a string or a list of strings")
    out = []
    for name, address in getaddresses(items):
        if not _ADDRESS.match(address) or not address.isascii():
            raise LocalProtocolError(f"email.send {field}: {address or name!r} is not an ASCII email address")
        out.append(address)
    return out


def _header_pairs(headers: Any) -> Iterable[tuple[str, str]]:
    if headers is None:
        return ()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out = []
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(p, str) for p in pair):
            raise LocalProtocolError("email.send headers must be a mapping or [name, value] string pairs")
        out.append((pair[0], pair[1]))
    return out


def _unique(addresses: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for address in addresses:
        seen.setdefault(address, None)
    return tuple(seen)


def compose(message: Mapping[str, Any], default_sender: str | None) -> Outgoing:
    """Build the envelope and the data of an ``email.send`` message.

    Raises:
        LocalProtocolError: a missing or malformed field (no recipient, no sender, a header with a
            line break, a non-ASCII address).
    """
    raw = message.get("message")
    if raw is not None:
        return _compose_full(message, raw, default_sender)
    to = _addresses(message.get("to"), "to")
    cc = _addresses(message.get("cc"), "cc")
    bcc = _addresses(message.get("bcc"), "bcc")
    if not (to or cc or bcc):
        raise LocalProtocolError("email.send needs at least one recipient (to, cc or bcc)")
    from_header = message.get("from") or default_sender
    if not isinstance(from_header, str) or not from_header:
        raise LocalProtocolError("email.send needs 'from' (or a smarthost 'sender' in the configuration)")
    senders = _addresses(from_header, "from")
    if len(senders) != 1:
        raise LocalProtocolError(f"email.send from must be one address, not {from_header!r}")
    sender = senders[0]
    subject = message.get("subject", "")
    body = message.get("body", "")
    html = message.get("html")
    if not isinstance(subject, str) or not isinstance(body, str) or not isinstance(html, (str, type(None))):
        raise LocalProtocolError("email.send subject, body and html must be strings")
    email = EmailMessage(policy=_POLICY)
    try:
        email["From"] = from_header
        if to:
            email["To"] = ", ".join(_as_list(message.get("to")))
        if cc:
            email["Cc"] = ", ".join(_as_list(message.get("cc")))
        email["Subject"] = subject
        for name, value in _header_pairs(message.get("headers")):
            if name.lower() in ("bcc", "from", "to", "cc", "subject"):
                raise LocalProtocolError(f"email.send: give {name} as its own key, not in headers")
            email[name] = value
        email.set_content(body)
        if html is not None:
            email.add_alternative(html, subtype="html")
    except (ValueError, TypeError) as exc:
        raise LocalProtocolError(f"email.send: {exc}") from None
    _add_trace(email, sender)
    return Outgoing(sender, _unique(to + cc + bcc), wire_data(email.as_bytes()))


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or ())


def _compose_full(message: Mapping[str, Any], raw: Any, default_sender: str | None) -> Outgoing:
    if not isinstance(raw, (bytes, bytearray)):
        raise LocalProtocolError("email.send message must be bytes (a whole RFC 5322 message)")
    raw = bytes(raw)
    parsed = BytesParser(policy=policy.compat32).parsebytes(raw, headersonly=True)
    to = _addresses(message.get("to"), "to")
    if not to:
        headers = [str(v) for key in ("To", "Cc", "Bcc") for v in parsed.get_all(key, [])]
        to = _addresses(headers, "to") if headers else []
    if not to:
        raise LocalProtocolError("email.send needs 'to' or To/Cc/Bcc headers in the message")
    sender_value = message.get("from") or parsed.get("From") or default_sender
    senders = _addresses(str(sender_value), "from") if sender_value else []
    if not senders:
        raise LocalProtocolError("email.send needs 'from', a From header or a smarthost sender")
    head, sep, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    extra = b""
    if parsed.get("Date") is None:
        extra += b"Date: " + formatdate(localtime=False, usegmt=True).encode("ascii") + b"\r\n"
    if parsed.get("Message-ID") is None:
        extra += b"Message-ID: " + _msgid(senders[0]).encode("ascii") + b"\r\n"
    if re.search(rb"(?im)^bcc:", head):
        raise LocalProtocolError("email.send message must not carry a Bcc header; give bcc addresses in 'to'")
    return Outgoing(senders[0], _unique(to), wire_data(extra + raw))


def _msgid(sender: str) -> str:
    domain = sender.rpartition("@")[2] or None
    return make_msgid(domain=domain)


def _add_trace(email: EmailMessage, sender: str) -> None:
    if "Date" not in email:
        email["Date"] = formatdate(localtime=False, usegmt=True)
    if "Message-ID" not in email:
        email["Message-ID"] = _msgid(sender)


def wire_data(data: bytes) -> bytes:
    """CRLF line endings, a final CRLF, and dot-stuffing (RFC 5321 §4.5.2)."""
    data = _NEWLINE.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..")
