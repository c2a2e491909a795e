"""The Twisted TLS internal gateway._compat.twisted_tls reads is still there."""

from __future__ import annotations

import trustme
from twisted.internet import ssl

from gateway._compat.twisted_tls import ca_certificates


def test_a_trust_root_from_certificates_gives_them_back() -> None:
    ca = trustme.CA()
    certificate = ssl.Certificate.loadPEM(ca.cert_pem.bytes())
    found = ca_certificates(ssl.trustRootFromCertificates([certificate]))
    assert found is not None
    assert [c.digest("sha256") for c in found] == [certificate.original.digest("sha256")]


def test_the_platform_trust_has_none() -> None:
    assert ca_certificates(ssl.platformTrust()) is None
