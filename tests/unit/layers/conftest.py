"""Fixtures for the Redis layer tests: redis-servers on free ports, Twisted's asyncio reactor
running in a thread, and helpers to run coroutines on it."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from tests.unit.layers.redis_server import REDIS_SERVER, RedisServer

if TYPE_CHECKING:
    from gateway.layers.redis import RedisChannelLayer

T = TypeVar("T")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for one test module (skips when redis-server is absent)."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _layer_work_ends_with_the_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every Redis layer a test built, even when the test failed half-way: nothing it
    started (readers, reconnection attempts) keeps running into the next test."""
    from gateway.layers.redis import RedisChannelLayer

    built: list[RedisChannelLayer] = []
    original = RedisChannelLayer.__init__

    def tracking_init(self: RedisChannelLayer, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(RedisChannelLayer, "__init__", tracking_init)
    yield
    for layer in built:
        loop = layer._loop
        if layer._topology is not None and loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(layer.close(), loop).result(30)


@pytest.fixture(scope="session")
def reactor_loop() -> asyncio.AbstractEventLoop:
    """The loop of Twisted's asyncio reactor, running in a daemon thread (as the layer needs).

    Importing some Twisted modules (``twisted.mail.smtp``, txredisapi) installs Twisted's default
    reactor as a side effect; in a test session that collected such a module first, that reactor
    sits installed and never run. It is replaced here by the asyncio reactor (modules that
    already hold the idle one keep it; txredisapi is pointed at the new one).
    """
    from gateway.layers.redis import start_reactor_thread
    from gateway.reactor import installed_reactor, is_asyncio_reactor

    current = installed_reactor()
    if current is not None and not is_asyncio_reactor(current):
        if current.running:
            pytest.skip(f"{type(current).__name__} is running in this process; the Redis layer needs the asyncio reactor")
        import twisted.internet

        del sys.modules["twisted.internet.reactor"]
        if hasattr(twisted.internet, "reactor"):
            del twisted.internet.reactor
    reactor = start_reactor_thread()
    txredisapi = sys.modules.get("txredisapi")
    if txredisapi is not None and txredisapi.reactor is not reactor:
        txredisapi.reactor = reactor
        txredisapi.LineReceiver.callLater = reactor.callLater
    return reactor._asyncioEventloop  # type: ignore[no-any-return]


def on_reactor(loop: asyncio.AbstractEventLoop, factory: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
    """Run ``factory()`` on the reactor's loop and return its result (from the test's thread)."""

    async def main() -> T:
        return await factory()

    return asyncio.run_coroutine_threadsafe(main(), loop).result(timeout)


@pytest.fixture()
def server(tmp_path: Path) -> Any:
    """A redis-server of the test's own (one a test may kill and restart)."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture()
def spawn(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """``spawn(**RedisServer options)``: start a redis-server; all are stopped after the test."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    started: list[RedisServer] = []

    def start(**kwargs: Any) -> RedisServer:
        server = RedisServer(tmp_path, **kwargs)
        started.append(server)
        return server.start()

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture()
def run(reactor_loop: asyncio.AbstractEventLoop) -> Callable[[Callable[[], Awaitable[Any]]], Any]:
    """``run(coroutine_function)``: run it on the reactor's loop, return its result."""

    def runner(factory: Callable[[], Awaitable[Any]]) -> Any:
        return on_reactor(reactor_loop, factory)

    return runner


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


async def recv(layer: RedisChannelLayer, channel: str, timeout: float = 5.0) -> dict[str, Any]:
    """``layer.receive(channel)`` that fails after ``timeout`` seconds."""
    return await asyncio.wait_for(layer.receive(channel), timeout)
