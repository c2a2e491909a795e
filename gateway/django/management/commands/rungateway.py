"""``manage.py rungateway [addrport]``: the project on the gateway, for development.

Like ``runserver``: HTTP and WebSocket (``ASGI_APPLICATION``) on ``127.0.0.1:8000`` by default,
the system checks first, a restart when a Python file changes (``--noreload`` to turn that off),
and static files served while ``DEBUG`` is on (``--nostatic`` to turn that off). For production
run ``gateway run -c gateway.yaml`` with ``django: {settings: ...}`` (docs/django.md).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.core.management.commands.runserver import Command as RunserverCommand
from django.utils import autoreload

__all__ = ["Command"]


class Command(RunserverCommand):
    help = "Starts the gateway (HTTP and WebSocket) for development, with autoreload like runserver."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--nostatic", action="store_false", dest="use_static_handler",
                            help="Do not serve static files while DEBUG is on.")
        parser.add_argument("--access-log", action="store_true", dest="access_log",
                            help="Log every request (as runserver does by default).")

    def inner_run(self, *args: Any, **options: Any) -> None:
        autoreload.raise_last_exception()
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            check_kwargs = super().get_check_kwargs(options)
            check_kwargs["display_num_errors"] = True
            self.check(**check_kwargs)
        self.check_migrations()
        from django.db import connections

        for connection in connections.all(initialized_only=True):
            connection.close()
        reference = ("gateway.django.asgi:debug_application" if options.get("use_static_handler", True)
                     else "gateway.django.asgi:application")
        host = f"[{self.addr}]" if self._raw_ipv6 else self.addr
        self.stdout.write(
            f"Starting the gateway at http://{host}:{self.port}/ (HTTP and WebSocket)\n"
            f"Quit the server with {'CTRL-BREAK' if sys.platform == 'win32' else 'CONTROL-C'}.\n"
        )
        self.stdout.flush()
        try:
            serve(self.addr, int(self.port), reference, ipv6=self.use_ipv6,
                  in_main_thread=not options["use_reloader"], access_log=options.get("access_log", False))
        except KeyboardInterrupt:
            sys.exit(0)


def config_text(addr: str, port: int, reference: str, ipv6: bool, access_log: bool) -> str:
    """The daemon configuration ``rungateway`` runs: one HTTP listener serving ``reference``."""
    interface = addr.replace(":", "\\:") if ipv6 else addr
    endpoint = f"tcp6:{port}:interface={interface}" if ipv6 else f"tcp:{port}:interface={interface}"
    return (
        f"application: {reference}\n"
        "lifespan: auto\n"
        "timeouts: {drain: 1s}\n"
        "listeners:\n"
        "  - name: web\n"
        "    protocol: http\n"
        f"    endpoint: '{endpoint}'\n"
        + ("    access_log: stdout\n" if access_log else "")
    )


def serve(addr: str, port: int, reference: str, *, ipv6: bool = False, in_main_thread: bool = True,
          access_log: bool = False) -> None:
    """Run the daemon until it stops. Under the autoreloader this runs in a thread (Django's
    reloader owns the main one), so the daemon installs no signal handlers there."""
    from gateway.config import ConfigError, load_config_text
    from gateway.reactor import ReactorError, install_reactor

    try:
        config = load_config_text(config_text(addr, port, reference, ipv6, access_log), "rungateway",
                                  import_applications=False)
        reactor = install_reactor(config.loop)
    except (ConfigError, ReactorError) as exc:
        raise CommandError(str(exc)) from exc
    from gateway.logs import start_logging
    from gateway.service import GatewayService

    start_logging("info", "text", "stderr")
    service = GatewayService(config, reactor=reactor, install_signal_handlers=in_main_thread)
    service.privilegedStartService()
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run(installSignalHandlers=in_main_thread)
    if service.exit_code:
        # sys.exit does not end the process from the reloader's thread.
        os._exit(service.exit_code)
