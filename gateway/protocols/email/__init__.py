"""What the SMTP listener and the IMAP reader share: the ``email`` scope and its ASGI cycle
(:mod:`gateway.email.cycle`), replies through a smarthost (:mod:`gateway.email.sender`, built from
:class:`gateway.email.settings.SmarthostConfig`) and message composition
(:mod:`gateway.email.compose`).

The ASGI mapping is documented in ``docs/asgi-email.md``.
"""

from __future__ import annotations

from gateway.email.cycle import ACCEPTED, FAILED, REJECTED, EmailCycle, Outcome

__all__ = ["ACCEPTED", "FAILED", "REJECTED", "EmailCycle", "Outcome"]
