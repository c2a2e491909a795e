"""Routers: ASGI applications that pick another application for each scope (or event).

``ProtocolTypeRouter`` (scope type), ``URLRouter`` with ``path``/``re_path`` (HTTP and WebSocket
paths), ``ChannelNameRouter`` (worker channels), ``EmailToRouter`` with ``regex`` (recipients),
``SMSFromRouter`` / ``SMSToRouter`` with ``phone`` and ``default`` (phone numbers) and
``TopicRouter`` with ``topic`` (MQTT publishes). Every router answers
``await matches(app, scope)`` ("would anything handle this?"). See ``docs/routing.md``.
"""

from __future__ import annotations

from gateway.routing.base import ChannelNameRouter, ProtocolTypeRouter, matches, not_found
from gateway.routing.messaging import (
    EmailToRouter,
    SMSFromRouter,
    SMSToRouter,
    default,
    phone,
    regex,
)
from gateway.routing.topic import TopicRouter, topic, topic_matches
from gateway.routing.url import URLRouter, path, re_path, register_converter

__all__ = [
    "ChannelNameRouter",
    "EmailToRouter",
    "ProtocolTypeRouter",
    "SMSFromRouter",
    "SMSToRouter",
    "TopicRouter",
    "URLRouter",
    "default",
    "matches",
    "not_found",
    "path",
    "phone",
    "re_path",
    "regex",
    "register_converter",
    "topic",
    "topic_matches",
]
