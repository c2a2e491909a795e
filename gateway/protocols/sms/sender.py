"""Outbound ``sms.send``: one REST call to the provider with treq, TLS verified.

The provider module builds the request (:meth:`Provider.build_send`) and reads the answer
(:meth:`Provider.parse_send_response`); this module only moves bytes. HTTPS is verified against
the system's trust store, or against the account's ``ca_file``; there is no switch to turn
verification off. Redirects are not followed (an API that redirects a POST is misconfigured, and
following it would hand the credentials to another host). Every failure to get an answer (refused,
TLS, timeout, oversized answer) becomes a retryable :class:`SendError` with ``http_status`` 0.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import ssl
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.http_headers import Headers

from gateway._compat.twisted_mail import quiet_pool
from gateway.protocols.sms.core import OutboundMessage, OutboundRequest, SendError, SendResult
from gateway.protocols.sms.providers.base import Provider

__all__ = ["SmsSender", "load_trust_root", "MAX_RESPONSE_SIZE"]

#: Largest provider answer read (their answers are a few hundred bytes).
MAX_RESPONSE_SIZE = 1024 * 1024

_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class ResponseTooLarge(Exception):
    """The provider's answer is larger than :data:`MAX_RESPONSE_SIZE`."""


def load_trust_root(path: str) -> Any:
    """A Twisted trust root with every certificate of the PEM file at ``path``.

    Raises:
        ValueError: the file has no PEM certificate.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as handle:
        data = handle.read()
    blocks = _PEM_CERTIFICATE.findall(data)
    if not blocks:
        raise ValueError(f"{path}: no PEM certificate found")
    return ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(block) for block in blocks])


def _describe(exc: BaseException) -> str:
    """A one-line reason, unwrapping Twisted's lists of failures (ResponseNeverReceived…)."""
    reasons = getattr(exc, "reasons", None)
    if reasons:
        return "; ".join(_describe(getattr(r, "value", r)) for r in reasons)
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


class SmsSender:
    """Sends :class:`OutboundMessage` s for one account's provider.

    Args:
        reactor: the Twisted reactor (the asyncio reactor in the daemon).
        ca_file: PEM file of CAs to trust instead of the system's store.
        timeout: seconds for the whole exchange (connect, send, read the answer).
        client: a treq ``HTTPClient`` to use (tests); built from ``reactor`` by default.
    """

    def __init__(self, reactor: Any, *, ca_file: str | None = None, timeout: float = 30.0,
                 client: Any = None) -> None:
        self.timeout = float(timeout)
        self.pool: HTTPConnectionPool | None = None
        if client is None:
            import treq.client

            self.pool = HTTPConnectionPool(reactor, persistent=True)
            self.pool.maxPersistentPerHost = 4
            self.pool.cachedConnectionTimeout = 60
            quiet_pool(self.pool)  # no "Starting factory" line per request
            policy = BrowserLikePolicyForHTTPS(trustRoot=load_trust_root(ca_file) if ca_file else None)
            agent = Agent(reactor, contextFactory=policy, pool=self.pool, connectTimeout=min(10.0, self.timeout))
            client = treq.client.HTTPClient(agent)
        self.client = client

    async def send(self, provider: Provider, message: OutboundMessage) -> SendResult:
        """Send ``message`` through ``provider``'s API and return what it answered.

        Raises:
            SendError: the provider refused it, or could not be reached (``http_status`` 0).
            LocalProtocolError: the message cannot be sent as it is (no sender, bad recipient).
        """
        request = provider.build_send(message)
        host = urlsplit(request.url).netloc
        try:
            status, headers, body = await asyncio.wait_for(self._exchange(request), self.timeout)
        except asyncio.TimeoutError:
            raise SendError(provider.name, 0, f"no answer from {host} within {self.timeout:g} s",
                            retryable=True) from None
        except ResponseTooLarge:
            raise SendError(provider.name, 0, f"the answer from {host} is larger than {MAX_RESPONSE_SIZE} bytes",
                            retryable=False) from None
        except Exception as exc:  # connection refused, TLS verification, reset: all "no answer"
            raise SendError(provider.name, 0, f"cannot reach {host}: {_describe(exc)}", retryable=True) from None
        return provider.parse_send_response(status, headers, body)

    async def _exchange(self, request: OutboundRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        import treq

        loop = asyncio.get_running_loop()
        headers = Headers()
        for name, value in request.headers:
            headers.addRawHeader(name.encode("latin-1"), value.encode("latin-1"))
        response = await self.client.request(
            request.method, request.url, headers=headers, data=request.body, allow_redirects=False,
        ).asFuture(loop)
        chunks: list[bytes] = []
        size = 0

        def collect(data: bytes) -> None:
            nonlocal size
            size += len(data)
            if size > MAX_RESPONSE_SIZE:
                raise ResponseTooLarge()
            chunks.append(data)

        await treq.collect(response, collect).asFuture(loop)
        answer_headers = [(name.decode("latin-1").lower(), value.decode("latin-1"))
                          for name, values in response.headers.getAllRawHeaders() for value in values]
        return response.code, answer_headers, b"".join(chunks)

    async def close(self) -> None:
        """Close the idle kept-alive connections."""
        if self.pool is not None:
            await self.pool.closeCachedConnections().asFuture(asyncio.get_running_loop())
