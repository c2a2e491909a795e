"""The private parts of Twisted that ``gateway._compat.twisted_ports`` relies on are still there
and mean what they meant: these fail first when a Twisted upgrade changes them."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from twisted.internet import tcp
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor, MemoryReactorClock
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol

from gateway._compat.twisted_ports import server_context_factory, set_port_logger, tls_handshake_done


def test_an_ssl_server_endpoint_keeps_its_context_factory(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    cert = trustme.CA().issue_cert("localhost")
    pem = tmp_path / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    endpoint = serverFromString(MemoryReactor(), f"ssl:0:privateKey={pem}")
    factory = server_context_factory(endpoint)
    assert factory is not None
    from OpenSSL import SSL

    with warnings.catch_warnings():  # Twisted's ssl: parser still hands pyOpenSSL X509 objects over
        warnings.simplefilter("ignore", DeprecationWarning)
        context = factory.getContext()
    assert isinstance(context, SSL.Context)
    assert factory.getContext() is context  # cached: what the policy changes is what connections use
    assert server_context_factory(serverFromString(MemoryReactor(), "tcp:0")) is None


def test_the_tls_protocol_records_a_finished_handshake() -> None:
    assert TLSMemoryBIOProtocol._handshakeDone is False
    assert tls_handshake_done(TLSMemoryBIOProtocol.__new__(TLSMemoryBIOProtocol)) is False


def test_a_tcp_port_logs_its_accept_errors_through_its_logger() -> None:
    import inspect

    source = inspect.getsource(tcp.Port.doRead)
    assert "self._logger.observer" in source and "self.numberAccepts" in source
    assert "EMFILE encountered" in inspect.getsource(tcp._accept)
    port = tcp.Port(0, Factory(), interface="127.0.0.1", reactor=MemoryReactorClock())
    port.startListening()
    try:
        logger = Logger(namespace="test", observer=lambda event: None)
        assert set_port_logger(port, logger)
        assert port._logger is logger
        assert port.numberAccepts == 100  # the first accept batch; the AcceptGate sizes the next ones
    finally:
        port.connectionLost(None)
