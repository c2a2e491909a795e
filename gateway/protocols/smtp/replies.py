"""SMTP replies: the :class:`Reply` value the upper layer answers decisions with, and the catalogue
of replies the core sends by itself.

Every reply the core writes carries an RFC 3463 enhanced status code (RFC 2034,
ENHANCEDSTATUSCODES), except where RFC 2034 §3 leaves it out: the 220 greeting, the EHLO/HELO
250 and the 334/354 continuations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from gateway.protocols.errors import LocalProtocolError

__all__ = ["Reply", "ReplyLike", "coerce", "soften"]

_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\Z")
_LEADING_STATUS = re.compile(r"([245]\.\d{1,3}\.\d{1,3})(?: +|\Z)")
# RFC 5321 §4.2: textstring = 1*(%d09 / %d32-126). Control characters would let a consumer inject
# extra reply lines, so each one becomes a space; anything outside ASCII is backslash-escaped.
_CONTROLS = {c: " " for c in (*range(0, 32), 127)}


def _clean(text: str) -> str:
    return text.translate(_CONTROLS).encode("ascii", "backslashreplace").decode("ascii")


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: a three-digit ``code``, an optional RFC 3463 ``status`` ("4.3.0") and text.

    ``text`` is one line, or a tuple of lines for a multi-line reply. Control characters are turned
    into spaces and non-ASCII is backslash-escaped when the reply is rendered, so text coming from a
    consumer can never inject extra reply lines.

    Raises:
        LocalProtocolError: the code is not a valid reply code (200-599, second digit 0-5) or the
            status does not have the code's class (a 451 needs a "4.x.y" status).
    """

    code: int
    status: str | None
    text: str | tuple[str, ...] = ""

    def __post_init__(self) -> None:
        code = self.code
        if type(code) is not int or not 200 <= code <= 599 or code // 10 % 10 > 5:
            raise LocalProtocolError(f"invalid SMTP reply code {code!r}")
        if self.status is not None:
            if not isinstance(self.status, str) or not _STATUS.match(self.status):
                raise LocalProtocolError(f"invalid enhanced status code {self.status!r}")
            if self.status[0] != str(code)[0]:
                raise LocalProtocolError(
                    f"enhanced status {self.status} does not match the class of reply {code}"
                )
        if not isinstance(self.text, (str, tuple)):
            raise LocalProtocolError("reply text must be a string or a tuple of strings")

    @classmethod
    def from_text(cls, code: int, text: str) -> Reply:
        """Build a reply from a code and free text, as a consumer gives them.

        An enhanced status at the start of ``text`` ("5.7.1 Spam") is split off; without one the
        generic status of the code's class is used ("5.0.0" for a 550).
        """
        if type(code) is not int or not 200 <= code <= 599:
            raise LocalProtocolError(f"invalid SMTP reply code {code!r}")
        match = _LEADING_STATUS.match(text)
        if match is not None and match.group(1)[0] == str(code)[0]:
            return cls(code, match.group(1), text[match.end() :])
        return cls(code, f"{code // 100}.0.0", text)

    @property
    def lines(self) -> tuple[str, ...]:
        """The text as a tuple of lines (at least one, possibly empty)."""
        if isinstance(self.text, str):
            return (self.text,)
        return self.text or ("",)

    def to_bytes(self) -> bytes:
        """Render the reply for the wire, CRLF-terminated (RFC 5321 §4.2.1 multi-line form)."""
        prefix = f"{self.code}"
        status = f"{self.status} " if self.status else ""
        lines = self.lines
        out = [f"{prefix}-{status}{_clean(line)}\r\n" for line in lines[:-1]]
        out.append(f"{prefix} {status}{_clean(lines[-1])}".rstrip(" ") + "\r\n")
        return "".join(out).encode("ascii")


ReplyLike = Union[Reply, str]


def coerce(reply: ReplyLike) -> Reply:
    """Accept a :class:`Reply` or a string such as ``"451 4.3.0 Try again later"``."""
    if isinstance(reply, Reply):
        return reply
    if isinstance(reply, str):
        head, _, rest = reply.partition(" ")
        if len(head) == 3 and head.isdigit():
            return Reply.from_text(int(head), rest)
    raise LocalProtocolError(f"not an SMTP reply: {reply!r}")


def soften(reply: Reply) -> Reply:
    """The 4xx twin of a 5xx reply (Postfix ``soft_bounce``): 550 5.1.1 -> 450 4.1.1."""
    if reply.code < 500:
        return reply
    status = "4" + reply.status[1:] if reply.status else None
    return Reply(reply.code - 100, status, reply.text)


def _r(code: int, status: str | None, text: str) -> bytes:
    return Reply(code, status, text).to_bytes()


