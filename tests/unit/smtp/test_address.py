"""Envelope path and parameter parsing (RFC 5321 §4.1.2, RFC 6531 §3.3)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.protocols.smtp.address import (
    AddressError,
    ParamError,
    is_ascii,
    parse_params,
    parse_path,
    split_address,
)
from tests.strategies.smtp import addresses, domains


@pytest.mark.parametrize(
    "text, address, rest",
    [
        ("<a@b.example>", "a@b.example", ""),
        ("<a@b.example> SIZE=1", "a@b.example", " SIZE=1"),
        ("<first.last+tag@sub.example.org>", "first.last+tag@sub.example.org", ""),
        ('<"john doe"@example.com>', '"john doe"@example.com', ""),
        ('<"a\\"b@c"@example.com>', '"a\\"b@c"@example.com', ""),
        ('<""@example.com>', '""@example.com', ""),
        ("<user@[192.0.2.1]>", "user@[192.0.2.1]", ""),
        ("<user@[IPv6:2001:db8::1]>", "user@[IPv6:2001:db8::1]", ""),
        ("<user@[x-tag:anything]>", "user@[x-tag:anything]", ""),
        ("<@relay.example,@b.example:user@c.example>", "user@c.example", ""),
        ("<jörg@bücher.example>", "jörg@bücher.example", ""),
        ("<a@localhost>", "a@localhost", ""),
        ("<x-@a-b.example>", "x-@a-b.example", ""),
    ],
)
def test_valid_paths(text, address, rest):
    assert parse_path(text) == (address, rest)


@pytest.mark.parametrize(
    "text",
    [
        "a@b.example",
        "<a@b.example",
        "<a>",
        "<@b.example>",
        "<a@>",
        "<a..b@c.example>",
        "<.a@c.example>",
        "<a.@c.example>",
        "<a b@c.example>",
        '<"unterminated@c.example>',
        "<a@-b.example>",
        "<a@b-.example>",
        "<a@b..example>",
        "<a@b.example.>",
        "<a@[300.1.1.1]>",
        "<a@[IPv6:zz::1]>",
        "<a@[1.2.3]>",
        "<a@[]>",
        "<a@b@c.example>",
        "<a\x00@b.example>",
        "<@relay.example:>",
        "<@-bad.example:a@b.example>",
        "<>",
        "<postmaster>",
        "<a@" + "x" * 64 + ".example>",
        "<a@" + ".".join(["abcdefghij"] * 24) + ">",
    ],
)
def test_invalid_paths(text):
    with pytest.raises(AddressError):
        parse_path(text)


def test_null_path_and_postmaster():
    assert parse_path("<> BODY=7BIT", null_ok=True) == ("", " BODY=7BIT")
    assert parse_path("<PostMaster>", postmaster_ok=True) == ("PostMaster", "")
    assert parse_path("<postmaster@x.example>", postmaster_ok=True)[0] == "postmaster@x.example"


def test_split_address():
    assert split_address('"a@b"@c.example') == ('"a@b"', "c.example")
    assert split_address("Postmaster") == ("Postmaster", "")
    assert split_address("") == ("", "")
    assert is_ascii("a@b") and not is_ascii("é@b")


def test_params():
    assert parse_params(" SIZE=10 body=8BITMIME  SMTPUTF8") == {
        "SIZE": "10",
        "BODY": "8BITMIME",
        "SMTPUTF8": None,
    }
    assert parse_params("") == {}
    for bad in ("-X", "A=", "A=b=c", "A=x A=y", "K\x01=1"):
        with pytest.raises(ParamError):
            parse_params(bad)


@given(address=st.one_of(addresses(), addresses(utf8=True)), rest=st.sampled_from(["", " SIZE=1"]))
def test_generated_addresses_parse_back(address, rest):
    assert parse_path(f"<{address}>{rest}") == (address, rest)


@given(route=st.lists(domains(), min_size=1, max_size=3), address=addresses())
def test_source_routes_are_dropped(route, address):
    adl = ",".join("@" + d for d in route)
    assert parse_path(f"<{adl}:{address}>") == (address, "")


@given(text=st.text(max_size=80))
def test_arbitrary_text_gives_a_path_or_address_error(text):
    try:
        address, rest = parse_path(text, null_ok=True, postmaster_ok=True)
    except AddressError:
        return
    assert text.endswith(rest)
    assert address in text


def test_hostile_paths_are_rejected_quickly():
    """Possessive quantifiers: no catastrophic backtracking on long near-misses."""
    hostile = [
        "<" + "a." * 2000 + ">",
        "<a@" + "b-" * 2000 + ">",
        "<a@" + "b." * 2000 + ">",
        '<"' + "\\a" * 2000 + ">",
        "<" + "@a," * 1000 + ":x>",
    ]
    # CPU time of this process, which other load on the machine does not inflate: well under
    # a millisecond when linear; catastrophic backtracking on 2,000 repetitions never ends.
    start = time.process_time()
    for text in hostile:
        with pytest.raises(AddressError):
            parse_path(text)
    assert time.process_time() - start < 0.5
