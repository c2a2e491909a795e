"""Sends to a Redis key kept in flight without waiting for each reply (``send_window``).

A ``send()`` is one ``EVALSHA`` of the send script, whose reply says whether the message was
queued and how many messages the key holds now. Waiting for that reply before returning makes a
caller that sends in a loop pay one round trip per message. A :class:`SendWindow` per Redis key
remembers the room the last reply reported (the channel's capacity minus what the key holds,
at most ``send_window``); while fewer sends than that are in flight on the same connection, a
``send()`` returns as soon as its command is queued. Commands queued in one loop pass go out in
one write, in order, so a caller's messages keep their order, and Redis runs them back to back.

Such a send is *unconfirmed* when ``send()`` returns:

* capacity: its script is given ``capacity + send_window``, so a channel that other senders
  filled meanwhile is overshot by at most ``send_window`` messages (channels_redis' own check
  and add are not atomic either) instead of losing the message; beyond that it is dropped and
  counted (``send_unconfirmed_lost``, ``over_capacity``). A ``send()`` made when the window has
  no room waits for its reply, and raises ``ChannelFull`` as before.
* a connection lost before the reply: the unconfirmed sends in flight on it (at most
  ``send_window`` per key) are lost and counted (``send_unconfirmed_lost``); the next ``send()``
  waits for a reply again, so it raises ``RedisLayerUnavailable`` while the server is down.

``send_window: 0`` (the default) makes every ``send()`` wait for its reply, so that a caller's
acknowledgement after ``send()`` means the message is in Redis.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["SendWindow"]

logger = logging.getLogger("gateway.layers.redis")


class SendWindow:
    """The sends in flight to one Redis key and the room its last reply reported.

    Args:
        limit: most unconfirmed sends (``send_window``).
        counters: the layer's counters (``expired``, ``send_unconfirmed_lost``, ``over_capacity``).
    """

    __slots__ = ("limit", "counters", "room", "in_flight", "proto", "capacity")

    def __init__(self, limit: int, counters: dict[str, int]) -> None:
        self.limit = limit
        self.counters = counters
        #: How many sends the last reply left room for (counting those in flight after it).
        self.room = 0
        #: Sends whose reply has not come back (waited for or not).
        self.in_flight = 0
        #: The connection (protocol) the room was measured on: a new connection starts over.
        self.proto: Any = None
        #: The capacity the room was computed with (another channel of the key may differ).
        self.capacity = 0

    def confirmed(self, capacity: int, size: int, proto: Any) -> None:
        """A reply said the key holds ``size`` messages (the channel's capacity is ``capacity``)."""
        room = capacity - size
        self.room = room if room < self.limit else self.limit
        self.capacity = capacity
        self.proto = proto

    def reply(self, value: Any) -> None:
        """The reply to an unconfirmed send (an exception: an error or a lost connection)."""
        self.in_flight -= 1
        counters = self.counters
        if isinstance(value, BaseException):
            self.room = 0
            counters["send_unconfirmed_lost"] += 1
            logger.debug("Redis layer: an unconfirmed send was lost: %s", value)
            return
        queued, expired, size = value
        if expired:
            counters["expired"] += expired
        if queued:
            room = self.capacity - size
            self.room = room if room < self.limit else self.limit
        else:
            self.room = 0
            counters["send_unconfirmed_lost"] += 1
            counters["over_capacity"] += 1
            logger.debug("Redis layer: an unconfirmed send found its channel full (other senders filled it)")
