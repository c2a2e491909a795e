"""Hypothesis strategies for the SMTP core: addresses, message bodies, whole client sessions with
the replies a correct server must give, chunkings of a byte stream, and hostile byte soup.

The session model and the answering policy in ``tests/unit/smtp/harness.py`` agree on one rule:
a recipient whose local part starts with ``reject`` is refused (550), ``defer`` is deferred (451);
a message containing ``X-Policy: reject`` / ``X-Policy: defer`` is refused / deferred; a password
other than ``secret`` is wrong (535).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from hypothesis import strategies as st

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
LDH = "abcdefghijklmnopqrstuvwxyz0123456789-"


_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_UTF8 = "éüßø日本"


def _labels(chars: str) -> st.SearchStrategy[str]:
    edge = st.sampled_from(chars)
    middle = st.text(st.sampled_from(LDH), max_size=6)
    return st.builds(lambda a, mid, b: a + mid + b, edge, middle, edge)


def _domains(chars: str) -> st.SearchStrategy[str]:
    return st.lists(_labels(chars), min_size=1, max_size=3).map(".".join)


def _local_parts(chars: str) -> st.SearchStrategy[str]:
    atom_char = st.sampled_from(chars)
    atoms = st.lists(st.text(atom_char, min_size=1, max_size=8), min_size=1, max_size=3)
    dot_string = atoms.map(".".join)
    pieces = st.one_of(
        st.sampled_from(list(" !#[]()<>@,;:.")), atom_char, st.sampled_from(['\\"', "\\\\"])
    )
    quoted = st.lists(pieces, max_size=10).map(lambda p: '"' + "".join(p) + '"')
    return st.one_of(dot_string, dot_string, dot_string, quoted)


_DOMAINS = {False: _domains(_ALNUM), True: _domains(_ALNUM + _UTF8)}
_LOCAL_PARTS = {False: _local_parts(ATEXT), True: _local_parts(ATEXT + _UTF8)}


def domains(utf8: bool = False) -> st.SearchStrategy[str]:
    """Valid domains (LDH labels; with ``utf8``, some U-label characters)."""
    return _DOMAINS[utf8]


def local_parts(utf8: bool = False) -> st.SearchStrategy[str]:
    """Valid local parts: dot-strings mostly, quoted strings sometimes."""
    return _LOCAL_PARTS[utf8]


def _build_address(prefix: str, local: str, domain: str) -> str:
    if prefix:
        local = prefix + ("x" if local.startswith('"') else local)
    return f"{local}@{domain}"


_ADDRESSES = {
    (utf8, prefix): st.builds(_build_address, st.just(prefix), _LOCAL_PARTS[utf8], _DOMAINS[utf8])
    for utf8 in (False, True)
    for prefix in ("", "reject", "defer")
}


def addresses(utf8: bool = False, prefix: str = "") -> st.SearchStrategy[str]:
    """Valid RFC 5321 mailboxes; with ``prefix``, a dot-string local part starting with it."""
    return _ADDRESSES[(utf8, prefix)]


# Lines of message text: never CR or LF inside, sometimes starting with dots (stuffing), sometimes
# near the 998-octet limit.
_LINE = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.sampled_from([b".", b"..", b".hidden", b"", b" .", b"MAIL FROM:<smuggled@evil>", b"QUIT"]),
    st.integers(900, 998).map(lambda n: b"x" * n),
)


_BODIES = st.lists(_LINE, max_size=12).map(lambda lines: b"".join(line + b"\r\n" for line in lines))


def bodies() -> st.SearchStrategy[bytes]:
    """Message content with CRLF line endings (what the core must deliver)."""
    return _BODIES


def dot_stuff(body: bytes) -> bytes:
    """Encode content for the wire (RFC 5321 §4.5.2) and append the end-of-data line."""
    if body.startswith(b"."):
        body = b"." + body
    return body.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def plain(user: str, password: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


@dataclass
class SessionSpec:
    """A client session: wire bytes per TLS phase and the reply codes a correct server gives."""

    segments: list[bytes] = field(default_factory=lambda: [b""])
    codes: list[int] = field(default_factory=list)
    messages: list[tuple[str, tuple[str, ...], bytes]] = field(default_factory=list)

    def send(self, line: bytes, *codes: int) -> None:
        self.segments[-1] += line
        self.codes.extend(codes)


# Sessions draw from fixed pools (one draw per address keeps whole-session examples cheap); the
# address parser has its own tests on the rich strategies above.
_POOL = {
    False: [
        "a@b.example",
        "first.last@sub.example.org",
        "x+tag@example.com",
        '"quoted local"@example.net',
        '"with\\"escape@at"@example.net',
        "user@[192.0.2.1]",
        "user@[IPv6:2001:db8::1]",
        "o'brien@example.ie",
        "=?weird?=@example.com",
        "a@localhost",
        "UPPER@EXAMPLE.COM",
    ],
    True: ["jörg@bücher.example", "用户@例子.广告", "ascii@bücher.example", "naïve@example.com"],
}
_SENDERS = {u: st.sampled_from(["", *_POOL[u], *_POOL[False][:3]]) for u in (False, True)}
_RECIPIENTS = {
    u: st.lists(
        st.sampled_from(
            [*_POOL[u], *_POOL[False][:4]]
            + [f"reject{i}@example.com" for i in range(2)]
            + [f"defer{i}@example.com" for i in range(2)]
            + ["Postmaster", "reject.me@example.org"]
        ),
        min_size=1,
        max_size=4,
    )
    for u in (False, True)
}
_JUNK_CODES = {b"NOOP": 250, b"VRFY": 252, b"HELP": 214, b"XYZZ": 500}


@st.composite
def sessions(draw: st.DrawFn, tls: bool = False, quit: bool | None = None) -> SessionSpec:
    """A well-behaved pipelining client, with the policy's outcomes mixed in.

    With ``tls``, the session does STARTTLS (a new segment starts after it) and may AUTH.
    """
    spec = SessionSpec()
    spec.codes.append(220)
    spec.send(b"EHLO client.example\r\n", 250)
    if tls:
        spec.send(b"STARTTLS\r\n", 220)
        spec.segments.append(b"")
        spec.send(b"EHLO client.example\r\n", 250)
        if draw(st.booleans()):
            good = draw(st.booleans())
            how = draw(st.sampled_from(["plain-ir", "plain", "login", "login-ir"]))
            password = "secret" if good else "wrong"
            b64 = base64.b64encode
            if how == "plain-ir":
                spec.send(
                    f"AUTH PLAIN {plain('user', password)}\r\n".encode(), 235 if good else 535
                )
            elif how == "plain":
                spec.send(b"AUTH PLAIN\r\n", 334)
                spec.send(plain("user", password).encode() + b"\r\n", 235 if good else 535)
            elif how == "login":
                spec.send(b"AUTH LOGIN\r\n" + b64(b"user") + b"\r\n", 334, 334)
                spec.send(b64(password.encode()) + b"\r\n", 235 if good else 535)
            else:
                spec.send(b"AUTH LOGIN " + b64(b"user") + b"\r\n", 334)
                spec.send(b64(password.encode()) + b"\r\n", 235 if good else 535)
    for _ in range(draw(st.integers(0, 3))):
        junk = draw(
            st.sampled_from([b"", b"NOOP\r\n", b"VRFY someone\r\n", b"HELP\r\n", b"XYZZY\r\n"])
        )
        if junk:
            spec.send(junk, _JUNK_CODES[junk[:4]])
        utf8 = draw(st.integers(0, 5)) == 0
        sender = draw(_SENDERS[utf8])
        params = draw(st.sampled_from(["", " SIZE=1000", " BODY=8BITMIME", " BODY=7BIT SIZE=0"]))
        if utf8:
            params += " SMTPUTF8"
        spec.send(f"MAIL FROM:<{sender}>{params}\r\n".encode(), 250)
        recipients = draw(_RECIPIENTS[utf8])
        accepted = []
        for rcpt in recipients:
            local = rcpt.rpartition("@")[0]
            code = 550 if local.startswith("reject") else 451 if local.startswith("defer") else 250
            if code == 250:
                accepted.append(rcpt)
            spec.send(f"RCPT TO:<{rcpt}>\r\n".encode(), code)
        if draw(st.integers(0, 4)) == 0:
            spec.send(b"RSET\r\n", 250)
            continue
        if not accepted:
            # No body after a failed DATA; the transaction stays open until RSET (§4.1.1.5).
            spec.send(b"DATA\r\n", 554)
            spec.send(b"RSET\r\n", 250)
            continue
        body = draw(bodies())
        verdict = draw(st.sampled_from([b"", b"", b"X-Policy: reject\r\n", b"X-Policy: defer\r\n"]))
        body = verdict + body
        code = 550 if b"reject" in verdict else 451 if b"defer" in verdict else 250
        spec.send(b"DATA\r\n", 354)
        spec.send(dot_stuff(body), code)
        spec.messages.append((sender, tuple(accepted), body))
    if quit if quit is not None else draw(st.booleans()):
        spec.send(b"QUIT\r\n", 221)
    return spec


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """Split ``data`` at arbitrary points, favouring the inside of CRLF and CRLF.CRLF."""
    if len(data) < 2:
        return [data]
    interesting = [i + d for i in range(len(data)) if data[i] == 13 for d in range(1, 5)]
    points = draw(
        st.lists(
            st.one_of(
                st.integers(1, len(data) - 1),
                st.sampled_from(interesting) if interesting else st.nothing(),
            ),
            max_size=24,
        )
    )
    cuts = sorted({p for p in points if 0 < p < len(data)})
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


SOUP_TOKENS = [
    b"EHLO x\r\n",
    b"HELO x\r\n",
    b"MAIL FROM:<a@b.example>\r\n",
    b"MAIL FROM:<>\r\n",
    b"RCPT TO:<c@d.example>\r\n",
    b"RCPT TO:<reject@d.example>\r\n",
    b"RCPT TO:<defer@d.example>\r\n",
    b"DATA\r\n",
    b"\r\n.\r\n",
    b".\r\n",
    b"..\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH LOGIN\r\n",
    b"AUTH PLAIN AHUAc2VjcmV0\r\n",
    b"dXNlcg==\r\n",
    b"c2VjcmV0\r\n",
    b"*\r\n",
    b"=\r\n",
    b"MAIL FROM:<a@b> SIZE=99999999999\r\n",
    b"\r",
    b"\n",
    b".",
    b"\r\n",
    b"\n.\n",
    b"\r.\r",
    b"\x00",
    b"\xff\xfe",
    b"GET / HTTP/1.1\r\n",
    b"VRFY\r\n",
    b"X" * 600,
    b"Y" * 1100 + b"\r\n",
    b"Z" * 13000 + b"\r",
    b"MAIL FROM:<\xc3\xa9@b> SMTPUTF8\r\n",
]


_TRANSACTION = (
    b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nRCPT TO:<defer@d.example>\r\n"
    b"DATA\r\n"
)


def soup() -> st.SearchStrategy[bytes]:
    """Hostile input: SMTP fragments, control bytes and random binary in any order."""
    token = st.sampled_from(SOUP_TOKENS)
    return st.lists(
        st.one_of(token, token, token, st.just(_TRANSACTION), st.binary(max_size=30)), max_size=40
    ).map(b"".join)
