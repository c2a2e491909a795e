"""Router plumbing: the ``matches`` protocol, not-found replies, ``ProtocolTypeRouter`` and
``ChannelNameRouter``.

Every router is an ASGI application. Each also has ``async matches(scope) -> bool``: "would this
scope reach an application?", answered without running anything, so a listener can refuse early
(the SMTP listener asks once per ``RCPT TO`` with a probe scope). Call :func:`matches` rather than
the method: it treats applications without the method (consumers, plain apps) as matching, and it
accepts sync or async ``matches`` implementations. Middleware built on ``BaseMiddleware``
forwards the question to the application it wraps.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from gateway.asgi.app import ASGIApp, Receive, Scope, Send
from gateway.exceptions import NoRouteFound

__all__ = ["ChannelNameRouter", "ProtocolTypeRouter", "matches", "not_found"]


async def matches(application: object, scope: Scope) -> bool:
    """True if ``application`` would handle ``scope`` (see the module docstring)."""
    method = getattr(application, "matches", None)
    if method is None:
        return True
    result = method(scope)
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


async def not_found(scope: Scope, receive: Receive, send: Send, detail: str) -> None:
    """Answer a scope no route matched, in its protocol's words.

    * ``http``: a 404 response with a short text body.
    * ``websocket``: waits for ``websocket.connect`` and sends ``websocket.close`` before accepting,
      which the server turns into an HTTP 403 handshake rejection.
    * ``email``: ``email.reject`` with ``550`` / ``5.1.1``.

    Raises:
        NoRouteFound: for any other scope type (the listener should have asked :func:`matches`).
    """
    kind = scope.get("type")
    if kind == "http":
        await send({"type": "http.response.start", "status": 404,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
        await send({"type": "http.response.body", "body": b"Not Found\n", "more_body": False})
    elif kind == "websocket":
        message = await receive()
        if message.get("type") == "websocket.connect":
            await send({"type": "websocket.close", "code": 1000})
    elif kind == "email":
        await send({"type": "email.reject", "code": 550, "text": "5.1.1 " + detail})
    else:
        raise NoRouteFound(detail)


class ProtocolTypeRouter:
    """Routes on ``scope["type"]``: ``ProtocolTypeRouter({"http": app, "websocket": app, ...})``.

    Raises:
        ValueError: (when called) no application for the scope's type.
    """

    def __init__(self, application_mapping: Mapping[str, ASGIApp]) -> None:
        if not isinstance(application_mapping, Mapping):
            raise TypeError("ProtocolTypeRouter takes a mapping of scope type -> application")
        self.application_mapping = dict(application_mapping)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]  # a scope without a type is a server bug: KeyError, as Channels
        application = self.application_mapping.get(kind)
        if application is None:
            known = ", ".join(sorted(self.application_mapping)) or "none"
            raise ValueError(f"No application configured for scope type {kind!r} (configured: {known})")
        return await application(scope, receive, send)

    async def matches(self, scope: Scope) -> bool:
        """True if the scope's type is routed and the application for it matches."""
        kind = scope.get("type")
        application = self.application_mapping.get(kind) if isinstance(kind, str) else None
        return application is not None and await matches(application, scope)


class ChannelNameRouter:
    """Routes worker scopes ``{"type": "channel", "channel": name}`` on the channel name.

    Raises:
        ValueError: (when called) the scope has no ``channel`` or no application for it.
    """

    def __init__(self, application_mapping: Mapping[str, ASGIApp]) -> None:
        self.application_mapping = dict(application_mapping)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if "channel" not in scope:
            raise ValueError(
                "ChannelNameRouter got a scope without a 'channel' key. "
                "Did you make sure it's only being used for 'channel' type messages?"
            )
        application = self.application_mapping.get(scope["channel"])
        if application is None:
            raise ValueError(f"No application configured for channel name {scope['channel']!r}")
        return await application(scope, receive, send)

    async def matches(self, scope: Scope) -> bool:
        """True if the scope's channel is routed and its application matches."""
        channel = scope.get("channel")
        application = self.application_mapping.get(channel) if isinstance(channel, str) else None
        return application is not None and await matches(application, scope)

    @property
    def channels(self) -> list[str]:
        """The channel names routed (what ``gateway worker`` may listen on)."""
        return list(self.application_mapping)
