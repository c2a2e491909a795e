"""The Django URL pattern internal gateway._compat.django_urls reads is still there."""

from __future__ import annotations

import pytest

pytest.importorskip("django")

from django.urls.resolvers import RegexPattern, RoutePattern  # noqa: E402

from gateway._compat.django_urls import pattern_source  # noqa: E402


def test_route_and_regex_patterns_give_their_source() -> None:
    assert pattern_source(RoutePattern("rooms/<str:room>/")) == "rooms/<str:room>/"
    assert pattern_source(RegexPattern(r"^rooms/(?P<room>\w+)/$")) == r"^rooms/(?P<room>\w+)/$"
