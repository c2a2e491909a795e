"""The private parts of Twisted that ``gateway._compat.twisted_mail`` relies on are still there
and mean what they meant: these fail first when a Twisted upgrade changes them."""

from __future__ import annotations

import inspect

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.mail import imap4
from twisted.web.client import HTTPConnectionPool

from gateway._compat.twisted_mail import UNTAGGED_HOOKS, mailbox_argument, quiet_pool, set_capability_cache


def test_mailbox_names_are_encoded_and_quoted() -> None:
    assert mailbox_argument("INBOX") == b"INBOX"
    assert mailbox_argument("Sent Items") == b'"Sent Items"'
    assert mailbox_argument("Entwürfe") == b"Entw&APw-rfe"  # modified UTF-7


def test_the_untagged_hooks_exist_with_the_parameters_we_override() -> None:
    for name, parameters in UNTAGGED_HOOKS.items():
        method = getattr(imap4.IMAP4Client, name)
        assert tuple(inspect.signature(method).parameters)[1:] == parameters


def test_an_exists_line_during_a_command_reaches_the_default_handler() -> None:
    seen: list[tuple[bytes, bytes]] = []

    class Client(imap4.IMAP4Client):
        def _defaultHandler(self, tag: bytes, rest: bytes) -> None:
            seen.append((tag, rest))
            super()._defaultHandler(tag, rest)

    client = Client()
    client.makeConnection(StringTransport())
    client.dataReceived(b"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n")
    client.noop()
    client.dataReceived(b"* 3 EXISTS\r\n")
    assert (b"*", b"3 EXISTS") in seen


def test_the_capability_cache_answers_until_forgotten() -> None:
    client = imap4.IMAP4Client()
    transport = StringTransport()
    client.makeConnection(transport)
    client.dataReceived(b"* OK ready\r\n")
    set_capability_cache(client, {b"IMAP4rev1": None})
    answered: list[dict[bytes, object]] = []
    client.getCapabilities().addCallback(answered.append)
    assert answered == [{b"IMAP4rev1": None}] and transport.value() == b""  # from the cache
    set_capability_cache(client, None)
    client.getCapabilities()
    assert b"CAPABILITY" in transport.value()  # asked the server


def test_a_pool_builds_its_connections_quietly() -> None:
    pool = HTTPConnectionPool(MemoryReactorClock(), persistent=True)
    original = pool._factory
    assert quiet_pool(pool) is True
    assert issubclass(pool._factory, original) and pool._factory.noisy is False
    assert quiet_pool(object()) is False
