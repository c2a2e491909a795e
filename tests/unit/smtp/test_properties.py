"""Property tests on the SMTP command core (issue 7, "Property tests on the SMTP command core")."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.protocols.smtp import (
    AuthCredentials,
    CloseConnection,
    Decision,
    Event,
    MessageReceived,
    Reply,
    ServerConfig,
    SMTPServer,
    StartTLS,
)
from tests.strategies.smtp import bodies, chunked, dot_stuff, sessions, soup
from tests.unit.smtp.harness import policy, replies, run

# Error replies are part of the model (rejected recipients, XYZZY): keep the limit out of reach.
CONFIG = ServerConfig(hostname="mx.test", max_errors=1000)
TLS_CONFIG = ServerConfig(
    hostname="mx.test", max_errors=1000, tls_available=True, auth_mechanisms=("PLAIN", "LOGIN")
)


@given(spec=sessions(), data=st.data())
def test_any_chunking_gives_the_same_replies_and_events(spec, data):
    whole = run([[seg] for seg in spec.segments], CONFIG)
    chunks = [data.draw(chunked(seg)) for seg in spec.segments]
    split = run(chunks, CONFIG)
    assert split.output == whole.output
    assert split.events == whole.events
    assert whole.codes == spec.codes


@given(spec=sessions(tls=True), data=st.data())
def test_any_chunking_with_starttls_and_auth(spec, data):
    whole = run([[seg] for seg in spec.segments], TLS_CONFIG)
    chunks = [data.draw(chunked(seg)) for seg in spec.segments]
    split = run(chunks, TLS_CONFIG)
    assert split.output == whole.output
    assert split.events == whole.events
    assert whole.codes == spec.codes


@given(spec=st.one_of(sessions(), sessions(tls=True)), data=st.data())
def test_pipelined_answers_in_any_timing_keep_replies_in_order(spec, data):
    """RFC 2920: replies in command order whatever the timing of the asynchronous checks."""
    chunks = [data.draw(chunked(seg)) for seg in spec.segments]
    delays = data.draw(st.lists(st.integers(0, 4), max_size=40))
    slow = run(chunks, TLS_CONFIG, delays=delays)
    assert slow.codes == spec.codes
    delivered = [(e[1], e[2], e[-1]) for e in slow.messages]
    assert delivered == spec.messages


@given(body=bodies(), data=st.data())
def test_dot_stuffing_round_trip_for_any_body_and_chunking(body, data):
    wire = b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n" + dot_stuff(
        body
    )
    result = run([data.draw(chunked(wire))], CONFIG)
    assert result.codes == [220, 250, 250, 250, 354, 250]
    assert result.messages[0][-1] == body


def _soup_policy(event: Decision):
    # Deterministic, so chunkings stay comparable; exercises every kind of answer.
    if isinstance(event, AuthCredentials):
        return ("accept", None) if event.password == "secret" else ("reject", None)
    if isinstance(event, MessageReceived) and len(event.data) % 3 == 1:
        return ("defer", None)
    return policy(event)


SOUP_CONFIG = ServerConfig(
    hostname="mx.test", auth_require_tls=False, max_command_line=512, max_errors=25
)


@given(data=soup(), cuts=st.data())
def test_arbitrary_bytes_never_raise_and_neither_chunking_nor_timing_matters(data, cuts):
    whole = run([[data]], SOUP_CONFIG, decide=_soup_policy, eof=True)
    delays = cuts.draw(st.lists(st.integers(0, 3), max_size=20))
    split = run(
        [cuts.draw(chunked(data))], SOUP_CONFIG, decide=_soup_policy, delays=delays, eof=True
    )
    assert split.output == whole.output
    assert split.events == whole.events
    replies(whole.output)  # well-formed: every line is "ddd-text" or "ddd text", CRLF-ended
    assert whole.closed
    closes = [e for e in whole.events if e[0] == "Close"]
    assert len(closes) == 1 and whole.events[-1] == closes[0]


@given(data=st.binary(max_size=300), tls=st.booleans())
def test_random_binary_with_starttls_never_raises(data, tls):
    """With STARTTLS reachable the stream may stop at it; the core still only emits replies."""
    session = SMTPServer(ServerConfig(tls_available=True, auth_require_tls=False, max_errors=5))
    session.receive_data(b"EHLO x\r\n" + data)
    out = session.data_to_send()
    for event in session.events_received():
        assert isinstance(event, Event)
        if isinstance(event, StartTLS) and tls:
            session.tls_started()
            session.receive_data(data)
        elif isinstance(event, Decision) and session.pending is event:
            session.reject(event, Reply(550, "5.0.0", "no"))
    out += session.data_to_send()
    replies(out)


@given(data=soup().filter(bool))
def test_nothing_is_processed_while_a_decision_is_pending(data):
    """Input behind an unanswered decision produces neither replies nor events."""
    session = SMTPServer(SOUP_CONFIG)
    session.data_to_send()
    session.receive_data(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\n")
    (event,) = session.events_received()
    before = session.data_to_send()
    session.receive_data(data)
    assert session.data_to_send() == b"" and session.events_received() == []
    assert session.pending is event and before.startswith(b"250-")
    session.accept(event)
    assert session.data_to_send().startswith(b"250 2.1.0")


def test_close_event_is_last():
    session = SMTPServer(CONFIG)
    session.receive_data(b"QUIT\r\nNOOP\r\n")
    events = session.events_received()
    assert [type(e) for e in events] == [CloseConnection]
    assert session.data_to_send().endswith(b"221 2.0.0 Bye\r\n")
