"""Password hashes and the authenticator."""

from __future__ import annotations

import asyncio

import itertools

import pytest
from hypothesis import given, settings, strategies as st

from gateway.protocols.mqtt.broker.auth import (
    AccessRule, Authenticator, check_password_hash, denied_topic, filters_overlap, hash_password, verify_password,
)
from gateway.protocols.mqtt.broker.index import filter_covers
from gateway.protocols.mqtt.topics import topic_matches


@pytest.mark.parametrize("method", ["pbkdf2_sha256", "scrypt"])
def test_hash_and_verify(method: str) -> None:
    encoded = hash_password("s3cret", method, iterations=1000)
    check_password_hash(encoded)
    assert encoded.startswith(method + "$")
    assert verify_password(b"s3cret", encoded)
    assert not verify_password(b"s3cret!", encoded)
    assert hash_password("s3cret", method, iterations=1000) != encoded  # salted


@pytest.mark.parametrize("bad", ["plain", "pbkdf2_sha256$x$y$z", "scrypt$1$2$3", "md5$a$b$c"])
def test_malformed_hashes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        check_password_hash(bad)
    with pytest.raises(ValueError):
        Authenticator({"u": bad})


def test_authenticate() -> None:
    auth = Authenticator({"alice": hash_password("pw", "pbkdf2_sha256", iterations=1000)}, allow_anonymous=False)

    async def scenario() -> list[bool]:
        return [
            await auth.authenticate("alice", b"pw"),
            await auth.authenticate("alice", b"pw"),  # the cache
            await auth.authenticate("alice", b"nope"),
            await auth.authenticate("bob", b"pw"),
            await auth.authenticate("alice", None),
            await auth.authenticate(None, None),
        ]

    assert asyncio.run(scenario()) == [True, True, False, False, False, False]
    assert not auth.open
    assert Authenticator().open


def test_anonymous_allowed_with_users_but_wrong_password_refused() -> None:
    auth = Authenticator({"alice": hash_password("pw", "pbkdf2_sha256", iterations=1000)}, allow_anonymous=True)

    async def scenario() -> list[bool]:
        return [await auth.authenticate(None, None), await auth.authenticate("alice", b"bad")]

    assert asyncio.run(scenario()) == [True, False]


def test_rules_users_and_substitutions() -> None:
    auth = Authenticator(rules=[
        AccessRule(("$anonymous",), subscribe=("public/#",)),
        AccessRule(("*",), publish=("clients/%c/#",)),
        AccessRule(("bob",), publish=("users/%u",), subscribe=("jobs/#", "users/%u/#")),
    ])
    assert auth.may_subscribe(None, "c1", "public/x")
    assert not auth.may_subscribe("bob", "c1", "public/x")
    assert auth.may_publish("bob", "dev-1", "clients/dev-1/state")
    assert not auth.may_publish("bob", "dev-1", "clients/dev-2/state")
    assert auth.may_publish("bob", "c", "users/bob")
    assert not auth.may_publish(None, "c", "users/None")
    assert auth.may_subscribe("bob", "c", "$share/workers/jobs/a")  # the inner filter is checked
    assert not auth.may_subscribe("bob", "c", "users/#")
    assert not auth.may_publish("bob", "a/b", "clients/a/b/x")  # "/" in a client id never matches


# -- deny rules --------------------------------------------------------------------------------

ALLOW_ALL = AccessRule(("*",), publish=("#",), subscribe=("#",))


def test_deny_wins_over_allow() -> None:
    auth = Authenticator(rules=[
        ALLOW_ALL,
        AccessRule(("*",), subscribe=("secret/#",), effect="deny"),
        AccessRule(("bob",), publish=("alarms/+",), effect="deny"),
    ])
    assert auth.may_subscribe("bob", "c", "public/x")
    assert not auth.may_subscribe("bob", "c", "secret/#")
    assert not auth.may_subscribe("bob", "c", "secret/+/x")  # covered by the denied filter
    assert not auth.may_subscribe(None, "c", "secret")  # "#" matches the parent level too
    assert not auth.may_subscribe("bob", "c", "$share/g/secret/a")  # the inner filter counts
    assert auth.may_subscribe("bob", "c", "#")  # wider: granted, deliveries are checked
    assert auth.may_subscribe("bob", "c", "+/x")
    assert auth.may_subscribe("bob", "c", "secrets/x")
    assert not auth.may_publish("bob", "c", "alarms/fire")
    assert auth.may_publish("alice", "c", "alarms/fire")  # the deny is about bob only
    assert auth.may_publish("bob", "c", "alarms/fire/x")
    assert auth.may_publish("bob", "c", "secret/x")  # denied for subscribing, not publishing


