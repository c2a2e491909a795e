"""The ``gateway`` command: ``run``, ``check-config``, ``version``.

Exit statuses: 0 success; 1 the daemon could not start (a port in use, lifespan startup
failed); 2 the command line or the configuration is invalid.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gateway import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Multi-protocol ASGI gateway daemon.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", required=True, metavar="FILE", help="configuration file (YAML)")
    check = commands.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("config", metavar="FILE")
    check.add_argument("--no-import", action="store_true", help="do not import the applications")
    commands.add_parser("version", help="print the version")
    return parser


def _load(path: str, import_applications: bool = True):  # type: ignore[no-untyped-def]
    from gateway.config import ConfigError, load_config

    if os.getcwd() not in sys.path:
        # Applications usually live in the project directory, as with Daphne and Uvicorn.
        sys.path.insert(0, os.getcwd())
    try:
        return load_config(path, import_applications=import_applications)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = len(exc.problems)
        print(f"{path}: {count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
        return None


def check_config(path: str, import_applications: bool = True) -> int:
    """``gateway check-config FILE``."""
    config = _load(path, import_applications)
    if config is None:
        return 2
    names = ", ".join(f"{listener.name} ({listener.protocol})" for listener in config.listeners)
    print(f"{path}: OK; listeners: {names}")
    return 0


def run(path: str) -> int:
    """``gateway run -c FILE``: run the daemon in the foreground until SIGTERM/SIGINT."""
    config = _load(path)
    if config is None:
        return 2
    from gateway.reactor import ReactorError, install_reactor

    try:
        reactor = install_reactor(config.loop)
    except ReactorError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    from gateway.logs import start_logging

    start_logging(config.logging.level, config.logging.format, config.logging.output)
    from gateway.service import GatewayService

    try:
        service = GatewayService(config, reactor=reactor)
    except Exception as exc:
        print(f"gateway: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    service.privilegedStartService()
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    # Our own SIGTERM/SIGINT handlers replace Twisted's once running (graceful, then forced).
    reactor.run()
    return service.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gateway`` console script and ``python -m gateway``."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.config)
    if args.command == "check-config":
        return check_config(args.config, not args.no_import)
    if args.command == "version":
        print(f"gateway {__version__}")
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
