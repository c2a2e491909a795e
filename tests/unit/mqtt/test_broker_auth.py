"""Password hashes and the authenticator."""

from __future__ import annotations

import asyncio

import pytest

from gateway.protocols.mqtt.broker.auth import (
    AccessRule, Authenticator, check_password_hash, hash_password, verify_password,
)


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