def test_read_denials_of_wider_subscriptions() -> None:
    auth = Authenticator(rules=[ALLOW_ALL, AccessRule(("*",), subscribe=("secret/#", "a/+/private"), effect="deny")])
    assert auth.read_denials("u", "c", "#") == ("secret/#", "a/+/private")
    assert auth.read_denials("u", "c", "+/b/+") == ("secret/#", "a/+/private")
    assert auth.read_denials("u", "c", "a/b/public") is None
    assert auth.read_denials("u", "c", "public/#") is None
    assert not auth.may_read("u", "c", "secret/x")
    assert not auth.may_read("u", "c", "a/b/private")
    assert auth.may_read("u", "c", "a/b/public")
    assert Authenticator(rules=[ALLOW_ALL]).read_denials("u", "c", "#") is None


def test_deny_with_substitutions() -> None:
    auth = Authenticator(rules=[
        ALLOW_ALL,
        AccessRule(("*",), publish=("users/%u/readonly",), subscribe=("private/%c/#",), effect="deny"),
    ])
    assert not auth.may_publish("bob", "c", "users/bob/readonly")
    assert auth.may_publish("bob", "c", "users/alice/readonly")
    assert auth.may_publish(None, "c", "users/bob/readonly")  # %u: not about anonymous clients
    assert not auth.may_subscribe("bob", "c1", "private/c1/x")
    assert auth.may_subscribe("bob", "c1", "private/c2/x")
    # An identity that cannot be filled in: the deny rule denies everything it is about.
    assert not auth.may_publish("a/b", "c", "anything")
    assert not auth.may_subscribe("bob", "a+b", "public/x")
    assert not auth.may_read("bob", "a#", "public/x")


def test_effect_is_checked() -> None:
    with pytest.raises(ValueError):
        AccessRule(("*",), publish=("#",), effect="maybe")


_LEVELS = st.sampled_from(["a", "b", "$s"])
_topics = st.lists(_LEVELS, min_size=1, max_size=4).map("/".join)


@st.composite
def _filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.sampled_from(["a", "b", "+", "$s"]), min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


_ALL_TOPICS = ["/".join(p) for n in range(1, 6) for p in itertools.product(["a", "b", "$s", "c"], repeat=n)]


@settings(max_examples=300, deadline=None)
@given(_filters(), _filters())
def test_filters_overlap_is_never_wrong_about_a_shared_topic(first: str, second: str) -> None:
    # Sound: two filters that share a topic always overlap (so no denied message slips through).
    shared = any(topic_matches(first, t) and topic_matches(second, t) for t in _ALL_TOPICS)
    if shared:
        assert filters_overlap(first, second)
    assert filters_overlap(first, second) == filters_overlap(second, first)


@settings(max_examples=300, deadline=None)
@given(_filters(), _filters(), _topics)
def test_deny_wins_for_every_topic_and_filter(denied: str, requested: str, topic: str) -> None:
    auth = Authenticator(rules=[ALLOW_ALL, AccessRule(("*",), publish=(denied,), subscribe=(denied,), effect="deny")])
    assert auth.may_publish("u", "c", topic) == (topic_matches("#", topic) and not topic_matches(denied, topic))
    granted = auth.may_subscribe("u", "c", requested)
    assert granted == (filter_covers("#", requested) and not filter_covers(denied, requested))
    if granted:
        # Granted: whatever it matches that the deny matches is stopped at delivery.
        if topic_matches(requested, topic) and topic_matches(denied, topic):
            denials = auth.read_denials("u", "c", requested)
            assert denials is not None and denied_topic(denials, topic)
