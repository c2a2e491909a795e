# -*- test-case-name: tests.unit.imap.test_client -*-
"""Twisted's IMAP4 client with what the mailbox reader needs and it lacks.

:class:`twisted.mail.imap4.IMAP4Client` speaks the base protocol (RFC 3501) but has no IDLE
(RFC 2177), no MOVE (RFC 6851), no ``UID EXPUNGE`` (RFC 4315), caches the capabilities of the
greeting even after STARTTLS and login (RFC 3501 §6.2.1 and §6.2.3 say they may change), may start
TLS on its own without checking the certificate (``login()`` with the default context), returns
message bodies decoded to ``str``, and files ``* n EXISTS`` lines that arrive during a command
under that command's result instead of telling anyone. This subclass:

* watches every untagged line and calls :attr:`on_new_mail` on ``* n EXISTS`` (during IDLE at
  once, as RFC 2177 intends, not when IDLE ends);
* adds :meth:`idle` / :meth:`idle_done`, :meth:`uid_move`, :meth:`uid_copy`, :meth:`uid_expunge`,
  :meth:`uid_store`, :meth:`uid_search`, :meth:`uid_fetch` (message bytes as received);
* asks for the capabilities again on demand (:meth:`capability`);
* logs in with ``AUTHENTICATE PLAIN`` (with SASL-IR when offered, RFC 4959) or ``LOGIN``, never
  starting TLS by itself: the reader decides (implicit TLS or :meth:`starttls` with verified
  options).

Every command returns a Deferred; commands run one at a time (Twisted queues the rest), and while
IDLE is active nothing else is sent until :meth:`idle_done`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import connectionDone
from twisted.mail import imap4
from twisted.python.failure import Failure

from gateway._compat.twisted_mail import mailbox_argument, set_capability_cache

__all__ = ["MailboxClient", "FetchedMessage"]

_COUNT = re.compile(rb"(\d+) (EXISTS|EXPUNGE|RECENT)\b", re.IGNORECASE)
_ASTRING_SAFE = re.compile(rb"[\x20-\x7e]*\Z")


class FetchedMessage:
    """One ``UID FETCH`` result: ``uid``, ``size`` (RFC822.SIZE), ``flags`` and ``body`` (bytes or
    None when not asked for or gone)."""

    __slots__ = ("uid", "size", "flags", "body")

    def __init__(self, uid: int, size: int | None, flags: tuple[str, ...], body: bytes | None) -> None:
        self.uid = uid
        self.size = size
        self.flags = flags
        self.body = body

    def __repr__(self) -> str:
        return f"FetchedMessage(uid={self.uid}, size={self.size}, flags={self.flags})"


def _quote(value: str) -> bytes:
    """An IMAP quoted string (RFC 3501 §4.3); only printable ASCII is allowed here."""
    raw = value.encode("utf-8")
    if not _ASTRING_SAFE.match(raw):
        raise ValueError("LOGIN needs printable ASCII; the server offers no AUTHENTICATE PLAIN")
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def mailbox_name(name: str) -> bytes:
    """A mailbox name as a command argument (modified UTF-7, RFC 3501 §5.1.3; quoted if needed)."""
    return mailbox_argument(name)


def _uid_set(uids: Iterable[int]) -> bytes:
    return b",".join(b"%d" % uid for uid in uids)


class MailboxClient(imap4.IMAP4Client):
    """An IMAP4 client for one mailbox reader (see the module docstring).

    Attributes:
        greeting: fires with the greeting's capabilities, or fails if the connection is lost first.
        on_new_mail: called (no arguments) for each ``* n EXISTS``.
        capabilities: the latest capabilities (upper-case names -> values or None).
    """

    MAX_LENGTH = 1 << 20  # a SEARCH answer listing many UIDs is one long line

    def __init__(self, on_new_mail: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.greeting: defer.Deferred[Any] = defer.Deferred()
        self.on_new_mail = on_new_mail
        self.capabilities: dict[bytes, Any] = {}
        self._idle: imap4.Command | None = None
        self._idle_started = False
        self._done_wanted = False

    # -- connection ------------------------------------------------------------------------------
    def serverGreeting(self, caps: Any) -> None:
        self.capabilities = _upper(caps or {})
        if not self.greeting.called:
            self.greeting.callback(self.capabilities)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        if not self.greeting.called:
            self.greeting.errback(reason)

    # -- untagged responses (private hooks of IMAP4Client: gateway._compat.twisted_mail) ----------
    def _defaultHandler(self, tag: bytes, rest: bytes) -> None:
        if tag == b"*":
            match = _COUNT.match(rest)
            if match is not None and match.group(2).upper() == b"EXISTS" and self.on_new_mail is not None:
                self.on_new_mail()
            if self._idle is not None and self.waiting is not None and self.tags.get(self.waiting) is self._idle:
                return  # seen; an IDLE collects no lines
        super()._defaultHandler(tag, rest)

    def _extraInfo(self, lines: list[Any]) -> None:
        """Unsolicited responses outside a command: EXISTS was already seen; the rest is quiet
        (Twisted logs every EXPUNGE and response code it does not know)."""

    # -- capabilities, TLS, login ----------------------------------------------------------------
    def capability(self) -> defer.Deferred[dict[bytes, Any]]:
        """Ask the server for its capabilities now (after STARTTLS and login they change)."""
        set_capability_cache(self, None)
        d = self.getCapabilities(useCache=0)

        def got(caps: Any) -> dict[bytes, Any]:
            self.capabilities = _upper(caps)
            return self.capabilities

        return d.addCallback(got)

    def starttls(self, options: Any) -> defer.Deferred[Any]:
        """STARTTLS with ``options`` (which check the server certificate), then CAPABILITY."""
        set_capability_cache(self, self.capabilities)
        return self.startTLS(options).addCallback(lambda _: self.capability())

    def authenticate_plain_or_login(self, username: str, password: str) -> defer.Deferred[Any]:
        """Log in: ``AUTHENTICATE PLAIN`` when offered (SASL-IR when possible), else ``LOGIN``."""
        mechanisms = [m.upper() for m in self.capabilities.get(b"AUTH") or ()]
        if b"PLAIN" in mechanisms:
            token = base64.b64encode(b"\0" + username.encode("utf-8") + b"\0" + password.encode("utf-8"))
            if b"SASL-IR" in self.capabilities:
                return self.sendCommand(imap4.Command(b"AUTHENTICATE", b"PLAIN " + token))
            return self.sendCommand(imap4.Command(b"AUTHENTICATE", b"PLAIN", continuation=lambda _: self.sendLine(token)))
        if b"LOGINDISABLED" in self.capabilities:
            return defer.fail(imap4.IMAP4Exception("the server refuses LOGIN and offers no AUTHENTICATE PLAIN"))
        try:
            args = _quote(username) + b" " + _quote(password)
        except ValueError as exc:
            return defer.fail(imap4.IMAP4Exception(str(exc)))
        return self.sendCommand(imap4.Command(b"LOGIN", args))

    # -- UID commands ----------------------------------------------------------------------------
    def uid_search(self, criteria: bytes) -> defer.Deferred[list[int]]:
        """``UID SEARCH criteria``: the matching UIDs, ascending."""
        def parse(result: Any) -> list[int]:
            uids: list[int] = []
            for line in result[0]:
                if line and line[0].upper() == b"SEARCH":
                    uids.extend(int(x) for x in line[1:] if x.isdigit())
            return sorted(set(uids))

        return self.sendCommand(imap4.Command(b"UID SEARCH", criteria)).addCallback(parse)

    def uid_fetch(self, uids: Iterable[int], body: bool) -> defer.Deferred[dict[int, FetchedMessage]]:
        """``UID FETCH``: UID, RFC822.SIZE and FLAGS, plus the whole message (``BODY.PEEK[]``,
        which leaves ``\\Seen`` alone) when ``body``; by UID (gone messages are absent)."""
        items = b"(UID RFC822.SIZE FLAGS BODY.PEEK[])" if body else b"(UID RFC822.SIZE FLAGS)"
        d = self.sendCommand(imap4.Command(b"UID FETCH", _uid_set(uids) + b" " + items))
        return d.addCallback(lambda result: _parse_fetch(result[0]))

    def uid_store(self, uids: Iterable[int], flags: bytes) -> defer.Deferred[Any]:
        """``UID STORE uids +FLAGS.SILENT (flags)``."""
        return self.sendCommand(imap4.Command(b"UID STORE", _uid_set(uids) + b" +FLAGS.SILENT (" + flags + b")"))

    def uid_move(self, uids: Iterable[int], mailbox: str) -> defer.Deferred[Any]:
        """``UID MOVE`` (RFC 6851)."""
        return self.sendCommand(imap4.Command(b"UID MOVE", _uid_set(uids) + b" " + mailbox_name(mailbox)))

    def uid_copy(self, uids: Iterable[int], mailbox: str) -> defer.Deferred[Any]:
        """``UID COPY``."""
        return self.sendCommand(imap4.Command(b"UID COPY", _uid_set(uids) + b" " + mailbox_name(mailbox)))

    def uid_expunge(self, uids: Iterable[int]) -> defer.Deferred[Any]:
        """``UID EXPUNGE`` (RFC 4315 UIDPLUS): only these messages, not others marked deleted."""
        return self.sendCommand(imap4.Command(b"UID EXPUNGE", _uid_set(uids)))

    # -- IDLE (RFC 2177) -------------------------------------------------------------------------
    def idle(self) -> defer.Deferred[Any]:
        """Start IDLE; the Deferred fires when it ends (after :meth:`idle_done`, or the server
        ended it). ``* n EXISTS`` calls :attr:`on_new_mail` meanwhile."""
        self._idle_started = False
        self._done_wanted = False
        command = imap4.Command(b"IDLE", continuation=self._idle_continuation)
        self._idle = command

        def ended(result: Any) -> Any:
            self._idle = None
            return result

        return self.sendCommand(command).addBoth(ended)

    def _idle_continuation(self, rest: bytes) -> None:
        self._idle_started = True
        if self._done_wanted:
            self.sendLine(b"DONE")

    def idle_done(self) -> None:
        """End IDLE (``DONE``), now or as soon as the server has confirmed it started."""
        if self._idle is None or self._done_wanted:
            return
        self._done_wanted = True
        if self._idle_started:
            self.sendLine(b"DONE")


def _upper(caps: dict[bytes, Any]) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    for key, value in caps.items():
        out[key.upper()] = [v.upper() if isinstance(v, bytes) else v for v in value] if isinstance(value, list) else value
    return out


def _parse_fetch(lines: list[Any]) -> dict[int, FetchedMessage]:
    """Parsed ``* n FETCH (...)`` lines (as Twisted's ``parseNestedParens`` gives them)."""
    out: dict[int, FetchedMessage] = {}
    for line in lines:
        if len(line) < 3 or not isinstance(line[1], bytes) or line[1].upper() != b"FETCH" or not isinstance(line[2], list):
            continue
        items = line[2]
        uid = size = None
        flags: tuple[str, ...] = ()
        body: bytes | None = None
        index = 0
        while index < len(items):
            key = items[index].upper() if isinstance(items[index], bytes) else b""
            value = items[index + 1] if index + 1 < len(items) else None
            if key == b"UID" and isinstance(value, bytes) and value.isdigit():
                uid = int(value)
            elif key == b"RFC822.SIZE" and isinstance(value, bytes) and value.isdigit():
                size = int(value)
            elif key == b"FLAGS" and isinstance(value, list):
                flags = tuple(f.decode("ascii", "replace") for f in value if isinstance(f, bytes))
            elif key in (b"BODY", b"BODY[]") and isinstance(value, list):
                data = items[index + 2] if index + 2 < len(items) else None
                body = data if isinstance(data, bytes) and data not in (b"NIL", b"nil") else None
                index += 1
            elif key == b"BODY[]":
                body = value if isinstance(value, bytes) and value not in (b"NIL", b"nil") else None
            index += 2
        if uid is not None:
            out[uid] = FetchedMessage(uid, size, flags, body)
    return out
