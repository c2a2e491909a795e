"""The twistd plugin's tap: ``twistd -n gateway -c conf/gateway.yaml``.

With no ``--reactor`` flag the tap installs the asyncio reactor itself (on uvloop when the
configuration asks for it), before it imports any application. ``--reactor=asyncio`` is
accepted; any other reactor is refused with a one-line error naming the fix. A bad command line
or configuration exits 2, as ``gateway run`` does.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.python import usage


class Options(usage.Options):
    """Command-line options of ``twistd gateway``."""

    synopsis = "-c FILE"
    longdesc = "Run the gateway daemon described by a YAML configuration file."
    optParameters = [["config", "c", None, "Configuration file (YAML)."]]

    def postOptions(self) -> None:
        # twistd exits 1 on a UsageError; the README promises 2 for a bad command line.
        if not self["config"]:
            print("twistd gateway: the configuration file is required: twistd -n gateway -c conf/gateway.yaml",
                  file=sys.stderr)
            raise SystemExit(2)
        from gateway.reactor import installed_reactor, is_asyncio_reactor

        current = installed_reactor()
        if current is not None and not is_asyncio_reactor(current):
            name = type(current).__module__
            print(f"twistd gateway: the {name} reactor is installed, but gateway needs the asyncio reactor; {_FIX}",
                  file=sys.stderr)
            raise SystemExit(2)


#: What to do when twistd installed another reactor (``--reactor`` is twistd's option).
_FIX = "drop --reactor (gateway installs it) or use --reactor=asyncio"


def makeService(options: Options) -> Any:
    """Build the daemon's service from the configuration file (exits 2 if it is invalid).

    The reactor is installed first, then the configuration is loaded and its applications
    imported: an application may import ``twisted.internet.reactor`` at module level.
    """
    from gateway.config import read_loop_kind
    from gateway.reactor import ReactorError, install_reactor, installed_reactor

    path = options["config"]
    preinstalled = installed_reactor() is not None
    try:
        reactor = install_reactor(read_loop_kind(path), fix=_FIX)
    except ReactorError as exc:
        print(f"twistd gateway: {path}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    from gateway.cli import _load

    config = _load(path)
    if config is None:
        raise SystemExit(2)
    if config.worker_count() > 1:
        print(f"twistd gateway: {path}: workers: {config.workers} needs gateway run -c {path} (its supervisor runs "
              "the worker processes); twistd runs one process: set workers: 1", file=sys.stderr)
        raise SystemExit(2)
    if preinstalled and config.loop == "uvloop":
        print("twistd gateway: --reactor=asyncio chose the standard loop; drop --reactor to run on uvloop",
              file=sys.stderr)
    from gateway.logs import make_observer, route_stdlib_logging

    service = _twistd_service_class()(config, reactor=reactor, config_path=options["config"])
    service.observer = make_observer(config.logging.level, config.logging.format, config.logging.output)
    route_stdlib_logging(config.logging.level)
    # twistd exits 0 once the reactor stops; carry a failed start-up's status out ourselves.
    reactor.addSystemEventTrigger("after", "shutdown", _exit_with_status, service)
    return service


def _exit_with_status(service: Any) -> None:
    if service.exit_code:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(service.exit_code)


def _twistd_service_class() -> Any:
    from twisted.logger import ILogObserver

    from gateway.service import GatewayService

    class TwistdGatewayService(GatewayService):
        """Under twistd, the configuration's ``logging`` section chooses the log observer."""

        observer: Any = None

        def setServiceParent(self, parent: Any) -> None:
            super().setServiceParent(parent)
            set_component = getattr(parent, "setComponent", None)
            if set_component is not None and self.observer is not None:
                set_component(ILogObserver, self.observer)

    return TwistdGatewayService

