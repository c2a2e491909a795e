# -*- test-case-name: tests.unit.test_reload_plan -*-
"""Reloading the configuration on SIGHUP (``ExecReload`` in the systemd unit): the plan.

:func:`plan_reload` compares the running configuration with the one just read and says what to
do, without touching anything; :meth:`gateway.service.GatewayService.reload` reads and
validates the file (an invalid one is refused, its problems logged, the running configuration
kept), then applies the plan without dropping a connection:

* added listeners are bound and start accepting;
* removed listeners stop accepting and drain (like a stop, for that listener only);
* changed listeners are updated in place when they serve the same application with the same
  protocol and the listener supports it (limits, timeouts, access log of an HTTP listener: new
  connections get the new settings); otherwise the old one stops listening while its
  connections carry on, and a new one is bound;
* the log level, the rate limit of rejection log lines and the sync thread pool size change at
  once.

Changing the event loop, the channel layers, lifespan or the logging format/output needs a
restart; the plan keeps the running values and lists what it kept.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from gateway.config import GatewayConfig, ListenerConfig
from gateway.config.schema import RejectionsConfig

__all__ = ["RESTART_ONLY", "ListenerStep", "ReloadPlan", "plan_reload"]

#: Settings a reload cannot change (the running value is kept until a restart).
RESTART_ONLY = ("loop", "layers", "lifespan", "workers", "supervisor")


@dataclass(frozen=True)
class ListenerStep:
    """One thing to do to one listener.

    Attributes:
        action: ``add`` (bind a new listener), ``remove`` (drain it), ``update`` (same
            application and protocol: try in place, else replace), ``replace`` (another
            application or protocol: a new listener, the old one's connections carry on).
        name: the listener's name.
        config: its new configuration (``None`` for ``remove``).
        index: its position among the new configuration's listeners (``None`` for ``remove``).
    """

    action: Literal["add", "remove", "update", "replace"]
    name: str
    config: ListenerConfig | None = None
    index: int | None = None


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload does.

    Attributes:
        config: the configuration that runs afterwards: the new one, with the restart-only
            settings (and the logging format and output) of the running one.
        kept: the restart-only settings that changed in the file but keep their running value.
        log_level: the new log level, or ``None`` when it did not change.
        rejections: the new rate limit of rejection log lines, or ``None`` when it did not change.
        threads: the new size of the sync thread pool, or ``None`` when it did not change.
        listeners: the listener steps, removals first, then the new listeners in order.
    """

    config: GatewayConfig
    kept: tuple[str, ...] = ()
    log_level: str | None = None
    rejections: RejectionsConfig | None = None
    threads: int | None = None
    listeners: tuple[ListenerStep, ...] = ()

    def describe(self) -> list[str]:
        """One line per step, for logs and tests (``add web``, ``kept loop``, ...)."""
        lines = [f"kept {key}" for key in self.kept]
        if self.log_level is not None:
            lines.append(f"log level {self.log_level}")
        if self.rejections is not None:
            lines.append(f"rejections {self.rejections.lines} per {float(self.rejections.period):g}s")
        if self.threads is not None:
            lines.append(f"threads {self.threads}")
        lines += [f"{step.action} {step.name}" for step in self.listeners]
        return lines


def plan_reload(old: GatewayConfig, new: GatewayConfig) -> ReloadPlan:
    """The plan that turns the running configuration ``old`` into ``new`` (both validated)."""
    kept = [key for key in RESTART_ONLY if getattr(new, key) != getattr(old, key)]
    if (new.logging.format, new.logging.output) != (old.logging.format, old.logging.output):
        kept.append("logging")
    applied = dataclasses.replace(
        new, loop=old.loop, layers=old.layers, lifespan=old.lifespan, workers=old.workers, supervisor=old.supervisor,
        logging=dataclasses.replace(new.logging, format=old.logging.format, output=old.logging.output),
    )
    running = {listener.name: listener for listener in old.listeners}
    wanted = {listener.name for listener in new.listeners}
    steps = [ListenerStep("remove", name) for name in running if name not in wanted]
    for index, listener in enumerate(new.listeners):
        current = running.get(listener.name)
        if current is None:
            steps.append(ListenerStep("add", listener.name, listener, index))
        elif listener != current or old.application_for(current) != new.application_for(listener):
            same = (old.application_for(current) == new.application_for(listener)
                    and listener.protocol == current.protocol)
            steps.append(ListenerStep("update" if same else "replace", listener.name, listener, index))
    return ReloadPlan(
        config=applied,
        kept=tuple(kept),
        log_level=new.logging.level if new.logging.level != old.logging.level else None,
        rejections=new.logging.rejections if new.logging.rejections != old.logging.rejections else None,
        threads=new.threads if new.threads != old.threads else None,
        listeners=tuple(steps),
    )
