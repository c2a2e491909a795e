# -*- test-case-name: tests.integration.test_reload -*-
"""Reloading the configuration on SIGHUP (``ExecReload`` in the systemd unit).

The file is read and validated completely first; an invalid file is refused, its problems are
logged, and the running configuration stays. A valid one is applied without dropping a
connection:

* added listeners are bound and start accepting;
* removed listeners stop accepting and drain (like a stop, for that listener only);
* changed listeners are updated in place when the listener supports it (limits, timeouts,
  access log of an HTTP listener: new connections get the new settings); otherwise the old one
  stops listening while its connections carry on, and a new one is bound;
* the log level and the sync thread pool size change at once.

Changing the event loop, the channel layers or the logging format/output needs a restart; a
reload says so in the log and keeps the old values.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.logger import Logger

from gateway import systemd
from gateway.config import ConfigError, GatewayConfig, load_config

if TYPE_CHECKING:
    from gateway.listener import GatewayListener
    from gateway.service import GatewayService

log = Logger(namespace="gateway.reload")

_RESTART_ONLY = ("loop", "layers", "lifespan")


async def reload(service: GatewayService) -> bool:
    """Apply the configuration file again; returns whether it was applied."""
    path = service.config_path
    if path is None:
        return False
    systemd.notify("RELOADING=1")
    try:
        new = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("{problem}", problem=str(problem))
        log.error("Reload refused: {count} problem(s) in {path}; the running configuration is kept",
                  count=len(exc.problems), path=path)
        systemd.notify(f"READY=1\nSTATUS={service.status_line()} (reload refused: {len(exc.problems)} problem(s) in {path})")
        return False
    old = service.config
    try:
        for key in _RESTART_ONLY:
            if getattr(new, key) != getattr(old, key):
                log.warn("Reload: changing '{key}' needs a restart; keeping the running value", key=key)
        if (new.logging.format, new.logging.output) != (old.logging.format, old.logging.output):
            log.warn("Reload: changing the logging format or output needs a restart")
        new = dataclasses.replace(new, loop=old.loop, layers=old.layers, lifespan=old.lifespan)
        _apply_process_settings(old, new)
        try:
            await _apply_listeners(service, old, new)
        except Exception:
            log.failure("Reload failed part way; listeners may be partly updated")
            return False
        service.config = new
        log.info("Reloaded {path}", path=path)
        return True
    finally:
        systemd.notify("READY=1\nSTATUS=" + service.status_line())


def _apply_process_settings(old: GatewayConfig, new: GatewayConfig) -> None:
    from gateway.consumers import configure_sync_threads
    from gateway.logs import configure_rejections, set_level

    if new.logging.level != old.logging.level:
        set_level(new.logging.level)
    configure_rejections(new.logging.rejections.lines, new.logging.rejections.period)
    if new.threads != old.threads:
        configure_sync_threads(new.threads)


async def _apply_listeners(service: GatewayService, old: GatewayConfig, new: GatewayConfig) -> None:
    running = {listener.name: listener for listener in service.listeners}
    wanted = {listener.name: listener for listener in new.listeners}
    for name, listener in running.items():
        if name not in wanted:
            log.info("Reload: removing listener {name}; it drains its connections", name=name)
            service.listeners.remove(listener)
            _retire(service, listener, drain=True)
    for name, listener_config in wanted.items():
        current = running.get(name)
        if current is None:
            await _start_new(service, new, listener_config)
        elif listener_config != current.config:
            await _change(service, new, current, listener_config)


async def _change(service: GatewayService, config: GatewayConfig, current: GatewayListener, listener_config: Any) -> None:
    same_app = config.application_for(listener_config) == service.config.application_for(current.config)
    if same_app and listener_config.protocol == current.config.protocol:
        context = service.listener_context(listener_config, config)
        if current.reconfigure(listener_config, context):
            current.config = listener_config
            log.info("Reload: listener {name} updated in place", name=current.name)
            return
    log.info("Reload: replacing listener {name}; its open connections carry on", name=current.name)
    await defer.maybeDeferred(current.stop_listening).asFuture(service.loop)
    index = service.listeners.index(current)
    service.listeners.remove(current)
    _retire(service, current, drain=False)
    replacement = await _start_new(service, config, listener_config, index)
    if replacement is None:
        log.error("Reload: listener {name} could not be replaced; restoring the old one", name=current.name)
        restored = await _start_new(service, service.config, current.config, index)
        if restored is None:
            log.critical("Reload: listener {name} is not listening any more", name=current.name)


async def _start_new(service: GatewayService, config: GatewayConfig, listener_config: Any, index: int | None = None) -> GatewayListener | None:
    reference = config.application_for(listener_config)
    try:
        is_new_app = reference is not None and reference not in service.apps
        listener = service.build_listener(listener_config, config)
        if is_new_app:
            await service.lifespans[reference].startup()  # type: ignore[index]
        await listener.bind().asFuture(service.loop)
    except Exception as exc:
        log.error("Reload: cannot start listener {name}: {error}", name=listener_config.name, error=f"{type(exc).__name__}: {exc}")
        return None
    listener.setServiceParent(service)
    service.listeners.insert(len(service.listeners) if index is None else index, listener)
    listener.start_accepting()
    for address in listener.addresses():
        log.info("Listening: {name} ({protocol}) on {address}", name=listener.name,
                 protocol=listener_config.protocol, address=address)
    return listener


def _retire(service: GatewayService, listener: GatewayListener, *, drain: bool) -> None:
    """Stop a listener that is no longer configured: drain it, or let its connections end.

    It leaves the service tree at once (so a replacement can take its name) and stays in
    ``service.retiring`` until its connections are gone, so the daemon's own stop drains it too.
    """
    service.retiring.add(listener)
    if listener.parent is not None:
        listener.disownServiceParent()

    def finished(_: Any) -> None:
        service.retiring.discard(listener)

    if drain:
        listener.drain(service.config.timeouts.drain, service.reactor).addBoth(finished)
    else:
        factory = getattr(listener, "factory", None)
        waiter = factory.when_empty() if factory is not None else defer.succeed(None)
        waiter.addBoth(finished)
