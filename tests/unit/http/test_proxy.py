"""Proxy headers are honoured only from trusted proxies, rightmost untrusted hop first."""

from __future__ import annotations

from gateway.protocols.http.proxy import TrustedProxies

H = list[tuple[bytes, bytes]]


def test_untrusted_peer_headers_are_ignored() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    headers: H = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-proto", b"https")]
    assert proxies.resolve(("203.0.113.9", 5000), "http", headers) == (("203.0.113.9", 5000), "http", None)


def test_x_forwarded_for_takes_the_rightmost_untrusted_hop() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    headers: H = [(b"x-forwarded-for", b"6.6.6.6, 198.51.100.7, 10.1.2.3"), (b"x-forwarded-proto", b"https"),
                  (b"x-forwarded-host", b"example.org")]
    assert proxies.resolve(("10.0.0.1", 5000), "http", headers) == (("198.51.100.7", 0), "https", b"example.org")


def test_all_hops_trusted_gives_the_leftmost() -> None:
    proxies = TrustedProxies(["*"])
    headers: H = [(b"x-forwarded-for", b"198.51.100.7, 10.1.2.3")]
    assert proxies.resolve(("10.0.0.1", 1), "http", headers)[0] == ("198.51.100.7", 0)


def test_forwarded_header_rfc_7239() -> None:
    headers: H = [(b"forwarded", b'for=198.51.100.7;proto=https;host="ex.org", for="[2001:db8::1]:4711", for=10.0.0.5')]
    # Each proxy appends the client it saw; trust stops at the first untrusted hop, and so
    # does what we believe of proto and host.
    proxies = TrustedProxies(["127.0.0.1", "10.0.0.0/8"])
    assert proxies.resolve(("127.0.0.1", 1), "http", headers) == (("2001:db8::1", 4711), "http", None)
    proxies = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"])
    assert proxies.resolve(("127.0.0.1", 1), "http", headers) == (("198.51.100.7", 0), "https", b"ex.org")


def test_forwarded_obfuscated_node_stops_the_walk() -> None:
    proxies = TrustedProxies(["127.0.0.1"])
    headers: H = [(b"forwarded", b"for=_hidden")]
    assert proxies.resolve(("127.0.0.1", 1), "http", headers)[0] == ("127.0.0.1", 1)


def test_unix_socket_peers() -> None:
    assert TrustedProxies(["unix"]).resolve(None, "http", [(b"x-forwarded-for", b"1.2.3.4")])[0] == ("1.2.3.4", 0)
    assert TrustedProxies(["127.0.0.1"]).resolve(None, "http", [(b"x-forwarded-for", b"1.2.3.4")])[0] is None


def test_header_families_can_be_restricted() -> None:
    proxies = TrustedProxies(["127.0.0.1"], headers=["forwarded"])
    headers: H = [(b"x-forwarded-for", b"1.2.3.4")]
    assert proxies.resolve(("127.0.0.1", 1), "http", headers)[0] == ("127.0.0.1", 1)
