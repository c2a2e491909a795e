"""The mailbox reader's decisions with a fake IMAP client: mark only after accept, retry later,
actions per configuration, UIDVALIDITY, scope keys, reconnect backoff."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from gateway.config import load_config_text
from gateway.protocols.imap.client import FetchedMessage
from gateway.protocols.imap.adapter import MailboxReader
from gateway.routing import EmailToRouter, regex


def message(to: str = "help@accept.test", subject: str = "s", extra: str = "") -> bytes:
    return (f"Return-Path: <bounce@example.org>\r\nFrom: Al <al@example.org>\r\nTo: {to}\r\n"
            f"Subject: {subject}\r\n{extra}\r\nbody\r\n").encode()


class FakeClient:
    """Duck-types the MailboxClient commands the reader uses, over an in-memory mailbox."""

    def __init__(self, messages: dict[int, bytes], capabilities: tuple[bytes, ...] = (b"IDLE", b"MOVE", b"UIDPLUS")):
        self.mailbox = {uid: {"raw": raw, "flags": set()} for uid, raw in messages.items()}
        self.moved: dict[int, str] = {}
        self.capabilities = {c: None for c in capabilities}
        self.calls: list[tuple[Any, ...]] = []

    def uid_search(self, criteria: bytes) -> defer.Deferred[list[int]]:
        assert criteria == b"UNSEEN UNDELETED"
        return defer.succeed(sorted(u for u, m in self.mailbox.items() if not m["flags"] & {"\\Seen", "\\Deleted"}))

    def uid_fetch(self, uids: list[int], body: bool) -> defer.Deferred[dict[int, FetchedMessage]]:
        self.calls.append(("fetch", tuple(uids), body))
        return defer.succeed({u: FetchedMessage(u, len(self.mailbox[u]["raw"]), tuple(self.mailbox[u]["flags"]),
                                                self.mailbox[u]["raw"] if body else None)
                              for u in uids if u in self.mailbox})

    def uid_store(self, uids: list[int], flags: bytes) -> defer.Deferred[None]:
        self.calls.append(("store", tuple(uids), flags))
        for uid in uids:
            self.mailbox[uid]["flags"].update(flags.decode().split())
        return defer.succeed(None)

    def uid_move(self, uids: list[int], mailbox: str) -> defer.Deferred[None]:
        self.calls.append(("move", tuple(uids), mailbox))
        for uid in uids:
            self.moved[uid] = mailbox
            del self.mailbox[uid]
        return defer.succeed(None)

    def uid_copy(self, uids: list[int], mailbox: str) -> defer.Deferred[None]:
        self.calls.append(("copy", tuple(uids), mailbox))
        return defer.succeed(None)

    def uid_expunge(self, uids: list[int]) -> defer.Deferred[None]:
        self.calls.append(("expunge", tuple(uids)))
        for uid in uids:
            if "\\Deleted" in self.mailbox[uid]["flags"]:
                del self.mailbox[uid]
        return defer.succeed(None)


class App:
    """Accepts @accept.test, raises for @fail.test, rejects @reject.test, waits on a gate for @slow.test."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.gate = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        await receive()
        rcpt = scope["recipients"][0]
        if rcpt.endswith("@fail.test"):
            raise RuntimeError("consumer failed")
        if rcpt.endswith("@slow.test"):
            await self.gate.wait()
        if rcpt.endswith("@reject.test"):
            await send({"type": "email.reject", "code": 554, "text": "5.7.1 no"})
        elif rcpt.endswith("@later.test"):
            await send({"type": "email.reject", "code": 451, "text": "4.3.0 later"})
        else:
            await send({"type": "email.accept"})


def reader_config(**options: Any) -> Any:
    extra = "".join(f", {key}: {value}" for key, value in options.items())
    text = f"application: tests.email_apps:app\nlisteners:\n  - {{name: box, protocol: imap, host: h, username: u, password: p{extra}}}\n"
    return load_config_text(text, import_applications=False).listeners[0]


