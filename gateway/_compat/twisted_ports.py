"""Private parts of Twisted's listening ports and TLS that the listeners use.

* ``SSL4ServerEndpoint._sslContextFactory``: the ``CertificateOptions`` an ``ssl:`` endpoint
  string was parsed into, so the daemon applies its TLS policy to it (the string has no cipher
  option; :func:`server_context_factory`).
* ``TLSMemoryBIOProtocol._handshakeDone``: whether a server's TLS handshake has finished, for the
  per-listener handshake limit (:func:`tls_handshake_done`; Twisted tells only the wrapped
  protocol, through ``IHandshakeListener``, and the gateway's adapters do not implement it).
* ``tcp.Port._logger``: the logger a port reports accept errors to (``EMFILE`` and the like, at
  INFO), so the listener can report them at ERROR with its name (:func:`set_port_logger`).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger


def server_context_factory(endpoint: Any) -> Any | None:
    """The context factory of an ``ssl:`` server endpoint, ``None`` for any other endpoint."""
    from twisted.internet.endpoints import SSL4ServerEndpoint

    if not isinstance(endpoint, SSL4ServerEndpoint):
        return None
    return endpoint._sslContextFactory


def tls_handshake_done(protocol: Any) -> bool:
    """Whether the TLS handshake of a ``TLSMemoryBIOProtocol`` has finished."""
    return bool(protocol._handshakeDone)


def set_port_logger(port: Any, logger: Logger) -> bool:
    """Make a TCP/UNIX listening port log its accept errors to ``logger``; False if it has none."""
    if not isinstance(getattr(port, "_logger", None), Logger):
        return False
    port._logger = logger
    return True


def adopt_stream_port(reactor: Any, fd: int, family: int, factory: Any) -> Any:
    """``reactor.adoptStreamPort``, except that an adopted UNIX port leaves its socket file alone:
    Twisted would chmod it to 0666 on start and unlink it on stop, but the supervisor of the
    workers owns the file (its mode, its removal when the daemon stops)."""
    import socket

    if family != socket.AF_UNIX:
        return reactor.adoptStreamPort(fd, family, factory)
    from twisted.internet import unix

    port = unix.Port._fromListeningDescriptor(reactor, fd, factory)
    port._bindPath = "\0"  # "abstract namespace" to Twisted: no chmod, no unlink
    port.startListening()
    port._shouldShutdown = False  # shutdown() would stop the socket for every worker (TCP ports know)
    return port
