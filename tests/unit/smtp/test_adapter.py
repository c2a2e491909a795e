"""The SMTP adapter: 250 only after the application accepted, 4xx for every failure of ours,
recipients checked at RCPT, STARTTLS, AUTH, limits and shutdown (StringTransport, fake clock)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from gateway.passwords import hash_password
from gateway.protocols.smtp.core import ServerConfig
from gateway.routing import EmailToRouter, ProtocolTypeRouter, regex
from tests.unit.smtp.adapter_harness import Harness, message, transaction

EHLO = b"EHLO client.example\r\n"


class Recorder:
    """An ASGI app that records scopes and raw messages and answers with ``answer``."""

    def __init__(self, answer: dict[str, Any] | None = None, *, wait: asyncio.Event | None = None,
                 fail: bool = False, silent: bool = False) -> None:
        self.answer = answer if answer is not None else {"type": "email.accept"}
        self.wait = wait
        self.fail = fail
        self.silent = silent
        self.scopes: list[dict[str, Any]] = []
        self.raws: list[bytes] = []
        self.events: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        event = await receive()
        self.raws.append(event["raw"])
        if self.wait is not None:
            await self.wait.wait()
        if self.fail:
            raise RuntimeError("consumer broke")
        if self.silent:
            return
        await send(self.answer)
        self.events.append(await receive())


@pytest.fixture
def make():
    harnesses: list[Harness] = []

    def factory(app: Any, **kwargs: Any) -> Harness:
        harness = Harness(app, **kwargs)
        harnesses.append(harness)
        return harness

    yield factory
    for harness in harnesses:
        harness.close()


def routed(app: Any) -> Any:
    return ProtocolTypeRouter({"email": EmailToRouter([regex(r"@accept\.test$", app)])})


def test_greeting_and_ehlo_come_from_the_core(make):
    h = make(Recorder())
    assert h.output() == b"220 mx.test ESMTP\r\n"
    h.send(EHLO)
    assert h.output().startswith(b"250-mx.test\r\n250-PIPELINING\r\n")


def test_250_only_after_the_application_accepted(make):
    gate = asyncio.Event()
    app = Recorder(wait=gate)
    h = make(routed(app))
    h.output()
    h.send(EHLO + transaction())
    assert h.codes() == [250, 250, 250, 354]  # nothing for the message yet
    assert app.raws and not h.output()
    gate.set()
    h.run()
    assert h.replies() == [b"250 2.0.0 Ok: queued\r\n"]
    assert app.events == [{"type": "email.disconnect"}]


def test_the_scope_carries_the_envelope_and_the_connection(make):
    app = Recorder()
    h = make(app)
    h.output()
    h.send(EHLO + transaction("bob@accept.test", sender="alice@example.org", body="hello\r\n..dotted"))
    (scope,) = app.scopes
    assert scope["type"] == "email" and scope["source"] == "smtp"
    assert scope["sender"] == "alice@example.org"
    assert scope["recipients"] == ["bob@accept.test"]
    assert scope["helo"] == "client.example" and scope["esmtp"] is True
    assert scope["client"] == ("192.0.2.1", 40000) and scope["server"] == ("192.0.2.25", 25)
    assert scope["tls"] is None and scope["auth_user"] is None
    assert scope["asgi"] == {"version": "3.0", "spec_version": "1.0"}
    (raw,) = app.raws
    assert scope["size"] == len(raw)
    assert raw.startswith(b"Received: from client.example ([192.0.2.1])\r\n\tby mx.test with ESMTP id ")
    assert b"\r\n\tfor <bob@accept.test>;" in raw
    assert raw.endswith(b"\r\n\r\nhello\r\n.dotted\r\n")  # dot-unstuffed, CRLF, no terminator


def test_no_received_header_when_switched_off(make):
    app = Recorder()
    h = make(app, received_header=False)
    h.send(EHLO + transaction())
    assert app.raws[0].startswith(b"Subject: hi\r\n")


@pytest.mark.parametrize("behaviour", ["raise", "silent", "timeout"])
def test_failures_of_the_application_are_temporary(make, behaviour):
    gate = asyncio.Event()
    app = Recorder(fail=behaviour == "raise", silent=behaviour == "silent", wait=gate if behaviour == "timeout" else None)
    h = make(app, consumer_timeout=30.0)
    h.output()
    h.send(EHLO + transaction())
    if behaviour == "timeout":
        assert h.codes() == [250, 250, 250, 354]
        h.advance(29.0)
        assert h.output() == b""
        h.advance(1.5)
    out = h.replies()
    assert out[-1] == b"451 4.3.0 Temporary failure, please try again later\r\n"
    # The session goes on: the client may send the next message at once.
    h.send(transaction())
    if behaviour == "timeout":
        assert h.codes() == [250, 250, 354]  # waiting for the (still blocked) application again
    else:
        assert h.codes() == [250, 250, 354, 451]


def test_application_rejection_code_and_text_are_passed_on(make):
    h = make(Recorder({"type": "email.reject", "code": 554, "text": "5.7.1 Spam"}))
    h.output()
    h.send(EHLO + transaction())
    assert h.replies()[-1] == b"554 5.7.1 Spam\r\n"


def test_soft_reject_turns_permanent_refusals_temporary(make):
    h = make(routed(Recorder({"type": "email.reject", "code": 550, "text": "5.7.1 no"})), soft_reject=True)
    h.output()
    h.send(EHLO + transaction("x@nowhere.test"))
    assert b"450 4.1.1 <x@nowhere.test>: Recipient address rejected\r\n" in h.replies()
    h.send(b"RSET\r\n" + transaction())
    assert h.replies()[-1] == b"450 4.7.1 no\r\n"


def test_accept_text_and_invalid_answers(make):
    h = make(Recorder({"type": "email.accept", "text": "2.0.0 Ok: ticket 42"}))
    h.output()
    h.send(EHLO + transaction())
    assert h.replies()[-1] == b"250 2.0.0 Ok: ticket 42\r\n"
    bad = make(Recorder({"type": "email.reject", "code": 250, "text": "nope"}))
    bad.output()
    bad.send(EHLO + transaction())
    assert bad.replies()[-1].startswith(b"451 4.3.0")  # the app's send() raised: temporary


def test_recipients_without_a_route_are_refused_at_rcpt(make):
    app = Recorder()
    h = make(routed(app))
    h.output()
    h.send(EHLO + b"MAIL FROM:<a@example.org>\r\nRCPT TO:<x@other.test>\r\nRCPT TO:<y@accept.test>\r\nDATA\r\n"
           + message())
    assert h.replies()[1:] == [
        b"250 2.1.0 Ok\r\n",
        b"550 5.1.1 <x@other.test>: Recipient address rejected\r\n",
        b"250 2.1.5 Ok\r\n",
        b"354 End data with <CR><LF>.<CR><LF>\r\n",
        b"250 2.0.0 Ok: queued\r\n",
    ]
    assert app.scopes[0]["recipients"] == ["y@accept.test"]


class SlowRouter:
    """A router whose ``matches`` really waits (for the event) and can fail."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.gate = asyncio.Event()
        self.probes: list[dict[str, Any]] = []

    async def matches(self, scope: dict[str, Any]) -> bool:
        self.probes.append(scope)
        await self.gate.wait()
        if scope["recipients"][0].startswith("boom"):
            raise RuntimeError("router down")
        return scope["recipients"][0].endswith("@accept.test")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def test_slow_recipient_checks_keep_pipelined_replies_in_order(make):
    router = SlowRouter(Recorder())
    h = make(router)
    h.output()
    h.send(EHLO + b"MAIL FROM:<a@example.org>\r\nRCPT TO:<boom@accept.test>\r\nRCPT TO:<b@accept.test>\r\n")
    assert h.codes() == [250, 250]  # EHLO, MAIL; the first RCPT is being checked
    assert h.transport.pauses == 0  # a client that waits for its replies costs no pause
    h.send(b"RCPT TO:<c@else.test>\r\nDATA\r\n" + message())
    assert h.transport.pauses == 1 and h.transport.producerState == "paused"  # more input while deciding
    assert h.output() == b""
    probe = router.probes[0]
    assert probe["type"] == "email" and probe["recipients"] == ["boom@accept.test"]
    assert probe["sender"] == "a@example.org" and probe["helo"] == "client.example"
    router.gate.set()
    h.run()
    assert h.codes() == [451, 250, 550, 354, 250]
    assert h.transport.producerState == "producing"