class Setup:
    def __init__(self, messages: dict[int, bytes], capabilities: tuple[bytes, ...] = (b"IDLE", b"MOVE", b"UIDPLUS"),
                 app: Any = None, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = MemoryReactorClock()
        self.app = app or App()
        self.client = FakeClient(messages, capabilities)
        self.reader = MailboxReader(reader_config(**options), app=self.app, loop=self.loop, reactor=self.clock)
        self.reader.uidvalidity = 7

    def process(self) -> None:
        self.loop.run_until_complete(self.reader._process(self.client))

    def close(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


@pytest.fixture
def setup():
    made: list[Setup] = []

    def make(*args: Any, **kwargs: Any) -> Setup:
        s = Setup(*args, **kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def test_accepted_messages_are_marked_seen_only_after_the_answer(setup):
    s = setup({5: message("a@slow.test")})
    task = s.loop.create_task(s.reader._process(s.client))
    for _ in range(20):
        s.loop.run_until_complete(asyncio.sleep(0))
    assert ("fetch", (5,), True) in s.client.calls
    assert not [c for c in s.client.calls if c[0] == "store"]  # the application is still deciding
    s.app.gate.set()
    s.loop.run_until_complete(task)
    assert s.client.calls[-1] == ("store", (5,), b"\\Seen")
    assert s.client.mailbox[5]["flags"] == {"\\Seen"}


def test_failures_leave_the_message_and_it_comes_back_after_the_retry_interval(setup):
    s = setup({1: message("a@fail.test"), 2: message("b@later.test"), 3: message("c@accept.test")},
              retry_interval="30s")
    s.process()
    assert s.client.mailbox[1]["flags"] == set() and s.client.mailbox[2]["flags"] == set()
    assert s.client.mailbox[3]["flags"] == {"\\Seen"}
    assert set(s.reader.retry_at) == {1, 2}
    s.process()
    assert len(s.app.scopes) == 3  # not offered again yet
    s.clock.advance(31)
    s.process()
    assert [scope["uid"] for scope in s.app.scopes] == [1, 2, 3, 1, 2]


def test_permanent_rejections_follow_after_reject(setup):
    s = setup({1: message("a@reject.test"), 2: message("b@nowhere.test")},
              app=EmailToRouter([regex(r"@(reject|accept)\.test$", App())]))
    s.process()
    assert s.client.mailbox[1]["flags"] == {"\\Seen"} and s.client.mailbox[2]["flags"] == {"\\Seen"}  # no route: 550
    left = setup({1: message("a@reject.test")}, after_reject="leave")
    left.process()
    left.process()
    assert left.client.mailbox[1]["flags"] == set() and len(left.app.scopes) == 1 and left.reader.skip == {1}


def test_move_with_and_without_the_move_extension(setup):
    s = setup({1: message()}, after_accept="move", move_to="Done")
    s.process()
    assert s.client.calls[-2:] == [("store", (1,), b"\\Seen"), ("move", (1,), "Done")]
    old = setup({1: message()}, capabilities=(b"UIDPLUS",), after_accept="move", move_to="Done")
    old.process()
    assert old.client.calls[-4:] == [("store", (1,), b"\\Seen"), ("copy", (1,), "Done"),
                                     ("store", (1,), b"\\Deleted"), ("expunge", (1,))]
    assert 1 not in old.client.mailbox


def test_delete_expunges_only_with_uidplus(setup):
    s = setup({1: message()}, after_accept="delete")
    s.process()
    assert 1 not in s.client.mailbox and s.client.calls[-1] == ("expunge", (1,))
    plain = setup({1: message()}, capabilities=(), after_accept="delete")
    plain.process()
    assert plain.client.mailbox[1]["flags"] == {"\\Seen", "\\Deleted"}  # no plain EXPUNGE of others' mail
    assert not [c for c in plain.client.calls if c[0] == "expunge"]


def test_oversized_messages_are_rejected_without_fetching_the_body(setup):
    s = setup({1: message(extra="X-Pad: " + "x" * 2000 + "\r\n")}, max_message_size=1000)
    s.process()
    assert ("fetch", (1,), True) not in s.client.calls and s.app.scopes == []
    assert s.client.mailbox[1]["flags"] == {"\\Seen"}


def test_the_scope_of_an_imap_message(setup):
    s = setup({9: message("Help <help@accept.test>", extra="Cc: cc@accept.test\r\n")})
    s.process()
    (scope,) = s.app.scopes
    assert scope["source"] == "imap" and scope["mailbox"] == "INBOX" and scope["uid"] == 9
    assert scope["uidvalidity"] == 7 and scope["sender"] == "bounce@example.org"
    assert scope["recipients"] == ["help@accept.test", "cc@accept.test"]
    assert scope["server"] == ("h", 993) and scope["client"] is None and scope["helo"] is None
    delivered = setup({1: message(extra="Delivered-To: box@accept.test\r\n")})
    delivered.process()
    assert delivered.app.scopes[0]["recipients"] == ["box@accept.test"]
    fixed = setup({1: message()}, recipients="[support@accept.test]")
    fixed.process()
    assert fixed.app.scopes[0]["recipients"] == ["support@accept.test"]


def test_uidvalidity_change_forgets_remembered_uids(setup):
    s = setup({})
    s.reader.retry_at = {4: 100.0}
    s.reader.skip = {5}
    s.reader._check_uidvalidity(7)
    assert s.reader.retry_at == {4: 100.0} and s.reader.skip == {5}
    s.reader._check_uidvalidity(8)
    assert s.reader.retry_at == {} and s.reader.skip == set() and s.reader.uidvalidity == 8
    with pytest.raises(ValueError):
        s.reader._check_uidvalidity(None)


def test_reconnect_backoff_doubles_up_to_the_maximum_and_stop_ends_it(setup):
    s = setup({}, reconnect_initial="1s", reconnect_max="4s")
    attempts: list[float] = []

    def connect(client: Any) -> defer.Deferred[Any]:
        attempts.append(s.clock.seconds())
        return defer.fail(ConnectionRefusedError("no server"))

    s.reader.connect = connect
    s.reader.start()
    for step in range(40):
        s.loop.run_until_complete(asyncio.sleep(0))
        s.clock.advance(0.5)
    assert attempts[:5] == [0.0, 1.0, 3.0, 7.0, 11.0]  # waits of 1, 2, 4, 4 seconds
    s.loop.run_until_complete(s.reader.stop())
    assert s.reader.task.done()


def test_without_idle_the_reader_polls_and_new_mail_or_a_due_retry_cut_the_wait_short(setup):
    s = setup({}, poll_interval="30s")

    def spin() -> None:
        for _ in range(5):
            s.loop.run_until_complete(asyncio.sleep(0))

    waiting = s.loop.create_task(s.reader._wait_for_mail(s.client, idle=False))
    spin()
    s.clock.advance(29)
    spin()
    assert not waiting.done()
    s.clock.advance(1.5)
    spin()
    assert waiting.done()
    woken = s.loop.create_task(s.reader._wait_for_mail(s.client, idle=False))
    spin()
    s.reader._on_new_mail()  # "* n EXISTS" seen on the connection
    spin()
    assert woken.done() and s.reader.new_mail
    s.reader.new_mail = False
    s.reader.retry_at = {3: s.clock.seconds() + 5}  # a retry due before the poll interval ends
    soon = s.loop.create_task(s.reader._wait_for_mail(s.client, idle=False))
    spin()
    s.clock.advance(5.5)
    spin()
    assert soon.done()
