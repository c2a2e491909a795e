"""IMAP: a mailbox reader that feeds each new message to the application as an ``email`` scope.

* :mod:`~gateway.protocols.imap.client`: Twisted's ``IMAP4Client`` with what it lacks (IDLE,
  MOVE, UID EXPUNGE, fresh capabilities after STARTTLS and login, raw message bytes);
* :mod:`~gateway.protocols.imap.asgi`: the ``email`` scope of a message read from the mailbox,
  and what is done with it once answered (pure);
* :mod:`~gateway.protocols.imap.adapter`: the reader, the loop (connect, log in, select, fetch,
  hand over, mark or move only after accept, IDLE or poll, reconnect with backoff, UIDVALIDITY);
* :mod:`~gateway.protocols.imap.listener`: the daemon's listener (``protocol: imap``);
* :mod:`~gateway.protocols.imap.config`: its configuration.
"""

from __future__ import annotations
