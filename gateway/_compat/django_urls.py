"""Django's URL pattern internals ``URLRouter`` relies on (tested in ``tests/unit/compat/test_django_urls.py``).

A Django ``RoutePattern``/``RegexPattern`` keeps the route it was made from in ``_route`` or
``_regex``; a pattern used inside a router is rebuilt with ``is_endpoint`` set as the router needs
(Channels' URLRouter does the same).
"""

from __future__ import annotations

from typing import Any

__all__ = ["pattern_source"]


def pattern_source(pattern: Any) -> str:
    """The route or regular expression a Django pattern was made from."""
    return pattern._route if hasattr(pattern, "_route") else pattern._regex
