"""Exceptions of the programming model (consumers, channel layers, routing).

The names and base classes match ``channels.exceptions`` so code written for Django Channels
catches the same things after changing its imports.
"""

from __future__ import annotations

__all__ = [
    "AcceptConnection",
    "ChannelFull",
    "DenyConnection",
    "InvalidChannelLayerError",
    "MessageTooLarge",
    "NoRouteFound",
    "RequestAborted",
    "RequestTimeout",
    "StopConsumer",
]


class RequestAborted(Exception):
    """The client went away (or the request was abandoned) part-way through the body."""


class RequestTimeout(RequestAborted):
    """The request was abandoned because it took too long."""


class InvalidChannelLayerError(ValueError):
    """A channel layer is configured wrongly, or a consumer needs a feature it lacks.

    Raised by :func:`gateway.layers.configure_layers` for a bad configuration (the message names
    the alias and the option) and by consumers that use ``groups`` without a layer.
    """


class AcceptConnection(Exception):
    """Raise inside ``connect()`` to accept the connection."""


class DenyConnection(Exception):
    """Raise inside ``connect()`` to reject the connection.

    For a WebSocket the consumer sends ``websocket.close`` before accepting, which the server
    answers with HTTP 403.
    """


class ChannelFull(Exception):
    """``send()`` found the channel at its capacity; the message was not queued."""


class MessageTooLarge(Exception):
    """The message is larger than the channel layer accepts."""


class StopConsumer(Exception):
    """Raise inside a handler to end the consumer instance cleanly."""


class NoRouteFound(ValueError):
    """A router found no application for a scope and the protocol has no "not found" reply.

    HTTP and WebSocket never see this (they get a 404 or a handshake rejection); an ``email`` scope
    gets ``email.reject`` with 550. Listeners of other protocols should ask
    :func:`gateway.routing.matches` first and answer the peer themselves.
    """
