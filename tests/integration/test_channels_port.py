"""Channels code ported by changing imports runs over real WebSockets on the daemon.

The consumers are the Channels tutorial's chat consumers (tests/unit/consumers/chat_tutorial.py),
sync (WebsocketConsumer with async_to_sync) and async, on the default in-memory layer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, http_config

pytestmark = pytest.mark.slow

websockets_sync = pytest.importorskip("websockets.sync.client")


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Daemon:
    tmp = tmp_path_factory.mktemp("chat")
    daemon = Daemon(tmp, http_config(app="tests.unit.consumers.chat_tutorial:application")).start()
    yield daemon  # type: ignore[misc]
    daemon.stop()


@pytest.mark.parametrize("kind", ["chat", "achat"])
def test_chat_room_messages_reach_every_member(chat: Daemon, kind: str) -> None:
    url = f"ws://{chat.addresses['web']}/ws/{kind}/lobby/"
    with websockets_sync.connect(url, origin="http://localhost") as alice, \
            websockets_sync.connect(url, origin="http://localhost") as bob:
        alice.send(json.dumps({"message": "hello from alice"}))
        assert json.loads(bob.recv(timeout=10)) == {"message": "hello from alice"}
        assert json.loads(alice.recv(timeout=10)) == {"message": "hello from alice"}
        bob.send(json.dumps({"message": "hi alice"}))
        assert json.loads(alice.recv(timeout=10)) == {"message": "hi alice"}


def test_rooms_are_separate(chat: Daemon) -> None:
    base = f"ws://{chat.addresses['web']}/ws/chat/"
    with websockets_sync.connect(base + "one/", origin="http://localhost") as one, \
            websockets_sync.connect(base + "two/", origin="http://localhost") as two:
        one.send(json.dumps({"message": "only for one"}))
        assert json.loads(one.recv(timeout=10))["message"] == "only for one"
        with pytest.raises(TimeoutError):
            two.recv(timeout=0.5)


def test_foreign_origin_is_refused(chat: Daemon) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as info:
        websockets_sync.connect(f"ws://{chat.addresses['web']}/ws/chat/lobby/", origin="http://evil.example")
    assert info.value.response.status_code == 403


def test_unknown_path_is_refused(chat: Daemon) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as info:
        websockets_sync.connect(f"ws://{chat.addresses['web']}/nowhere/", origin="http://localhost")
    assert info.value.response.status_code == 403
