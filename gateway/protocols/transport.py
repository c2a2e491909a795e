"""Helpers every Twisted adapter uses: addresses and the ASGI ``tls`` extension.

The fast writes (:func:`~gateway._compat.tcp.write_through`) are in :mod:`gateway._compat.tcp`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.internet.interfaces import ISSLTransport

__all__ = [
    "Drain",
    "address_tuple",
    "is_tls",
    "server_tuple",
    "tls_extension",
]


def address_tuple(address: Any) -> tuple[str, int] | None:
    """``(host, port)`` for an IPv4/IPv6 address, ``None`` for anything else (UNIX sockets)."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None or port is None:
        return None
    return (host, port)


def server_tuple(address: Any) -> tuple[str, int | None] | None:
    """The ASGI ``server`` value: ``(host, port)``, or ``(path, None)`` for a UNIX socket."""
    pair = address_tuple(address)
    if pair is not None:
        return pair
    name = getattr(address, "name", None)
    if name:
        return (name.decode() if isinstance(name, bytes) else str(name), None)
    return None


def is_tls(transport: Any) -> bool:
    """Whether the transport is encrypted."""
    return ISSLTransport.providedBy(transport)


def tls_extension(transport: Any) -> dict[str, Any] | None:
    """The ASGI ``tls`` extension (0.2) for an established TLS connection, else ``None``.

    ``server_cert`` is the PEM of our certificate, ``client_cert_chain`` the client's
    certificates in PEM (empty without client certificates), ``tls_version`` and
    ``cipher_suite`` the negotiated protocol version and cipher suite numbers.
    """
    if not is_tls(transport):
        return None
    try:
        connection = transport.getHandle()
    except Exception:
        return None
    from OpenSSL import crypto

    info: dict[str, Any] = {
        "server_cert": None,
        "client_cert_chain": [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": None,
        "cipher_suite": None,
    }
    try:
        own = connection.get_certificate()
        if own is not None:
            info["server_cert"] = crypto.dump_certificate(crypto.FILETYPE_PEM, own).decode("ascii")
        chain = connection.get_peer_cert_chain() or []
        info["client_cert_chain"] = [crypto.dump_certificate(crypto.FILETYPE_PEM, c).decode("ascii") for c in chain]
        peer = connection.get_peer_certificate()
        if peer is not None:
            info["client_cert_name"] = ", ".join(
                f"{k.decode()}={v.decode()}" for k, v in peer.get_subject().get_components()
            )
        info["tls_version"] = connection.get_protocol_version()
        info["cipher_suite"] = _cipher_id(connection)
    except Exception:  # a half-finished handshake: report what we have
        pass
    # ASGI tls_version is the 16-bit wire value (0x0304 for TLS 1.3); pyOpenSSL gives it as is.
    return info


_CIPHER_IDS: dict[str, int] | None = None


def _cipher_id(connection: Any) -> int | None:
    """The IANA number of the negotiated cipher suite (pyOpenSSL only gives its name)."""
    global _CIPHER_IDS
    name = connection.get_cipher_name()
    if name is None:
        return None
    if _CIPHER_IDS is None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.set_ciphers("ALL:@SECLEVEL=0")
        except ssl.SSLError:  # pragma: no cover
            pass
        _CIPHER_IDS = {c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()}
    return _CIPHER_IDS.get(name)


class Drain:
    """The ``send()`` calls waiting for a connection's write buffer to drain.

    An adapter registered as a streaming producer learns from ``pauseProducing`` that the buffer
    is full and from ``resumeProducing`` that it drained; meanwhile each ``send()`` awaits
    :meth:`wait`, and :meth:`release` (on resume, and when the connection is lost) wakes them all.
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def wait(self) -> asyncio.Future[None]:
        """A future that completes when the buffer drained (or the connection was lost)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    def release(self) -> None:
        """Wake every waiting ``send()``."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
