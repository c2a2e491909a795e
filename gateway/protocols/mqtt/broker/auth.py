# -*- test-case-name: tests.unit.mqtt.test_broker_auth -*-
"""Broker access control: hashed passwords from the configuration and per-topic rules.

**Passwords** are stored hashed (:mod:`gateway.passwords`: Django's ``scrypt$...`` and
``pbkdf2_sha256$...`` formats); make one with ``gateway hash-password``.
Checking is deliberately slow (that is the point of a password hash), so it runs on a thread,
and a successful check is remembered (keyed by an HMAC of the password under a per-process
random key, never the password itself) so that a fleet reconnecting at once does not queue on
the thread pool.

**Access rules** (:class:`AccessRule`): a rule names users (``"*"`` anyone, ``"$anonymous"``
clients without a username), an effect (``allow`` or ``deny``) and the topic filters it is about
for publishing and for subscribing. ``%u`` and ``%c`` in a filter stand for the client's username
and client id. With no rules, everything is allowed; with rules, what no allow rule allows is
denied, and an explicit deny wins over any allow (as in Mosquitto's ACL files and EMQX):

* publishing to a topic is refused when a deny rule's publish filter matches it;
* subscribing needs an allowed filter that covers the requested one (``sensors/#`` covers
  ``sensors/+/temperature``) and is refused when a deny rule's subscribe filter covers it
  (``secret/#`` denied: ``secret/+/x`` is refused);
* a subscription that only overlaps a denied filter (``#`` with ``secret/#`` denied) is
  granted, and messages on the denied topics are not delivered to it
  (:meth:`Authenticator.read_denials`, checked by the broker at delivery).

A deny rule with ``%u`` does not apply to clients without a username (they have no topics of
their own); one whose ``%u``/``%c`` cannot be filled in (a username or client id containing
``/``, ``+`` or ``#``) denies everything it is about, whatever the topic.
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

__all__ = [
    "AccessRule", "Authenticator", "check_password_hash", "denied_topic", "filters_overlap", "hash_password", "verify_password",
]

_CACHE_SIZE = 4096

#: A deny filter whose ``%u``/``%c`` could not be filled in: it denies everything.
_EVERYTHING = "\x00everything"  # not a valid filter (U+0000 is refused in topics)


@dataclass(frozen=True)
class AccessRule:
    """Who may publish and subscribe where (see the module documentation)."""

    users: tuple[str, ...] = ("*",)
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    #: ``"allow"`` or ``"deny"`` (a deny wins over any allow).
    effect: str = "allow"

    def __post_init__(self) -> None:
        if self.effect not in ("allow", "deny"):
            raise ValueError(f"effect must be allow or deny, not {self.effect!r}")

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


def _expand_denied(topic_filter: str, username: str | None, client_id: str) -> str | None:
    """A deny rule's filter for this client: None when it is not about this client (``%u``
    for a client without a username), everything when ``%u``/``%c`` cannot be filled in."""
    if "%u" in topic_filter and username is None:
        return None
    expanded = _expand(topic_filter, username, client_id)
    return _EVERYTHING if expanded is None else expanded


def filters_overlap(first: str, second: str) -> bool:
    """True if some topic name could match both (valid, non-shared) filters.

    Conservative around ``$`` topics: it may answer True for filters that only seem to share
    ``$`` topics; used to decide which subscriptions need a check at delivery.
    """
    if first == second:
        return True
    a = first.split("/")
    b = second.split("/")
    for index in range(min(len(a), len(b))):
        x, y = a[index], b[index]
        if x == "#" or y == "#":
            return True
        if x != y and x != "+" and y != "+":
            return False
    if len(a) == len(b):
        return True
    longer = a if len(a) > len(b) else b
    return longer[min(len(a), len(b))] == "#" and len(longer) == min(len(a), len(b)) + 1


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
        self._allow = tuple(rule for rule in self.rules if rule.effect == "allow")
        self._deny = tuple(rule for rule in self.rules if rule.effect == "deny")
        #: True when some deny rule is about subscribing: deliveries may need a check.
        self.read_denials_possible = any(rule.subscribe for rule in self._deny)
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
        for rule in self._deny:
            if rule.publish and rule.applies(username):
                for denied in rule.publish:
                    expanded = _expand_denied(denied, username, client_id)
                    if expanded is not None and (expanded == _EVERYTHING or topic_matches(expanded, topic)):
                        return False
        for rule in self._allow:
            if rule.applies(username):
                for allowed in rule.publish:
                    expanded = _expand(allowed, username, client_id)
                    if expanded is not None and topic_matches(expanded, topic):
                        return True
        return False

    def may_subscribe(self, username: str | None, client_id: str, topic_filter: str) -> bool:
        """Whether the client may subscribe to ``topic_filter`` (a ``$share/`` one included):
        an allow rule covers it and no deny rule does."""
        if not self.rules:
            return True
        _, inner = parse_shared_subscription(topic_filter)
        for denied in self._denied_filters(username, client_id):
            if denied == _EVERYTHING or filter_covers(denied, inner):
                return False
        for rule in self._allow:
            if rule.applies(username):
                for allowed in rule.subscribe:
                    expanded = _expand(allowed, username, client_id)
                    if expanded is not None and filter_covers(expanded, inner):
                        return True
        return False

    def read_denials(self, username: str | None, client_id: str, topic_filter: str) -> tuple[str, ...] | None:
        """The denied subscribe filters that overlap ``topic_filter`` (a granted subscription):
        messages on topics they match must not be delivered to it. None when there are none,
        the common case (then nothing is checked at delivery)."""
        if not self.read_denials_possible:
            return None
        _, inner = parse_shared_subscription(topic_filter)
        found = tuple(
            denied for denied in self._denied_filters(username, client_id)
            if denied == _EVERYTHING or filters_overlap(denied, inner)
        )
        return found or None

    def may_read(self, username: str | None, client_id: str, topic: str) -> bool:
        """Whether a message on ``topic`` may be delivered to the client (no deny rule's
        subscribe filter matches it)."""
        if not self.read_denials_possible:
            return True
        return not denied_topic(self._denied_filters(username, client_id), topic)

    def _denied_filters(self, username: str | None, client_id: str) -> list[str]:
        found = []
        for rule in self._deny:
            if rule.subscribe and rule.applies(username):
                for denied in rule.subscribe:
                    expanded = _expand_denied(denied, username, client_id)
                    if expanded is not None:
                        found.append(expanded)
        return found


def denied_topic(denials: Iterable[str], topic: str) -> bool:
    """True when one of the denied filters (from :meth:`Authenticator.read_denials`) matches
    ``topic``."""
    for denied in denials:
        if denied == _EVERYTHING or topic_matches(denied, topic):
            return True
    return False
