"""The DATA phase: find the end of data, enforce size and line limits, undo dot-stuffing.

Only ``CRLF . CRLF`` ends the data (RFC 5321 §4.1.1.4). Bare LF and bare CR are never line
terminators here (RFC 5321 §2.3.8), so ``LF.LF``, ``CR.CR``, ``LF.CRLF`` and ``CRLF.LF`` are
ordinary message bytes and cannot smuggle a second message in. Limits never end the DATA phase
early: an oversized message or an over-long line only marks the message as rejected, the reader
keeps looking for the real terminator, and the rejection is reported after it.

The work is done with ``bytes.find``/``split``/``count``/``replace`` on whole chunks; there is no
per-byte Python loop.
"""

from __future__ import annotations

from gateway.protocols.smtp import replies

__all__ = ["DataReader"]

_TERMINATOR = b"\r\n.\r\n"


class DataReader:
    """Collects one message's data from the bytes that follow the 354 reply.

    Feed it with :meth:`feed` until that returns the bytes left after the terminator; then
    :attr:`error` (a rendered reply, or None) and :attr:`message` tell the outcome.
    """

    __slots__ = (
        "_max_size",
        "_wire_limit",
        "_max_line",
        "_reject_bare",
        "_chunks",
        "_wire",
        "_tail",
        "_strip",
        "_line",
        "_oversize",
        "_long_line",
        "error",
        "message",
    )

    def __init__(self, max_size: int, max_line: int | None, reject_bare: bool) -> None:
        self._max_size = max_size
        # Dot-stuffing adds at most one octet per line of at least four wire octets ("..X" CRLF),
        # so more than 4/3 of the limit on the wire is over the limit whatever the unstuffing.
        self._wire_limit = max_size * 4 // 3 + 4
        self._max_line = max_line
        self._reject_bare = reject_bare
        self._chunks: list[bytes] = []
        self._wire = 0
        # The CRLF that ended the DATA command line: lets ".\r\n" as the first line end the data.
        # It is "virtual" (``_strip``) and never becomes part of the message.
        self._tail = b"\r\n"
        self._strip = True
        self._line = 0  # length of the current, unfinished wire line
        self._oversize = False
        self._long_line = False
        self.error: bytes | None = None
        self.message: bytes | None = None

    def feed(self, data: bytes) -> bytes | None:
        """Consume ``data``; return the bytes after the end-of-data line, or None for "more"."""
        search = self._tail + data
        idx = search.find(_TERMINATOR)
        if idx < 0:
            # Hold back the last four octets (five when a CR would be split from its LF): a
            # terminator may straddle this chunk and the next.
            cut = len(search) - 4
            if cut > 0 and search[cut - 1] == 13:
                cut -= 1
            if cut > 0:
                self._commit(search[:cut])
                self._tail = search[cut:]
            else:
                self._tail = search
            return None
        self._commit(search[: idx + 2])  # the last line keeps its CRLF
        self._tail = b""
        self._finish()
        return search[idx + 5 :]

    def _commit(self, part: bytes) -> None:
        if self._strip:
            part = part[2:]
            self._strip = False
            if not part:
                return
        n = len(part)
        if not self._oversize:
            self._wire += n
            if self._wire > self._wire_limit:
                self._oversize = True
                self._chunks.clear()
            else:
                self._chunks.append(part)
        max_line = self._max_line
        if max_line is not None and not self._long_line:
            first = part.find(b"\r\n")
            if first < 0:
                self._line += n
                self._long_line = self._line + 2 > max_line
                return
            if self._line + first + 2 > max_line:
                self._long_line = True
                return
            last = part.rfind(b"\r\n")
            if last > first:
                longest = max(map(len, part[first + 2 : last].split(b"\r\n")))
                if longest + 2 > max_line:
                    self._long_line = True
                    return
            self._line = n - last - 2

    def _finish(self) -> None:
        if self._oversize:
            self.error = replies.TOO_BIG
            return
        data = b"".join(self._chunks)
        self._chunks.clear()
        # RFC 5321 §4.5.2: delete the first character of every line that starts with a period.
        if data[:1] == b".":
            data = data[1:]
        if b"\r\n." in data:
            data = data.replace(b"\r\n.", b"\r\n")
        if len(data) > self._max_size:
            self.error = replies.TOO_BIG
        elif self._long_line:
            self.error = replies.DATA_LINE_TOO_LONG
        elif self._reject_bare and _has_bare_newline(data):
            self.error = replies.DATA_BARE_NEWLINE
        else:
            self.message = data


def _has_bare_newline(data: bytes) -> bool:
    crlf = data.count(b"\r\n")
    return data.count(b"\n") != crlf or data.count(b"\r") != crlf
