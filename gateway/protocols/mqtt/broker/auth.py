# -*- test-case-name: tests.unit.mqtt.test_broker_auth -*-
"""Broker access control: hashed passwords from the configuration and per-topic rules.

**Passwords** are stored hashed (:mod:`gateway.passwords`: Django's ``scrypt$...`` and
``pbkdf2_sha256$...`` formats); make one with ``gateway hash-password``.
Checking is deliberately slow (that is the point of a password hash), so it runs on a thread,
and a successful check is remembered (keyed by an HMAC of the password under a per-process
random key, never the password itself) so that a fleet reconnecting at once does not queue on
the thread pool.

**Access rules** (:class:`AccessRule`): a rule names users (``"*"`` anyone, ``"$anonymous"``
clients without a username) and the topic filters they may publish to and subscribe to.
``%u`` and ``%c`` in a filter stand for the client's username and client id. With no rules,
everything is allowed; with rules, what no rule allows is denied. Subscribing needs an allowed
filter that covers the requested one (``sensors/#`` covers ``sensors/+/temperature``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.passwords import check_password_hash, hash_password, verify_password
from gateway.protocols.mqtt.broker.index import filter_covers
from gateway.protocols.mqtt.topics import parse_shared_subscription, topic_matches

__all__ = ["AccessRule", "Authenticator", "check_password_hash", "hash_password", "verify_password"]

_CACHE_SIZE = 4096


@dataclass(frozen=True)
class AccessRule:
    """Who may publish and subscribe where (see the module documentation)."""

    users: tuple[str, ...] = ("*",)
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()

    def applies(self, username: str | None) -> bool:
        """Whether this rule is about the client with ``username``."""
        for user in self.users:
            if user == "*" or (user == "$anonymous" and username is None) or user == username:
                return True
        return False


def _expand(topic_filter: str, username: str | None, client_id: str) -> str | None:
    if "%u" in topic_filter:
        if username is None or "/" in username or "+" in username or "#" in username:
            return None  # a rule about "the user's own topics" never matches anonymous clients
        topic_filter = topic_filter.replace("%u", username)
    if "%c" in topic_filter:
        if "/" in client_id or "+" in client_id or "#" in client_id:
            return None
        topic_filter = topic_filter.replace("%c", client_id)
    return topic_filter


class Authenticator:
    """Checks credentials and access rules for one listener.

    Args:
        users: username -> password hash.
        allow_anonymous: whether a client without a username may connect.
        rules: access rules; none = everything allowed.
    """

    def __init__(
        self, users: Mapping[str, str] | None = None, allow_anonymous: bool = True,
        rules: Iterable[AccessRule] = (),
    ) -> None:
        self.users = dict(users or {})
        for encoded in self.users.values():
            check_password_hash(encoded)
        self.allow_anonymous = allow_anonymous
        self.rules = tuple(rules)
        self._key = os.urandom(32)
        self._verified: OrderedDict[tuple[str, bytes], None] = OrderedDict()

    @property
    def open(self) -> bool:
        """True when anyone may connect and do anything (nothing to check)."""
        return self.allow_anonymous and not self.users and not self.rules

    def _cached(self, username: str, password: bytes) -> tuple[tuple[str, bytes], bool]:
        key = (username, hmac.new(self._key, password, hashlib.sha256).digest())
        found = key in self._verified
        if found:
            self._verified.move_to_end(key)
        return key, found

    async def authenticate(
        self, username: str | None, password: bytes | None, loop: asyncio.AbstractEventLoop | None = None
    ) -> bool:
        """Whether a client presenting these credentials may connect.

        A username unknown to ``users`` is refused unless ``users`` is empty and anonymous
        access is allowed (then credentials are not checked at all).
        """
        if username is None:
            return self.allow_anonymous
        if not self.users:
            return self.allow_anonymous
        encoded = self.users.get(username)
        if encoded is None or password is None:
            return False
        key, found = self._cached(username, password)
        if found:
            return True
        loop = loop or asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, verify_password, password, encoded)
        if ok:
            self._verified[key] = None
            if len(self._verified) > _CACHE_SIZE:
                self._verified.popitem(last=False)
        return ok

    def may_publish(self, username: str | None, client_id: str, topic: str) -> bool:
        """Whether the client may publish to the topic name ``topic``."""
        if not self.rules:
            return True
        for rule in self.rules:
            if rule.applies(username):
                for allowed in rule.publish:
                    expanded = _expand(allowed, username, client_id)
                    if expanded is not None and topic_matches(expanded, topic):
                        return True
        return False

    def may_subscribe(self, username: str | None, client_id: str, topic_filter: str) -> bool:
        """Whether the client may subscribe to ``topic_filter`` (a ``$share/`` one included)."""
        if not self.rules:
            return True
        _, inner = parse_shared_subscription(topic_filter)
        for rule in self.rules:
            if rule.applies(username):
                for allowed in rule.subscribe:
                    expanded = _expand(allowed, username, client_id)
                    if expanded is not None and filter_covers(expanded, inner):
                        return True
        return False