# -- the replies the core sends by itself (bytes, rendered once) --------------------------------
OK = _r(250, "2.0.0", "Ok")
MAIL_OK = _r(250, "2.1.0", "Ok")
RCPT_OK = _r(250, "2.1.5", "Ok")
DATA_GO = _r(354, None, "End data with <CR><LF>.<CR><LF>")
BYE = _r(221, "2.0.0", "Bye")
VRFY_CANNOT = _r(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery")
HELP = _r(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS AUTH")
TLS_GO = _r(220, "2.0.0", "Ready to start TLS")
AUTH_OK = _r(235, "2.7.0", "Authentication successful")
AUTH_EMPTY_CHALLENGE = b"334 \r\n"  # RFC 4954 §4: an empty challenge asks for the initial response
AUTH_USERNAME = b"334 VXNlcm5hbWU6\r\n"  # base64("Username:"), the LOGIN mechanism
AUTH_PASSWORD = b"334 UGFzc3dvcmQ6\r\n"  # base64("Password:")

# Errors (each one counts towards the per-session error limit).
LINE_TOO_LONG = _r(500, "5.5.2", "Error: line too long")
BAD_CHARACTER = _r(500, "5.5.2", "Error: control character or bare CR/LF in command")
BAD_UTF8 = _r(500, "5.5.2", "Error: command is not valid UTF-8")
UNRECOGNIZED = _r(500, "5.5.2", "Error: command not recognized")
NOT_IMPLEMENTED = _r(502, "5.5.1", "Error: command not implemented")
SEND_HELO = _r(503, "5.5.1", "Error: send HELO/EHLO first")
SEND_EHLO = _r(503, "5.5.1", "Error: send EHLO first")
NESTED_MAIL = _r(503, "5.5.1", "Error: nested MAIL command")
NEED_MAIL = _r(503, "5.5.1", "Error: need MAIL command")
NEED_RCPT = _r(503, "5.5.1", "Error: need RCPT command")
NO_VALID_RCPT = _r(554, "5.5.1", "Error: no valid recipients")
IN_TRANSACTION = _r(503, "5.5.1", "Error: MAIL transaction in progress")
TLS_ACTIVE = _r(503, "5.5.1", "Error: TLS already active")
ALREADY_AUTH = _r(503, "5.5.1", "Error: already authenticated")
SYNTAX_HELO = _r(501, "5.5.4", "Syntax: HELO/EHLO hostname")
SYNTAX_MAIL = _r(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]")
SYNTAX_RCPT = _r(501, "5.5.4", "Syntax: RCPT TO:<address>")
SYNTAX_NOARGS = _r(501, "5.5.4", "Syntax: this command takes no arguments")
SYNTAX_VRFY = _r(501, "5.5.4", "Syntax: VRFY address")
SYNTAX_AUTH = _r(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
BAD_SENDER = _r(501, "5.1.7", "Error: bad sender address syntax")
BAD_RECIPIENT = _r(501, "5.1.3", "Error: bad recipient address syntax")
NON_ASCII_ADDRESS = _r(553, "5.6.7", "Error: non-ASCII address requires the SMTPUTF8 parameter")
PARAMS_NEED_EHLO = _r(555, "5.5.4", "Error: parameters need EHLO")
RCPT_PARAMS = _r(555, "5.5.4", "Error: RCPT parameters not supported")
TOO_BIG = _r(552, "5.3.4", "Message size exceeds fixed limit")
TOO_MANY_RCPT = _r(452, "4.5.3", "Error: too many recipients")
DATA_LINE_TOO_LONG = _r(500, "5.5.2", "Error: message line too long (RFC 5321 section 4.5.3.1.6)")
DATA_BARE_NEWLINE = _r(
    550,
    "5.6.0",
    "Error: bare CR or LF in message; lines must end with CRLF (RFC 5321 section 2.3.8)",
)
TLS_REQUIRED = _r(530, "5.7.0", "Must issue a STARTTLS command first")
AUTH_REQUIRED = _r(530, "5.7.0", "Authentication required")
AUTH_NEEDS_TLS = _r(538, "5.7.11", "Encryption required for requested authentication mechanism")
AUTH_UNKNOWN_MECH = _r(504, "5.5.4", "Unrecognized authentication type")
AUTH_CANCELLED = _r(501, "5.7.0", "Authentication cancelled")
AUTH_BAD_BASE64 = _r(501, "5.5.2", "Error: cannot decode response")
AUTH_BAD_RESPONSE = _r(501, "5.5.2", "Error: malformed authentication response")
AUTH_LINE_TOO_LONG = _r(500, "5.5.6", "Authentication Exchange line is too long")
