"""``AsyncEmailConsumer`` / ``EmailConsumer`` driven by ``EmailCommunicator``, and the lazy message."""

from __future__ import annotations

import asyncio
import copy
import pickle
from email.message import EmailMessage
from typing import Any

import pytest

from gateway.consumers.email import AsyncEmailConsumer, EmailConsumer, LazyEmailMessage, parse_message
from gateway.layers import InMemoryChannelLayer, LayerRegistry
from gateway.routing import EmailToRouter, regex
from gateway.testing.email import EmailCommunicator
from tests.unit.layers.conftest import until

RAW = (b"From: Alice <alice@example.org>\r\nReply-To: help@example.org\r\nTo: support@example.org\r\n"
       b"Subject: Printer on fire\r\nMessage-ID: <m1@example.org>\r\nReferences: <m0@example.org>\r\n\r\nHelp!\r\n")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Ticket(AsyncEmailConsumer):
    seen: list[tuple[str, str, bytes]] = []

    async def receive(self, message: EmailMessage, raw: bytes) -> None:
        Ticket.seen.append((message["Subject"], self.scope["sender"], raw))


class Picky(AsyncEmailConsumer):
    async def receive(self, message: EmailMessage, raw: bytes) -> None:
        if "fire" in message["Subject"]:
            await self.reject(554, "5.7.1 we do not do fires")
        else:
            await self.accept("2.0.0 Ok: ticket 7")


class Broken(AsyncEmailConsumer):
    async def receive(self, message: EmailMessage, raw: bytes) -> None:
        raise ConnectionError("database down")


class Answering(AsyncEmailConsumer):
    results: list[dict[str, Any]] = []

    async def receive(self, message: EmailMessage, raw: bytes) -> None:
        await self.accept()
        self.reply_id = await self.reply("We are on it.")

    async def send_result(self, result: dict[str, Any]) -> None:
        Answering.results.append(result)


class SyncTicket(EmailConsumer):
    seen: list[str] = []

    def receive(self, message: EmailMessage, raw: bytes) -> None:
        SyncTicket.seen.append(message["Subject"])
        self.send_email("log@example.org", "copy", message.get_content())


def test_returning_accepts_and_the_consumer_stops_on_disconnect():
    async def main() -> None:
        communicator = EmailCommunicator(Ticket.as_asgi(), RAW, sender="alice@example.org")
        outcome = await communicator.deliver()
        assert outcome.accepted and outcome.code == 250 and outcome.sends == []
        await communicator.disconnect()

    Ticket.seen.clear()
    run(main())
    assert Ticket.seen == [("Printer on fire", "alice@example.org", RAW)]


def test_reject_and_accept_with_text():
    async def main() -> None:
        outcome = await EmailCommunicator(Picky.as_asgi(), RAW).deliver()
        assert not outcome.accepted and outcome.code == 554 and outcome.text == "5.7.1 we do not do fires"
        calm = await EmailCommunicator(Picky.as_asgi(), RAW.replace(b"on fire", b"jammed")).deliver()
        assert calm.accepted and calm.text == "2.0.0 Ok: ticket 7"

    run(main())


def test_an_exception_is_not_an_answer():
    async def main() -> None:
        outcome = await EmailCommunicator(Broken.as_asgi(), RAW).deliver()
        assert not outcome.accepted and outcome.code == 451
        assert isinstance(outcome.error, ConnectionError)

    run(main())


def test_reply_addresses_the_reply_to_and_threads_the_conversation():
    async def main() -> None:
        communicator = EmailCommunicator(Answering.as_asgi(), RAW)
        outcome = await communicator.deliver()
        assert outcome.accepted
        (send,) = await communicator.collect_sends()
        assert send["to"] == ["help@example.org"] and send["subject"] == "Re: Printer on fire"
        assert send["headers"] == {"In-Reply-To": "<m1@example.org>", "References": "<m0@example.org> <m1@example.org>"}
        await communicator.send_result(send["id"], ok=False, code=550, text="5.1.1 no such user", temporary=False)
        await until(lambda: bool(Answering.results) and Answering.results[-1]["id"] == send["id"], 5)
        await communicator.disconnect()
        assert Answering.results[-1]["id"] == send["id"] and Answering.results[-1]["ok"] is False

    run(main())


def test_sync_consumers_run_in_threads_and_send():
    async def main() -> None:
        outcome = await EmailCommunicator(SyncTicket.as_asgi(), RAW).deliver(timeout=3)
        assert outcome.accepted and [s["to"] for s in outcome.sends] == ["log@example.org"]
        assert outcome.sends[0]["body"] == "Help!\r\n"

    SyncTicket.seen.clear()
    run(main())
    assert SyncTicket.seen == ["Printer on fire"]


@pytest.fixture
def fresh_layer() -> Any:
    """A new in-memory layer as alias "default" of a registry current for the test."""
    layer = InMemoryChannelLayer()
    registry = LayerRegistry({})
    registry.set("default", layer)
    with registry.active():
        yield layer


def test_the_layer_is_there_but_no_channel_unless_asked(fresh_layer):
    class Grouping(AsyncEmailConsumer):
        async def receive(self, message: EmailMessage, raw: bytes) -> None:
            await self.channel_layer.group_send("tickets", {"type": "ticket.new", "subject": message["Subject"]})
            Grouping.name = self.channel_name

    class Channelled(Grouping):
        channel_receive = True

    async def main() -> None:
        layer = fresh_layer
        watcher = await layer.new_channel()
        await layer.group_add("tickets", watcher)
        assert (await EmailCommunicator(Grouping.as_asgi(), RAW).deliver()).accepted
        assert (await layer.receive(watcher))["subject"] == "Printer on fire"
        assert Grouping.name is None
        assert (await EmailCommunicator(Channelled.as_asgi(), RAW).deliver()).accepted
        assert Grouping.name is not None and "!" in Grouping.name  # a process-specific channel name

    run(main())


def test_routers_and_imap_scopes_work_with_the_communicator():
    async def main() -> None:
        router = EmailToRouter([regex(r"@support\.example\.org$", Ticket.as_asgi())])
        communicator = EmailCommunicator(router, RAW, source="imap", recipients=["x@support.example.org"], uid=42)
        assert communicator.scope["uid"] == 42 and communicator.scope["client"] is None
        assert (await communicator.deliver()).accepted
        lost = await EmailCommunicator(router, RAW, recipients=["x@elsewhere.org"]).deliver()
        assert lost.code == 550 and lost.text.startswith("5.1.1")

    run(main())


def test_the_lazy_message_parses_once_on_first_use():
    message = parse_message(RAW)
    assert isinstance(message, EmailMessage) and "_lazy_raw" in vars(message)
    assert message["Subject"] == "Printer on fire" and "_lazy_raw" not in vars(message)
    assert message.get_content() == "Help!\r\n"
    fresh = LazyEmailMessage(RAW)
    fresh.preamble = "set before parsing"  # parsing first, so it is not overwritten later
    assert fresh.preamble == "set before parsing" and fresh["To"] == "support@example.org"
    assert copy.deepcopy(parse_message(RAW))["From"] == "Alice <alice@example.org>"
    assert pickle.loads(pickle.dumps(parse_message(RAW)))["Message-ID"] == "<m1@example.org>"
    with pytest.raises(AttributeError):
        parse_message(RAW).no_such_attribute  # noqa: B018
