# -*- test-case-name: tests.unit.http.test_proxy -*-
"""Proxy headers, honoured only from trusted proxies.

``X-Forwarded-For`` and ``Forwarded: for=`` list every hop; a client can put anything on the
left. The client address is therefore taken from the right: the first hop, walking leftwards
from the peer, that is not itself a trusted proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """A set of trusted proxy addresses and networks.

    Args:
        entries: IP addresses, networks (``10.0.0.0/8``), ``unix`` (connections over a UNIX
            socket) or ``*`` (everyone; only behind a proxy that strips these headers).
        headers: the header families to honour: ``forwarded`` and/or ``x-forwarded``.
    """

    def __init__(self, entries: Iterable[str], headers: Iterable[str] = ("forwarded", "x-forwarded")) -> None:
        self.any = False
        self.unix = False
        self.networks: list[Network] = []
        for entry in entries:
            if entry == "*":
                self.any = True
            elif entry == "unix":
                self.unix = True
            else:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
        families = set(headers)
        self.forwarded = "forwarded" in families
        self.x_forwarded = "x-forwarded" in families
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return self.any or self.unix or bool(self.networks)

    def trusts(self, host: str | None) -> bool:
        """Whether a peer at ``host`` (``None`` for a UNIX socket) is a trusted proxy."""
        if host is None:
            return self.unix or self.any
        if self.any:
            return True
        known = self._cache.get(host)
        if known is None:
            try:
                address = ipaddress.ip_address(host.strip("[]"))
            except ValueError:
                known = False
            else:
                known = any(address in network for network in self.networks)
            if len(self._cache) < 4096:
                self._cache[host] = known
        return known

    def resolve(
        self, client: tuple[str, int] | None, scheme: str, headers: list[tuple[bytes, bytes]]
    ) -> tuple[tuple[str, int] | None, str, bytes | None]:
        """Apply proxy headers sent by a trusted peer.

        Args:
            client: the peer address of the connection.
            scheme: ``http`` or ``https`` as seen on the connection.
            headers: the request's header fields (lower-case names).

        Returns:
            ``(client, scheme, host)``: the original client address, scheme and ``Host`` value
            (``None`` when no proxy header gave one).
        """
        if not self.trusts(client[0] if client else None):
            return client, scheme, None
        forwarded: list[bytes] = []
        xff: list[bytes] = []
        proto = host = None
        for name, value in headers:
            if name == b"forwarded" and self.forwarded:
                forwarded.append(value)
            elif self.x_forwarded and name.startswith(b"x-forwarded-"):
                if name == b"x-forwarded-for":
                    xff.append(value)
                elif name == b"x-forwarded-proto":
                    proto = value
                elif name == b"x-forwarded-host":
                    host = value
        if forwarded:
            return self._resolve_forwarded(client, scheme, b",".join(forwarded))
        if xff:
            hops = [h.strip().decode("latin-1") for h in b",".join(xff).split(b",") if h.strip()]
            chosen = self._rightmost_untrusted(hops)
            if chosen is not None:
                # The client's port is not carried by X-Forwarded-For.
                client = (chosen, 0)
        if proto is not None:
            value = proto.split(b",")[-1].strip().lower()
            if value in (b"http", b"https", b"ws", b"wss"):
                scheme = value.decode("ascii")
        if host is not None:
            host = host.split(b",")[-1].strip() or None
        return client, scheme, host

    def _rightmost_untrusted(self, hops: list[str]) -> str | None:
        for hop in reversed(hops):
            address = _strip_port(hop)
            if not self.trusts(address):
                return address
        # Every hop is a trusted proxy: the leftmost is the client.
        return _strip_port(hops[0]) if hops else None

    def _resolve_forwarded(
        self, client: tuple[str, int] | None, scheme: str, value: bytes
    ) -> tuple[tuple[str, int] | None, str, bytes | None]:
        elements = [_parse_forwarded_element(e) for e in value.decode("latin-1").split(",")]
        elements = [e for e in elements if e]
        host: bytes | None = None
        # Walk from the nearest proxy outwards; stop at the first hop we do not trust.
        for element in reversed(elements):
            for_value = element.get("for")
            if element.get("proto") in ("http", "https"):
                scheme = element["proto"]
            if "host" in element:
                host = element["host"].encode("latin-1")
            if for_value is None:
                continue
            address, port = _split_node(for_value)
            if address is None:
                break
            client = (address, port)
            if not self.trusts(address):
                break
        return client, scheme, host


def _strip_port(hop: str) -> str:
    hop = hop.strip()
    if hop.startswith("["):
        return hop[1 : hop.find("]")] if "]" in hop else hop
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop


def _parse_forwarded_element(element: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for pair in element.split(";"):
        key, sep, value = pair.strip().partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"')
        pairs[key.strip().lower()] = value
    return pairs


def _split_node(node: str) -> tuple[str | None, int]:
    """RFC 7239 6: ``192.0.2.43:47011``, ``"[2001:db8::1]:4711"``, ``unknown``, ``_hidden``."""
    if node.startswith("["):
        end = node.find("]")
        if end < 0:
            return None, 0
        address, rest = node[1:end], node[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    elif node.count(":") == 1:
        address, port = node.split(":", 1)
    else:
        address, port = node, ""
    if address.lower() == "unknown" or address.startswith("_"):
        return None, 0
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return None, 0
    return address, int(port) if port.isdigit() else 0


def describe(proxies: Any) -> str:
    """A short description for logs."""
    if not proxies:
        return "no trusted proxies"
    parts = [str(n) for n in proxies.networks]
    if proxies.unix:
        parts.append("unix")
    if proxies.any:
        parts.append("*")
    return ", ".join(parts)
