"""TLS: the policy of the daemon's listeners (which cipher suites and versions a server accepts),
and the options of its outbound connections (the smarthost, the IMAP server, an MQTT connector's
broker), whose server certificate is always verified, with service-identity.

Twisted's own defaults still offer, under TLS 1.2, suites without forward secrecy (``AES128-SHA``,
``AES256-SHA256``: RSA key exchange) and CBC with SHA-1 MACs (``ECDHE-RSA-AES128-SHA``). The
gateway's default is Mozilla's *intermediate* policy instead (the "general-purpose server" of
https://wiki.mozilla.org/Security/Server_Side_TLS, version 5.7): TLS 1.2 with ECDHE or DHE key
exchange and AES-GCM or ChaCha20-Poly1305 only, and TLS 1.3 with OpenSSL's suites (all forward
secret and AEAD). ``min_version: "1.3"`` is Mozilla's *modern* policy. Every listener can choose
its own (the ``ssl:`` key of a listener whose endpoint is ``ssl:``, and SMTP's ``tls:`` for STARTTLS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from OpenSSL import SSL

__all__ = [
    "INTERMEDIATE", "TLSPolicyError", "apply_policy", "certificate_options", "cipher_string", "client_tls_options",
    "pem_certificates",
]

#: Mozilla's intermediate TLS 1.2 cipher suites, in its order (OpenSSL names).
INTERMEDIATE = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
])

#: Named policies for ``tls.ciphers``.
POLICIES = {"intermediate": INTERMEDIATE}


class Policy(Protocol):
    """A listener's TLS policy (``gateway.config.schema.TLSPolicy``): a cipher setting and the
    oldest version accepted (``"1.2"`` or ``"1.3"``)."""

    @property
    def ciphers(self) -> str: ...

    @property
    def min_version(self) -> str: ...


class TLSPolicyError(ValueError):
    """A cipher setting the local OpenSSL cannot use; the message says why."""


def cipher_string(ciphers: str) -> str:
    """The OpenSSL cipher string for a ``tls.ciphers`` setting (a policy name or a cipher string).

    Raises:
        TLSPolicyError: the string selects no cipher suite this OpenSSL knows.
    """
    text = POLICIES.get(ciphers, ciphers)
    from OpenSSL import SSL

    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    try:
        context.set_cipher_list(text.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError):
        names = ", ".join(sorted(POLICIES))
        raise TLSPolicyError(
            f"{ciphers!r} selects no cipher suite this OpenSSL knows; use {names} or an OpenSSL cipher string "
            "(openssl ciphers -v 'STRING' lists what a string selects)"
        ) from None
    return text


def _version(name: str) -> int:
    from OpenSSL import SSL

    return {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}[name]


def apply_policy(context: SSL.Context, config: Policy | None) -> None:
    """Restrict ``context`` (a server's pyOpenSSL context) to the policy of ``config`` (default:
    intermediate, TLS 1.2 and newer)."""
    ciphers, min_version = (config.ciphers, config.min_version) if config is not None else ("intermediate", "1.2")
    context.set_min_proto_version(_version(min_version))
    context.set_cipher_list(cipher_string(ciphers).encode("ascii"))


def certificate_options(config: Policy | None, **kwargs: Any) -> Any:
    """``twisted.internet.ssl.CertificateOptions(**kwargs)`` under the policy of ``config`` (for
    TLS the daemon starts itself, such as SMTP's STARTTLS)."""
    from twisted.internet import ssl

    ciphers, min_version = (config.ciphers, config.min_version) if config is not None else ("intermediate", "1.2")
    return ssl.CertificateOptions(
        acceptableCiphers=ssl.AcceptableCiphers.fromOpenSSLCipherString(cipher_string(ciphers)),
        raiseMinimumTo=ssl.TLSVersion.TLSv1_3 if min_version == "1.3" else None,
        **kwargs,
    )

def client_tls_options(hostname: str, ca_file: str | None, cert_file: str | None = None,
                       key_file: str | None = None) -> Any:
    """Twisted client TLS options that verify the server's certificate for ``hostname``.

    Verification uses service-identity (through :func:`twisted.internet.ssl.optionsForClientTLS`)
    against the platform's trust store, or only the CA certificates in ``ca_file`` (PEM, one or
    more) when it is given. ``cert_file`` (PEM; with its key unless ``key_file`` holds it) is a
    client certificate to present to servers that ask for one.
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
    client = None
    if cert_file is not None:
        with open(cert_file, "rb") as handle:
            pem = handle.read()
        if key_file is not None:
            with open(key_file, "rb") as handle:
                pem += b"\n" + handle.read()
        client = ssl.PrivateCertificate.loadPEM(pem)
    return ssl.optionsForClientTLS(hostname, trustRoot=trust, clientCertificate=client)


def pem_certificates(pem: bytes) -> list[bytes]:
    """The PEM blocks of the certificates in ``pem``, each with its BEGIN and END lines."""
    end = b"-----END CERTIFICATE-----"
    blocks = []
    for part in pem.split(end)[:-1]:
        start = part.find(b"-----BEGIN CERTIFICATE-----")
        if start >= 0:
            blocks.append(part[start:] + end + b"\n")
    return blocks
