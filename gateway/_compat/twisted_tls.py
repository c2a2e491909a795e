"""Twisted's TLS internals the Redis layer relies on (tested in ``tests/unit/compat/test_twisted_tls.py``).

``ssl.trustRootFromCertificates`` returns an ``OpenSSLCertificateAuthorities`` (a private class)
whose certificates are kept in ``_caCerts``; a connection that checks the server's certificate
against a CA file but not its host name (``ssl_check_hostname=false``) needs those certificates
as ``CertificateOptions(caCerts=...)``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ca_certificates"]


def ca_certificates(trust: Any) -> list[Any] | None:
    """The CA certificates of a trust root made from certificates, or None for another kind
    (the platform's trust store)."""
    from twisted.internet._sslverify import OpenSSLCertificateAuthorities

    if isinstance(trust, OpenSSLCertificateAuthorities):
        return list(trust._caCerts)
    return None
