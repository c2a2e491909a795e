"""An application that imports Twisted's reactor at module level, as txredisapi,
``twisted.mail.smtp`` and the gateway's own ``gateway.protocols.email.sender`` do (and treq's users often
do): importing it installs Twisted's default reactor unless the entry point installed the
gateway's first (``tests/integration/test_commands.py``).

``GET /reactor`` answers the class name of the reactor the module saw; the ``jobs`` worker
channel writes each ``job.run`` message as a JSON line to ``$GATEWAY_TEST_WORKER_OUT``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import reactor  # the point of this module: before anything else

import treq  # noqa: F401,E402
import twisted.mail.smtp  # noqa: F401,E402
import txredisapi  # noqa: F401,E402

import gateway.protocols.email.sender  # noqa: F401,E402
from gateway.consumers import AsyncConsumer  # noqa: E402
from gateway.routing import ChannelNameRouter, ProtocolTypeRouter  # noqa: E402
from tests import apps  # noqa: E402

REACTOR = type(reactor).__name__


async def http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["path"] == "/reactor":
        await apps.text(send, REACTOR.encode())
        return
    await apps.app(scope, receive, send)


class JobWriter(AsyncConsumer):
    """``gateway worker jobs``: appends each job to the file named by the environment."""

    async def job_run(self, event: dict[str, Any]) -> None:
        with open(os.environ["GATEWAY_TEST_WORKER_OUT"], "a", encoding="utf-8") as out:
            out.write(json.dumps({"job": event.get("job"), "reactor": REACTOR}) + "\n")


app = ProtocolTypeRouter({
    "http": http,
    "channel": ChannelNameRouter({"jobs": JobWriter.as_asgi()}),
})
