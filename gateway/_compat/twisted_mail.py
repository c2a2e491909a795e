"""Private parts of Twisted's IMAP4 client and HTTP connection pool that the email and SMS
listeners use.

* ``imap4._prepareMailboxName``: a mailbox name as a command argument (modified UTF-7, quoted
  when needed; :func:`mailbox_argument`).
* ``IMAP4Client._capCache``: the capabilities the client caches from the greeting; after STARTTLS
  and login they may change (RFC 3501 §6.2.1, §6.2.3), so the reader's client sets or forgets the
  cache (:func:`set_capability_cache`).
* ``IMAP4Client._defaultHandler(tag, rest)`` and ``_extraInfo(lines)``: the hooks untagged
  responses go through, which :class:`gateway.protocols.imap.client.MailboxClient` overrides to
  see ``* n EXISTS`` at once (during IDLE) and to keep unsolicited responses out of the log
  (:data:`UNTAGGED_HOOKS`; checked by the tests).
* ``HTTPConnectionPool._factory``: the client factory class of the pool the SMS sender uses,
  replaced by a quiet one (no "Starting factory" log line per request; :func:`quiet_pool`).
"""

from __future__ import annotations

from typing import Any

from twisted.mail import imap4

__all__ = ["UNTAGGED_HOOKS", "mailbox_argument", "quiet_pool", "set_capability_cache"]

#: The private ``IMAP4Client`` methods ``MailboxClient`` overrides, with their parameters.
UNTAGGED_HOOKS = {"_defaultHandler": ("tag", "rest"), "_extraInfo": ("lines",)}


def mailbox_argument(name: str) -> bytes:
    """A mailbox name as an IMAP command argument (RFC 3501 §5.1.3)."""
    prepared: bytes = imap4._prepareMailboxName(name)
    return prepared


def set_capability_cache(client: imap4.IMAP4Client, capabilities: dict[bytes, Any] | None) -> None:
    """Make ``client`` answer its next cached capability question with ``capabilities`` (None:
    ask the server)."""
    client._capCache = capabilities


def quiet_pool(pool: Any) -> bool:
    """Make an ``HTTPConnectionPool`` build connections without a log line each; False if the
    pool has no factory class to replace."""
    factory = getattr(pool, "_factory", None)
    if not isinstance(factory, type):
        return False
    pool._factory = type("QuietHTTP11ClientFactory", (factory,), {"noisy": False})
    return True
