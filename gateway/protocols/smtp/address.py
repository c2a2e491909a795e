"""Parsing of SMTP envelope paths and ESMTP parameters (RFC 5321 §4.1.2, RFC 6531 §3.3).

``parse_path`` reads the ``<...>`` path at the start of the text after ``MAIL FROM:`` or
``RCPT TO:`` and returns the mailbox as written (a quoted local part keeps its quotes, case is kept:
RFC 5321 §2.4 makes the local part case-sensitive) and the text that follows it. It accepts:

* ``<>``, the null reverse-path (bounces), when ``null_ok``;
* ``<Postmaster>`` without a domain, when ``postmaster_ok`` (RFC 5321 §4.1.1.3, RCPT only);
* dot-string and quoted-string local parts, domains and address literals (``[192.0.2.1]``,
  ``[IPv6:2001:db8::1]``, ``[tag:content]``);
* a source route (``<@relay.example,@other.example:user@example.org>``), which RFC 5321 §4.1.1.3 and
  Appendix C tell servers to accept and ignore: it is dropped from the result;
* UTF-8 in local parts and domains (RFC 6531 §3.3). Whether the transaction allows it (the
  SMTPUTF8 parameter) is the caller's check: :func:`is_ascii`.

The regular expressions use possessive quantifiers, so a hostile 1,000-character path is rejected in
linear time. No limit is put on the local part's length: SRS and VERP addresses routinely exceed
the 64 octets of RFC 5321 §4.5.3.1.1, and Postfix accepts them; the command line limit bounds it.
Domains keep the DNS limits (labels of 63 octets, 255 in all, RFC 1035 §2.3.4).
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["AddressError", "ParamError", "parse_path", "parse_params", "split_address", "is_ascii"]


class AddressError(ValueError):
    """The text does not start with a valid path."""


class ParamError(ValueError):
    """The ESMTP parameters are malformed (RFC 5321 §4.1.2 ``Mail-parameters``)."""


_U = "\u0080-\U0010ffff"  # RFC 6531 §3.3: UTF8-non-ascii extends atext, qtext and sub-domains
_ATEXT = "A-Za-z0-9!#$%&'*+\\-/=?^_`{|}~" + _U
_DOT_STRING = f"[{_ATEXT}]++(?:\\.[{_ATEXT}]++)*+"
_QUOTED = f'"(?:[\\x20\\x21\\x23-\\x5b\\x5d-\\x7e{_U}]|\\\\[\\x20-\\x7e])*+"'
_DOMAIN = f"[A-Za-z0-9\\-{_U}]++(?:\\.[A-Za-z0-9\\-{_U}]++)*+"
_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]++\]"  # dcontent = %d33-90 / %d94-126 (no "[", "\", "]")
_ADL = f"@{_DOMAIN}(?:,@{_DOMAIN})*+:"

_PATH = re.compile(
    f"<(?P<adl>{_ADL})?(?P<local>{_DOT_STRING}|{_QUOTED})@(?P<domain>{_DOMAIN}|{_LITERAL})>"
)
_POSTMASTER = re.compile(r"<(?i:postmaster)>")
_GENERAL_LITERAL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?:[\x21-\x5a\x5e-\x7e]+\Z")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*\Z")
_VALUE = re.compile(f"[\\x21-\\x3c\\x3e-\\x7e{_U}]+\\Z")


def _check_domain(domain: str) -> None:
    if len(domain.encode("utf-8")) > 255:
        raise AddressError("domain longer than 255 octets")
    for label in domain.split("."):
        # RFC 5321 §4.1.2 sub-domain = Let-dig [Ldh-str]: no hyphen at either end.
        if label.startswith("-") or label.endswith("-"):
            raise AddressError(f"domain label {label!r} starts or ends with a hyphen")
        if label.isascii() and len(label) > 63:
            raise AddressError("domain label longer than 63 octets")


def _check_literal(literal: str) -> None:
    inner = literal[1:-1]
    if inner[:5].lower() == "ipv6:":
        try:
            ipaddress.IPv6Address(inner[5:])
        except ValueError:
            raise AddressError(f"bad IPv6 address literal {literal}") from None
    elif inner[:1].isdigit() and ":" not in inner:
        try:
            ipaddress.IPv4Address(inner)
        except ValueError:
            raise AddressError(f"bad IPv4 address literal {literal}") from None
    elif not _GENERAL_LITERAL.match(inner):
        raise AddressError(f"bad address literal {literal}")


def parse_path(text: str, *, null_ok: bool = False, postmaster_ok: bool = False) -> tuple[str, str]:
    """Parse the path at the start of ``text``.

    Returns:
        ``(address, rest)``: the mailbox as written ("" for the null path ``<>``, the source route
        dropped) and the text after the closing ``>`` (the caller checks that it is empty or
        starts with a space before the parameters).

    Raises:
        AddressError: no valid path at the start of ``text``.
    """
    if null_ok and text.startswith("<>"):
        return "", text[2:]
    match = _PATH.match(text)
    if match is None:
        if postmaster_ok:
            pm = _POSTMASTER.match(text)
            if pm is not None:
                return text[1 : pm.end() - 1], text[pm.end() :]
        raise AddressError("expected <local-part@domain>")
    adl = match.group("adl")
    if adl:
        for hop in adl[:-1].split(","):
            _check_domain(hop[1:])
    domain = match.group("domain")
    if domain.startswith("["):
        _check_literal(domain)
    else:
        _check_domain(domain)
    return f"{match.group('local')}@{domain}", text[match.end() :]


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``SP``-separated ``KEYWORD[=value]`` parameters (RFC 5321 §4.1.2).

    Keywords are upper-cased; a keyword without ``=`` maps to ``None``.

    Raises:
        ParamError: a malformed keyword or value, or a keyword given twice.
    """
    params: dict[str, str | None] = {}
    for item in text.split():
        keyword, eq, value = item.partition("=")
        if not _KEYWORD.match(keyword):
            raise ParamError(f"bad parameter keyword {keyword!r}")
        if eq and not _VALUE.match(value):
            raise ParamError(f"bad value for parameter {keyword}")
        key = keyword.upper()
        if key in params:
            raise ParamError(f"parameter {key} given twice")
        params[key] = value if eq else None
    return params


def split_address(address: str) -> tuple[str, str]:
    """Split a mailbox from :func:`parse_path` into ``(local_part, domain)``.

    The split is at the last ``@`` (a quoted local part may contain ``@``, a domain never does);
    ``Postmaster`` alone gives ``("Postmaster", "")``, the null path ``("", "")``.
    """
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    return local, domain


def is_ascii(address: str) -> bool:
    """True when the address needs no SMTPUTF8 (RFC 6531 §3.4)."""
    return address.isascii()
