"""Shared helpers for the SMS provider tests (imported by the test modules)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import urlencode

import pytest

from gateway.protocols.errors import RemoteProtocolError

NOW = 1_700_000_000.0

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def form(pairs: Sequence[tuple[str, str]] | dict[str, str]) -> bytes:
    """URL-encode form fields as providers do (UTF-8, '+' for spaces)."""
    return urlencode(list(pairs.items()) if isinstance(pairs, dict) else list(pairs)).encode("ascii")


def expect_rejection(call: Callable[[], object], status: int, match: str | None = None) -> RemoteProtocolError:
    """Run ``call`` and check it raises RemoteProtocolError with ``hint == status``."""
    with pytest.raises(RemoteProtocolError, match=match) as info:
        call()
    assert info.value.hint == status, info.value
    return info.value
