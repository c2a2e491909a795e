"""Configuration of admin listeners (``protocol: admin``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.config.errors import InvalidValue
from gateway.config.schema import positive
from gateway.config.units import Duration
from gateway.protocols.http.config import HttpListenerConfig

__all__ = ["AdminListenerConfig"]

#: The longest history kept (one sample a second, about 700 bytes each: 2.5 MB).
MAX_HISTORY = 3600.0


def check_history(value: float) -> None:
    """Between a second and :data:`MAX_HISTORY`."""
    positive(value)
    if value > MAX_HISTORY:
        raise InvalidValue(f"must be at most 1h (the daemon keeps one sample a second in memory), got {value:g}s")


@dataclass(frozen=True, kw_only=True)
class AdminListenerConfig(HttpListenerConfig):
    """Metrics (/metrics), health checks (/healthz, /readyz) and the live status page (/).

    An HTTP listener (every ``protocol: http`` key applies) serving a built-in application; the
    top-level ``application`` is not used. Bind it to a private address.
    """

    history: Duration = field(
        default=Duration(300.0),
        metadata={"doc": "How much recent history the daemon keeps for the status page's chart: one sample a second from start, whether or not a page is open (at most 1h).", "check": check_history},
    )
    readiness_timeout: Duration = field(
        default=Duration(2.0),
        metadata={"doc": "How long /readyz waits for a channel layer that can be pinged before it counts as unreachable.", "check": positive},
    )

    def check(self) -> Iterable[tuple[str, str]]:
        yield from super().check()
        if self.application is not None:
            yield "application", "an admin listener serves its own application; remove 'application'"
