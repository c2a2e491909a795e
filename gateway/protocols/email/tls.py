"""Client TLS for the email listeners' outbound connections (the smarthost, the IMAP server):
the server's certificate is always verified, with service-identity."""

from __future__ import annotations

from typing import Any

__all__ = ["client_tls_options", "pem_certificates"]


def client_tls_options(hostname: str, ca_file: str | None) -> Any:
    """Twisted client TLS options that verify the server's certificate for ``hostname``.

    Verification uses service-identity (through :func:`twisted.internet.ssl.optionsForClientTLS`)
    against the platform's trust store, or only the CA certificates in ``ca_file`` (PEM, one or
    more) when it is given.
    """
    from twisted.internet import ssl

    trust: Any = None
    if ca_file is not None:
        with open(ca_file, "rb") as handle:
            pem = handle.read()
        certificates = [ssl.Certificate.loadPEM(block) for block in pem_certificates(pem)]
        if not certificates:
            raise ValueError(f"{ca_file} holds no PEM certificate")
        trust = ssl.trustRootFromCertificates(certificates)
    return ssl.optionsForClientTLS(hostname, trustRoot=trust)


def pem_certificates(pem: bytes) -> list[bytes]:
    """The PEM blocks of the certificates in ``pem``, each with its BEGIN and END lines."""
    end = b"-----END CERTIFICATE-----"
    blocks = []
    for part in pem.split(end)[:-1]:
        start = part.find(b"-----BEGIN CERTIFICATE-----")
        if start >= 0:
            blocks.append(part[start:] + end + b"\n")
    return blocks
