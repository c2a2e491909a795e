"""Drive an :class:`SMTPServer` the way an adapter would, with a scripted upper layer.

``run`` feeds byte chunks, answers decisions with a deterministic policy (immediately, or after a
given number of further chunks to model slow consumers), performs the STARTTLS duty between
segments, and returns everything written and every event seen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

from gateway.protocols.smtp import (
    AuthCredentials,
    CloseConnection,
    Decision,
    Event,
    MailFrom,
    MessageReceived,
    RcptTo,
    Reply,
    ServerConfig,
    SMTPServer,
    StartTLS,
)

Answer = tuple[str, Reply | None]
Policy = Callable[[Decision], Answer]

REPLY_LINE = re.compile(rb"([2-5][0-5][0-9])([ -])([\t\x20-\x7e]*)\Z")


def policy(event: Decision) -> Answer:
    """The rules ``tests/strategies/smtp.py`` models (see its docstring)."""
    if isinstance(event, RcptTo):
        local = event.recipient.rpartition("@")[0]
        if local.startswith("reject"):
            return ("reject", None)
        if local.startswith("defer"):
            return ("defer", None)
    elif isinstance(event, AuthCredentials):
        return ("accept", None) if event.password == "secret" else ("reject", None)
    elif isinstance(event, MessageReceived):
        if b"X-Policy: reject" in event.data:
            return ("reject", None)
        if b"X-Policy: defer" in event.data:
            return ("defer", None)
    return ("accept", None)


def apply(session: SMTPServer, event: Decision, answer: Answer) -> None:
    kind, reply = answer
    getattr(session, kind)(event, reply)


def replies(data: bytes) -> list[bytes]:
    """Split server output into whole replies (multi-line ones joined); checks the syntax."""
    out: list[bytes] = []
    current = b""
    lines = data.split(b"\r\n")
    if lines[-1] != b"":
        raise AssertionError(f"output does not end with CRLF: {data[-40:]!r}")
    for line in lines[:-1]:
        match = REPLY_LINE.match(line)
        if match is None:
            raise AssertionError(f"malformed reply line {line!r}")
        current += line + b"\r\n"
        if match.group(2) == b" ":
            out.append(current)
            current = b""
    if current:
        raise AssertionError(f"unfinished multi-line reply {current!r}")
    return out


def codes(data: bytes) -> list[int]:
    return [int(r[:3]) for r in replies(data)]


def normalize(event: Event) -> tuple:
    """A comparable summary of an event."""
    if isinstance(event, MailFrom):
        return ("MailFrom", event.sender, tuple(sorted(event.params.items(), key=str)))
    if isinstance(event, RcptTo):
        return ("RcptTo", event.recipient, event.sender)
    if isinstance(event, AuthCredentials):
        return ("Auth", event.mechanism, event.authzid, event.username, event.password)
    if isinstance(event, MessageReceived):
        env = event.envelope
        return (
            "Message",
            env.sender,
            env.recipients,
            tuple(sorted(env.mail_params.items(), key=str)),
            env.helo,
            env.esmtp,
            env.tls,
            env.auth_user,
            env.smtputf8,
            env.body,
            env.declared_size,
            event.data,
        )
    if isinstance(event, CloseConnection):
        return ("Close", event.reason)
    if isinstance(event, StartTLS):
        return ("StartTLS",)
    raise AssertionError(f"unknown event {event!r}")


@dataclass
class Result:
    output: bytes
    events: list[tuple] = field(default_factory=list)
    closed: bool = False
    session: SMTPServer | None = None

    @property
    def codes(self) -> list[int]:
        return codes(self.output)

    @property
    def messages(self) -> list[tuple]:
        return [e for e in self.events if e[0] == "Message"]


def run(
    segments: Sequence[Iterable[bytes | None]],
    config: ServerConfig | None = None,
    *,
    decide: Policy = policy,
    delays: Iterable[int] = (),
    tls_active: bool = False,
    eof: bool = False,
) -> Result:
    """Feed each segment's chunks; between segments the client expects a StartTLS event.

    A ``None`` chunk is a tick: nothing arrives, but waiting answers come one step closer.

    ``delays`` gives, per decision in order, how many further chunks arrive before it is answered
    (missing entries mean 0: answer at once). Decisions still open at the end are answered then.
    """
    session = SMTPServer(config, tls_active=tls_active)
    result = Result(session.data_to_send(), session=session)
    delay_iter: Iterator[int] = iter(delays)
    waiting: list = []  # [event, chunks still to arrive before the answer]
    tls_requested = False

    def drain() -> None:
        nonlocal tls_requested
        while True:
            events = session.events_received()
            if not events:
                break
            for event in events:
                result.events.append(normalize(event))
                if isinstance(event, StartTLS):
                    tls_requested = True
                elif isinstance(event, Decision):
                    delay = next(delay_iter, 0)
                    if delay <= 0:
                        apply(session, event, decide(event))
                    else:
                        waiting.append([event, delay])

    for index, segment in enumerate(segments):
        if index:
            if not tls_requested:
                raise AssertionError("segment boundary without a StartTLS event")
            tls_requested = False
            session.tls_started()
        for chunk in segment:
            if chunk is not None:  # None: time passes, nothing arrives
                session.receive_data(chunk)
            drain()
            for item in list(waiting):
                item[1] -= 1
                if item[1] <= 0:
                    waiting.remove(item)
                    apply(session, item[0], decide(item[0]))
                    drain()
            result.output += session.data_to_send()
        while waiting:
            event = waiting.pop(0)[0]
            apply(session, event, decide(event))
            drain()
            result.output += session.data_to_send()
    if eof:
        session.receive_data(b"")
        drain()
        result.output += session.data_to_send()
    result.closed = session.closed
    return result


def talk(session: SMTPServer, data: bytes, decide: Policy = policy) -> list[bytes]:
    """Send ``data``, answer every decision at once with ``decide``; return the new replies."""
    session.receive_data(data)
    while True:
        events = session.events_received()
        if not events:
            break
        for event in events:
            if isinstance(event, Decision):
                apply(session, event, decide(event))
    return replies(session.data_to_send())


def new_session(config: ServerConfig | None = None, **kwargs: object) -> SMTPServer:
    """A session whose greeting was already read."""
    session = SMTPServer(config, **kwargs)  # type: ignore[arg-type]
    greeting = session.data_to_send()
    if not greeting.startswith(b"220 "):
        raise AssertionError(greeting)
    return session