def test_recipient_check_timeout_is_temporary(make):
    router = SlowRouter(Recorder())
    h = make(router, recipient_timeout=2.0)
    h.output()
    h.send(EHLO + b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@accept.test>\r\n")
    h.replies()
    h.advance(2.5)
    assert h.replies() == [b"451 4.3.0 Temporary failure, please try again later\r\n"]


def test_connections_per_client_address_are_limited(make):
    h = make(Recorder(), factory=True, max_connections_per_client=2)
    second = h.connect(type(h.transport)(peerAddress=h.transport.getPeer(), hostAddress=h.transport.getHost()))
    third_transport = type(h.transport)(peerAddress=h.transport.getPeer(), hostAddress=h.transport.getHost())
    h.connect(third_transport)
    assert second.session is not None
    assert third_transport.value() == b"421 4.7.0 mx.test Error: too many connections from 192.0.2.1\r\n"
    assert third_transport.disconnecting
    assert h.factory.client_count(("192.0.2.1", 1)) == 3
    second.connectionLost(None)
    assert h.factory.client_count(("192.0.2.1", 1)) == 2


def test_shutdown_when_idle_sends_421_and_closes(make):
    h = make(Recorder())
    h.output()
    h.send(EHLO)
    h.output()
    h.protocol.shutdown()
    assert h.replies() == [b"421 4.3.2 mx.test Service shutting down\r\n"]
    assert h.closed


def test_shutdown_finishes_the_message_in_progress(make):
    gate = asyncio.Event()
    app = Recorder(wait=gate)
    h = make(app)
    h.output()
    h.send(EHLO + transaction())
    h.output()
    h.protocol.shutdown()
    assert h.output() == b"" and not h.closed
    gate.set()
    h.run()
    assert h.replies() == [b"250 2.0.0 Ok: queued\r\n", b"421 4.3.2 mx.test Service shutting down\r\n"]
    assert h.closed


def test_abort_cancels_the_application_without_answering(make):
    gate = asyncio.Event()
    app = Recorder(wait=gate)
    h = make(app)
    h.send(EHLO + transaction())
    h.output()
    h.protocol.abort()
    h.run()
    assert h.transport.value() == b""
    assert app.events == []


def test_the_client_leaving_before_the_answer_loses_nothing(make):
    gate = asyncio.Event()
    h = make(Recorder(wait=gate))
    h.send(EHLO + transaction())
    h.output()
    h.lose()
    gate.set()
    h.run()
    assert h.output() == b""  # the answer goes nowhere; the sender will retry


def test_idle_timeout_from_the_core(make):
    h = make(Recorder(), config=ServerConfig(hostname="mx.test", timeout=10.0, check_sender=False))
    h.output()
    h.advance(9.0)
    assert h.output() == b""
    h.advance(1.5)
    assert h.replies() == [b"421 4.4.2 mx.test Error: timeout exceeded\r\n"]
    assert h.closed


def test_starttls_writes_220_in_clear_then_switches_and_resets(make):
    options = object()
    config = ServerConfig(hostname="mx.test", tls_available=True, check_sender=False)
    app = Recorder()
    h = make(app, config=config, tls_options=options)
    h.output()
    h.send(EHLO + b"STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n")
    assert h.transport.tls_started_with is options
    assert h.transport.written_before_tls.endswith(b"220 2.0.0 Ready to start TLS\r\n")
    assert h.output().endswith(b"220 2.0.0 Ready to start TLS\r\n")  # the injected MAIL got nothing
    h.send(b"MAIL FROM:<a@b.example>\r\n")
    assert h.replies() == [b"503 5.5.1 Error: send HELO/EHLO first\r\n"]  # RFC 3207: reset
    h.send(EHLO)
    assert b"STARTTLS" not in h.output()


def pbkdf2(password: str) -> str:
    import base64
    import hashlib

    key = hashlib.pbkdf2_hmac("sha256", password.encode(), b"salt", 1000)
    return "pbkdf2_sha256$1000$salt$" + base64.b64encode(key).decode()


def authed(make: Any, hook: Any = None) -> Harness:
    config = ServerConfig(hostname="mx.test", tls_available=True, check_sender=False)
    app = Recorder()
    h = make(app, config=config, tls_options=object(), auth=({"alice": pbkdf2("wonderland")}, hook))
    h.app = app
    h.output()
    return h


def wait_for(h: Harness, predicate: Any, timeout: float = 10.0) -> None:
    """Run the loop until ``predicate()`` holds (password hashes are checked on a thread)."""
    deadline = h.loop.time() + timeout
    while not predicate():
        if h.loop.time() > deadline:
            raise AssertionError("condition not reached")
        h.loop.run_until_complete(asyncio.sleep(0.005))


def test_auth_is_refused_before_tls_and_checks_hashes_after(make):
    import base64

    h = authed(make)
    h.send(EHLO + b"AUTH PLAIN " + base64.b64encode(b"\0alice\0wonderland") + b"\r\n")
    assert h.replies()[-1] == b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    h.send(b"STARTTLS\r\n")
    h.output()
    h.send(EHLO + b"AUTH PLAIN " + base64.b64encode(b"\0alice\0wrong") + b"\r\n")
    wait_for(h, lambda: b"535" in h.transport.value())
    assert h.replies()[-1] == b"535 5.7.8 Authentication credentials invalid\r\n"
    h.send(b"AUTH LOGIN\r\n" + base64.b64encode(b"alice") + b"\r\n" + base64.b64encode(b"wonderland") + b"\r\n")
    wait_for(h, lambda: b"235" in h.transport.value())
    assert h.replies()[-1] == b"235 2.7.0 Authentication successful\r\n"
    h.send(transaction())
    wait_for(h, lambda: bool(h.app.scopes))
    assert h.app.scopes[0]["auth_user"] == "alice"
    assert b"with ESMTPSA id" in h.app.raws[0]


def test_unknown_users_go_to_the_hook(make):
    import base64

    async def hook(username: str, password: str, scope: dict[str, Any]) -> bool:
        await asyncio.sleep(0)
        return (username, password) == ("bob", "builder") and scope["tls"] is not None

    h = authed(make, hook)
    h.send(EHLO + b"STARTTLS\r\n")
    h.output()
    h.protocol._tls_info = {"tls_version": 772}  # a StringTransport has no TLS details to read
    h.send(EHLO + b"AUTH PLAIN " + base64.b64encode(b"\0bob\0builder") + b"\r\n")
    wait_for(h, lambda: b"235" in h.transport.value())
    h.output()
    h.send(b"MAIL FROM:<a@b.example>\r\n")
    assert h.codes() == [250]


def test_a_failing_hook_is_a_temporary_auth_failure(make):
    import base64

    def hook(username: str, password: str, scope: dict[str, Any]) -> bool:
        raise ConnectionError("user store down")

    h = authed(make, hook)
    h.send(EHLO + b"STARTTLS\r\n")
    h.output()
    h.send(EHLO + b"AUTH PLAIN " + base64.b64encode(b"\0carol\0x") + b"\r\n")
    wait_for(h, lambda: b"454" in h.transport.value())
    assert h.replies()[-1] == b"454 4.7.0 Temporary authentication failure\r\n"


def test_email_send_without_a_smarthost_reports_failure_to_the_application(make):
    results: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        assert scope["extensions"] == {}
        await send({"type": "email.send", "id": "r1", "to": "x@example.org", "subject": "s", "body": "b"})
        await send({"type": "email.accept"})
        results.append(await receive())
        results.append(await receive())

    h = make(app)
    h.send(EHLO + transaction())
    assert results[0]["type"] == "email.send.result" and results[0]["id"] == "r1"
    assert results[0]["ok"] is False and "no smarthost" in results[0]["text"]
    assert results[1] == {"type": "email.disconnect"}
    assert h.replies()[-1] == b"250 2.0.0 Ok: queued\r\n"


def test_hash_password_output_is_accepted_by_the_adapter(make):
    import base64

    config = ServerConfig(hostname="mx.test", tls_available=True, check_sender=False)
    h = make(Recorder(), config=config, tls_options=object(),
             auth=({"dana": hash_password("secret", "pbkdf2_sha256")}, None))
    h.send(EHLO + b"STARTTLS\r\n")
    h.send(EHLO + b"AUTH PLAIN " + base64.b64encode(b"\0dana\0secret") + b"\r\n")
    wait_for(h, lambda: b"235 " in h.transport.value())


def test_a_write_refused_by_the_event_loop_counts_as_a_lost_connection(make):
    gate = asyncio.Event()
    h = make(Recorder(wait=gate))
    h.send(EHLO + transaction())
    h.output()

    def refuse(data: bytes) -> None:
        raise RuntimeError("unable to perform operation on <UVPoll closed=True>; the handler is closed")

    h.transport.write = refuse
    h.loop.call_soon(gate.set)
    h.run()  # the answer's 250 cannot be written: no exception escapes, no close attempted
    assert h.protocol._closing and not h.closed
    h.transport.write = type(h.transport).write.__get__(h.transport)
    h.send(b"QUIT\r\n")
    assert h.output() == b""  # the session is over; nothing more is processed


def test_recipients_routed_to_two_applications_get_one_answer(make):
    first, second = Recorder(), Recorder({"type": "email.accept", "text": "2.0.0 second"})
    router = EmailToRouter([regex(r"@one\.test$", first), regex(r"@two\.test$", second)])
    h = make(router)
    h.output()

    spun: list[bool] = []

    def spinning(signum: int, frame: Any) -> None:
        spun.append(True)
        raise AssertionError("the event loop never got control back (receive() spun)")

    previous = signal.signal(signal.SIGALRM, spinning)
    signal.alarm(10)
    try:
        h.send(EHLO + b"MAIL FROM:<a@example.org>\r\nRCPT TO:<x@one.test>\r\nRCPT TO:<y@two.test>\r\n"
               b"DATA\r\n" + message(), rounds=60)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert not spun
    assert h.replies()[-1] == b"250 2.0.0 Ok: queued\r\n"  # the router combined both accepts
    assert first.scopes[0]["recipients"] == ["x@one.test"] and second.scopes[0]["recipients"] == ["y@two.test"]
    assert first.events == [{"type": "email.disconnect"}] and second.events == [{"type": "email.disconnect"}]
    h.send(b"NOOP\r\n")
    assert h.codes() == [250]  # the loop is free: the fan-out did not spin on email.disconnect


def test_reading_pauses_while_the_client_does_not_read_its_replies(make):
    h = make(Recorder())
    assert h.transport.producer is h.protocol and h.transport.streaming  # told when writes back up
    h.output()
    h.protocol.pauseProducing()  # the transport's write buffer passed its high-water mark
    assert h.transport.producerState == "paused"
    h.send(EHLO + b"NOOP\r\n")  # what was read before the pause is still answered, in order
    assert h.codes() == [250, 250]
    h.protocol.resumeProducing()  # the client read: its next commands are read again
    assert h.transport.producerState == "producing"
    assert h.settings.stats.write_pauses == 1 and h.settings.stats.read_pauses == 1


def test_reading_resumes_only_once_the_answer_came_and_the_client_reads(make):
    gate = asyncio.Event()
    h = make(Recorder(wait=gate))
    h.output()
    h.send(EHLO + transaction())
    h.send(b"NOOP\r\n")  # more while the message is being decided
    h.protocol.pauseProducing()  # and the client stopped reading
    assert h.transport.producerState == "paused"
    gate.set()
    h.run()
    assert h.transport.producerState == "paused"  # answered, but the replies are not read
    h.protocol.resumeProducing()
    assert h.transport.producerState == "producing"
    assert h.codes()[-2:] == [250, 250]  # the message's 250, then the NOOP's


def test_closing_while_the_client_does_not_read_aborts_after_the_command_timeout(make):
    h = make(Recorder(), config=ServerConfig(hostname="mx.test", check_sender=False, timeout=30.0))
    h.output()
    h.protocol.pauseProducing()
    h.send(EHLO + b"QUIT\r\n")
    assert h.transport.disconnecting and not h.transport.disconnected  # waits for the 221 to leave
    h.advance(29)
    assert not h.transport.disconnected
    h.advance(2)
    assert h.transport.disconnected  # a client that never reads is not waited for forever


def test_a_client_that_leaves_before_the_answer_is_not_an_application_error(make):
    """The application's answer raises ClientDisconnected (the sender will send the message
    again); ending on it is counted as a client that left, not logged as an application error."""
    from twisted.logger import LogLevel, globalLogPublisher

    from gateway.asgi.instance import ClientDisconnected

    gate = asyncio.Event()
    raised: list[BaseException] = []
    events: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await gate.wait()
        events.append(await receive())  # the client left: email.disconnect
        try:
            await send({"type": "email.accept"})
        except ClientDisconnected as exc:
            raised.append(exc)
            raise

    logged: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        h = make(app)
        h.send(EHLO + transaction())
        h.lose()
        gate.set()
        h.run()
    finally:
        globalLogPublisher.removeObserver(logged.append)
    stats = h.settings.stats
    assert events == [{"type": "email.disconnect"}] and len(raised) == 1
    assert (stats.instances.client_left, stats.instances.errors, stats.accepted, stats.tempfailed) == (1, 0, 0, 1)
    assert not [e for e in logged if e.get("log_level") in (LogLevel.error, LogLevel.critical)]
