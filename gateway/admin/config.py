"""Configuration of admin listeners (``protocol: admin``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.config.schema import positive
from gateway.config.units import Duration
from gateway.protocols.http.config import HttpListenerConfig

__all__ = ["AdminListenerConfig"]


@dataclass(frozen=True, kw_only=True)
class AdminListenerConfig(HttpListenerConfig):
    """Metrics (/metrics), health checks (/healthz, /readyz) and the live status page (/).

    An HTTP listener (every ``protocol: http`` key applies) serving a built-in application; the
    top-level ``application`` is not used. Bind it to a private address.
    """

    history: Duration = field(
        default=Duration(300.0),
        metadata={"doc": "How much the status page's chart shows (samples are taken once a second, only while a page is open).", "check": positive},
    )
    readiness_timeout: Duration = field(
        default=Duration(2.0),
        metadata={"doc": "How long /readyz waits for a channel layer that can be pinged before it counts as unreachable.", "check": positive},
    )

    def check(self) -> Iterable[tuple[str, str]]:
        yield from super().check()
        if self.application is not None:
            yield "application", "an admin listener serves its own application; remove 'application'"
