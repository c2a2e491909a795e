"""Lifespan: startup/shutdown answers, failures, unsupported applications, timeouts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.asgi.lifespan import Lifespan, LifespanFailure


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_startup_and_shutdown_share_state() -> None:
    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["asgi"]["spec_version"] == "2.0"
        while True:
            message = await receive()
            calls.append(message["type"])
            if message["type"] == "lifespan.startup":
                scope["state"]["pool"] = "ready"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def main() -> dict[str, Any]:
        lifespan = Lifespan(app, asyncio.get_running_loop())
        await lifespan.startup()
        await lifespan.shutdown()
        return lifespan.state

    assert run(main()) == {"pool": "ready"}
    assert calls == ["lifespan.startup", "lifespan.shutdown"]


def test_startup_failed_carries_the_message() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    async def main() -> None:
        await Lifespan(app, asyncio.get_running_loop()).startup()

    with pytest.raises(LifespanFailure, match="no database"):
        run(main())


@pytest.mark.parametrize(("mode", "supported"), [("auto", False)])
def test_auto_mode_treats_an_early_exception_as_unsupported(mode: str, supported: bool) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise KeyError(scope["type"])

    async def main() -> Lifespan:
        lifespan = Lifespan(app, asyncio.get_running_loop(), mode)
        await lifespan.startup()
        await lifespan.shutdown()
        return lifespan

    assert run(main()).supported is supported


def test_on_mode_requires_support() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise KeyError(scope["type"])

    async def main() -> None:
        await Lifespan(app, asyncio.get_running_loop(), "on").startup()

    with pytest.raises(LifespanFailure, match="KeyError"):
        run(main())


def test_off_mode_never_calls_the_application() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("called")

    async def main() -> None:
        lifespan = Lifespan(app, asyncio.get_running_loop(), "off")
        await lifespan.startup()
        await lifespan.shutdown()

    run(main())


def test_startup_timeout() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(10)

    async def main() -> None:
        lifespan = Lifespan(app, asyncio.get_running_loop(), "on", startup_timeout=0.05)
        try:
            await lifespan.startup()
        finally:
            assert lifespan._task is not None
            lifespan._task.cancel()

    with pytest.raises(LifespanFailure, match="did not finish within"):
        run(main())


def test_wrong_message_is_an_error_in_the_application() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    async def main() -> None:
        await Lifespan(app, asyncio.get_running_loop(), "on").startup()

    with pytest.raises(LifespanFailure, match="Expected ASGI message"):
        run(main())
