"""The ``gateway`` command: ``run``, ``check-config``, ``worker``, ``send``, ``hash-password``, ``sms-test``, ``version``.

Exit statuses: 0 success; 1 the work failed (the daemon could not start: a port in use, lifespan
startup failed; ``send``: the message was not delivered; ``worker``: it stopped on an error);
2 the command line or the configuration is invalid; 3 a second SIGTERM/SIGINT cut in-flight
connections short.

Every command that loads a configuration installs Twisted's asyncio reactor first (on the loop
the file names) and only then imports applications, so an application that runs
``from twisted.internet import reactor`` at module level gets the gateway's reactor.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from gateway import __version__

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

#: Exit statuses (README "Running the daemon").
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_FORCED = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Multi-protocol ASGI gateway daemon.")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", required=True, metavar="FILE", help="configuration file (YAML)")
    run.add_argument("-w", "--workers", metavar="N", type=_workers_option,
                     help="worker processes (a number or auto); overrides the file's workers")
    check = commands.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("config", metavar="FILE")
    check.add_argument("--no-import", action="store_true", help="do not import the applications")
    worker = commands.add_parser("worker", help="run background workers for channels (ChannelNameRouter)")
    worker.add_argument("-c", "--config", required=True, metavar="FILE", help="configuration file (YAML)")
    worker.add_argument("--layer", default="default", metavar="ALIAS", help="channel layer alias (default: default)")
    worker.add_argument("channels", nargs="+", metavar="CHANNEL")
    send = commands.add_parser("send", help="send a message to a channel or a group through the configured layer")
    send.add_argument("-c", "--config", required=True, metavar="FILE", help="configuration file (YAML)")
    send.add_argument("--layer", default="default", metavar="ALIAS", help="channel layer alias (default: default)")
    target = send.add_mutually_exclusive_group(required=True)
    target.add_argument("--group", metavar="NAME")
    target.add_argument("--channel", metavar="NAME")
    send.add_argument("message", metavar="JSON", help='the message, e.g. \'{"type": "chat.message", "text": "hi"}\'')
    hashing = commands.add_parser("hash-password", help="hash a password for the users of an SMTP or MQTT listener")
    hashing.add_argument("--stdin", action="store_true", help="read the password from standard input")
    hashing.add_argument("--pbkdf2", action="store_true", help="pbkdf2_sha256 instead of scrypt")
    sms = commands.add_parser("sms-test", help="sign a test SMS webhook for an account of the configuration and send it")
    sms.add_argument("-c", "--config", required=True, metavar="FILE", help="configuration file (YAML)")
    sms.add_argument("--listener", metavar="NAME", help="the SMS listener (default: the first)")
    sms.add_argument("--account", metavar="NAME", help="the account (default: the listener's first)")
    sms.add_argument("--text", default="Hello from the gateway")
    sms.add_argument("--from", dest="from_", default="+447400123456", metavar="NUMBER", help="the sender")
    sms.add_argument("--to", default="+441134960000", metavar="NUMBER", help="our number")
    sms.add_argument("--kind", choices=["message", "status"], default="message")
    sms.add_argument("--status", default="delivered", help="the provider's status word (--kind status)")
    sms.add_argument("--target", metavar="URL", help="send here instead of the listener's own address")
    sms.add_argument("--curl", action="store_true", help="print a curl command line instead of sending")
    commands.add_parser("version", help="print the version")
    return parser


def _workers_option(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes or auto, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _load(path: str, import_applications: bool = True) -> GatewayConfig | None:
    """The validated configuration, or ``None`` after printing every problem."""
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


def install_reactor_for(path: str, command: str) -> Any | None:
    """Install the asyncio reactor on the loop ``path`` names, before anything imports an
    application; ``None`` after printing why it cannot be (``command`` names the command)."""
    from gateway.config import read_loop_kind
    from gateway.reactor import ReactorError, install_reactor

    try:
        return install_reactor(read_loop_kind(path))
    except ReactorError as exc:
        print(f"{command}: {path}: {exc}", file=sys.stderr)
        return None


def _prepare(path: str, command: str, import_applications: bool = True) -> tuple[GatewayConfig, Any] | int:
    """Reactor first, then the configuration (and its applications): ``(config, reactor)``, or
    the exit status when either fails."""
    reactor = install_reactor_for(path, command)
    if reactor is None:
        return EXIT_USAGE
    config = _load(path, import_applications)
    if config is None:
        return EXIT_USAGE
    return config, reactor


def check_config(path: str, import_applications: bool = True) -> int:
    """``gateway check-config FILE``."""
    if import_applications and install_reactor_for(path, "gateway check-config") is None:
        return EXIT_USAGE
    config = _load(path, import_applications)
    if config is None:
        return EXIT_USAGE
    names = ", ".join(f"{listener.name} ({listener.protocol})" for listener in config.listeners)
    print(f"{path}: OK; listeners: {names}")
    return EXIT_OK


def run(path: str, workers: int | str | None = None) -> int:
    """``gateway run -c FILE``: run the daemon in the foreground until SIGTERM/SIGINT.

    With more than one worker (``workers`` in the file, or ``--workers``) this process is the
    supervisor (:mod:`gateway.workers.supervisor`): it does not import the applications; each
    worker is a fresh ``gateway run`` told so by its environment.
    """
    from gateway.workers.inherit import worker_settings

    settings = worker_settings()
    if settings is not None:
        return _run_worker(path, settings)
    # Read without importing anything of the application (no reactor is needed for that), to
    # know whether this process is a supervisor.
    config = _load(path, import_applications=False)
    if config is None:
        return EXIT_USAGE
    if workers is not None:
        import dataclasses

        config = dataclasses.replace(config, workers=workers)
        problems = list(config._check_workers())
        for key, problem in problems:
            print(f"gateway run: --workers {workers}: {key}: {problem}", file=sys.stderr)
        if problems:
            return EXIT_USAGE
    count = config.worker_count()
    if count > 1:
        from gateway.reactor import ReactorError, install_reactor

        try:
            # The supervisor runs on the standard loop whatever the workers' ``loop``: uvloop
            # takes the signal wakeup descriptor that Twisted needs to hear of its children's exits.
            supervisor_reactor = install_reactor("asyncio")
        except ReactorError as exc:
            print(f"gateway run: {path}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return _supervise(config, supervisor_reactor, path, count)
    reactor = install_reactor_for(path, "gateway run")
    if reactor is None:
        return EXIT_USAGE
    config = _load(path)
    if config is None:
        return EXIT_USAGE
    return _serve(config, reactor, path)


def _supervise(config: GatewayConfig, reactor: Any, path: str, count: int) -> int:
    from gateway.logs import start_logging

    start_logging(config.logging.level, config.logging.format, config.logging.output)
    from gateway.workers.supervisor import Supervisor

    try:
        service = Supervisor(config, reactor, path, count)
    except Exception as exc:
        print(f"gateway run: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    service.privilegedStartService()
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return service.exit_code


def _run_worker(path: str, settings: Any) -> int:
    """One worker of a supervisor: the listeners adopt its sockets; the admin listeners stay
    with the supervisor, listeners without a socket (MQTT connectors, IMAP readers) run in
    worker 0 only."""
    prepared = _prepare(path, "gateway run")
    if isinstance(prepared, int):
        return prepared
    config, reactor = prepared
    import dataclasses

    listeners = tuple(item for item in config.listeners if item.protocol != "admin"
                      and (getattr(item, "endpoint", None) or settings.index == 0))
    config = dataclasses.replace(config, listeners=listeners)
    from gateway.logs import set_worker
    from gateway.workers.link import WorkerLink

    set_worker(settings.index)
    return _serve(config, reactor, path, WorkerLink(settings))


def _process_local_layers(registry: Any) -> list[str]:
    """Aliases whose layer lives in this process only (the in-memory layers)."""
    found = []
    for alias in registry.aliases:
        layer = registry.get(alias)
        if layer is not None and type(layer).__name__ == "InMemoryChannelLayer":
            found.append(repr(alias))
    return found


def _serve(config: GatewayConfig, reactor: Any, path: str, worker: Any = None) -> int:
    from gateway.logs import start_logging

    start_logging(config.logging.level, config.logging.format, config.logging.output)
    from gateway.service import GatewayService

    try:
        service = GatewayService(config, reactor=reactor, config_path=path, worker=worker)
        if worker is not None:
            local = _process_local_layers(service.layers)
            if local:  # Django's CHANNEL_LAYERS: known only once the settings are imported
                print(f"gateway run: several workers, but channel layer(s) {', '.join(local)} are in memory "
                      "(one process each): configure a Redis layer (channels_redis or backend: redis), or set "
                      "workers: 1", file=sys.stderr)
                return EXIT_USAGE
    except Exception as exc:
        print(f"gateway run: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    service.privilegedStartService()
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    # Our own SIGTERM/SIGINT handlers replace Twisted's once running (graceful, then forced).
    reactor.run()
    return service.exit_code


class CommandFailed(Exception):
    """A ``worker``/``send`` failure: the message is the one line printed, ``status`` the exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


def _run_with_layers(path: str, command: str, work: Callable[[GatewayConfig, Any], Awaitable[None]], *,
                     import_applications: bool, log_level: str | None = None) -> int:
    """Run ``work(config, layer_registry)`` on the reactor with the configured layers, then stop
    (``worker``, ``send``). A :class:`CommandFailed` or any other error ends it with one line."""
    prepared = _prepare(path, command, import_applications)
    if isinstance(prepared, int):
        return prepared
    config, reactor = prepared
    from gateway.logs import start_logging

    start_logging(log_level or config.logging.level, config.logging.format, config.logging.output)
    from gateway.exceptions import InvalidChannelLayerError
    from gateway.layers import configure_layers

    try:
        registry = configure_layers(config.layers_mapping())
    except InvalidChannelLayerError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    import asyncio

    from twisted.internet import defer

    status = {"code": EXIT_OK}

    async def main() -> None:
        try:
            await work(config, registry)
        except asyncio.CancelledError:
            pass
        except CommandFailed as exc:
            print(f"{command}: {exc}", file=sys.stderr)
            status["code"] = exc.status
        except Exception as exc:  # one line, never "Unhandled error in Deferred"
            print(f"{command}: {type(exc).__name__}: {exc}", file=sys.stderr)
            status["code"] = EXIT_FAILED
        finally:
            try:
                await registry.close_all()
            except Exception as exc:
                print(f"{command}: closing the channel layers failed: {exc}", file=sys.stderr)
            if reactor.running:
                reactor.stop()

    def start() -> None:
        task = asyncio.ensure_future(main())
        reactor.addSystemEventTrigger("before", "shutdown", lambda: task.cancel() if not task.done() else None)
        defer.Deferred.fromFuture(task)

    reactor.callWhenRunning(start)
    reactor.run()
    return status["code"]


def _layer(registry: Any, alias: str) -> Any:
    layer = registry.get(alias)
    if layer is None:
        raise CommandFailed(f"no channel layer {alias!r} in the configuration (see its layers: section)", EXIT_USAGE)
    return layer


def worker(path: str, channels: list[str], alias: str) -> int:
    """``gateway worker -c FILE CHANNEL...``: feed messages on these channels to the application."""

    async def work(config: GatewayConfig, registry: Any) -> None:
        from twisted.logger import Logger

        from gateway.asgi.app import load_application
        from gateway.layers.worker import Worker

        if not config.application:
            raise CommandFailed("the configuration has no top-level application for the worker", EXIT_USAGE)
        layer = _layer(registry, alias)
        try:
            running = Worker(load_application(config.application), channels, layer)
        except (TypeError, ValueError) as exc:
            raise CommandFailed(str(exc), EXIT_USAGE) from None
        Logger(namespace="gateway.worker").info(
            "Worker started: {application} on channel(s) {channels} of layer {alias!r} ({layer})",
            application=config.application, channels=", ".join(channels), alias=alias, layer=_describe(layer))
        await running.run()

    return _run_with_layers(path, "gateway worker", work, import_applications=True)


def _describe(layer: Any) -> str:
    """``RedisChannelLayer redis://127.0.0.1:6379/0``: the layer's class and where it connects."""
    hosts = getattr(layer, "hosts", None) or ()
    addresses = [host.describe() if callable(getattr(host, "describe", None)) else str(host) for host in hosts]
    return " ".join([type(layer).__name__, ", ".join(addresses)]).strip()


class _Warnings(logging.Handler):
    """Collects what the layer warns about while one message is sent (the reason it failed)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def send(path: str, alias: str, group: str | None, channel: str | None, text: str) -> int:
    """``gateway send -c FILE --group NAME JSON``: one message through the configured layer.

    Exits 0 once the layer accepted it, 1 with one line when it did not (the layer is
    unreachable, the channel is full, members of the group are at capacity), 2 for a bad
    message, name or layer alias. The applications are not imported.
    """
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"gateway send: the message is not JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not isinstance(message, dict) or "type" not in message:
        print('gateway send: the message must be a JSON object with a "type", like {"type": "chat.message"}', file=sys.stderr)
        return EXIT_USAGE

    async def work(config: GatewayConfig, registry: Any) -> None:
        await send_one(_layer(registry, alias), alias, message, group=group, channel=channel)

    # The layer's own warnings (reconnection attempts) would bury the one line that matters.
    return _run_with_layers(path, "gateway send", work, import_applications=False, log_level="error")


async def send_one(layer: Any, alias: str, message: dict[str, Any], *, group: str | None, channel: str | None) -> None:
    """Send ``message`` and say where it went; :class:`CommandFailed` when it was not accepted."""
    from gateway.exceptions import ChannelFull
    from gateway.layers.worker import send_message

    before = _counters(layer)
    warnings = _Warnings()
    layer_logger = logging.getLogger("gateway.layers")
    saved = layer_logger.level, layer_logger.propagate
    # The layer's warnings are kept for the one line this command prints, not logged as well.
    layer_logger.setLevel(logging.WARNING)
    layer_logger.propagate = False
    layer_logger.addHandler(warnings)
    try:
        await send_message(message, channel=channel, group=group, layer=layer, alias=alias)
    except ChannelFull:
        raise CommandFailed(f"the message was not sent: channel {channel!r} is full (its capacity is reached)") from None
    except (TypeError, ValueError) as exc:
        raise CommandFailed(f"the message was not sent: {exc}", EXIT_USAGE) from None
    except Exception as exc:
        raise CommandFailed(f"the message was not sent: {_reason(exc)}") from None
    finally:
        layer_logger.removeHandler(warnings)
        layer_logger.setLevel(saved[0])
        layer_logger.propagate = saved[1]
    if channel is not None:
        print(f"sent to channel {channel!r}")
        return
    delta = {key: value - before.get(key, 0) for key, value in _counters(layer).items()}
    if delta.get("group_send_failed"):
        reasons = [text for text in warnings.messages if "dropped:" in text] or warnings.messages
        reason = reasons[-1].split("dropped: ", 1)[-1] if reasons else "the layer could not reach its server"
        raise CommandFailed(f"the message was not sent to group {group!r}: {_reason(reason)}")
    delivered, dropped = delta.get("group_delivered", 0), delta.get("group_dropped", 0)
    if dropped:
        raise CommandFailed(f"group {group!r}: {dropped} member(s) at capacity did not get the message "
                            f"({delivered} did)")
    if "group_delivered" in delta:
        print(f"sent to group {group!r}: {delivered} member(s)" + (" (the group has no members)" if not delivered else ""))
    else:
        print(f"sent to group {group!r}")


def _counters(layer: Any) -> dict[str, int]:
    stats = getattr(layer, "stats", None)
    if not callable(stats):
        return {}
    try:
        return {key: value for key, value in stats().items() if isinstance(value, int)}
    except Exception:
        return {}


def _reason(error: object) -> str:
    """An error's text without the layer's note that it keeps reconnecting (a command stops)."""
    text = str(error)
    return text.split("; reconnecting in the background")[0]


#: Credential fields of SMS account configurations that sign_test_webhook() takes.
_SMS_CREDENTIALS = ("auth_token", "account_sid", "signature_secret", "signature_method", "api_key", "secret")


def sms_test(args: argparse.Namespace) -> int:
    """``gateway sms-test -c FILE``: sign a webhook as the account's provider would, send it to the
    listener (``http://HOST:PORT`` of its ``tcp:`` endpoint, or ``--target``), print the answer."""
    config = _load(args.config, import_applications=False)
    if config is None:
        return EXIT_USAGE
    from gateway.protocols.sms.config import SmsListenerConfig

    listeners = [item for item in config.listeners
                 if isinstance(item, SmsListenerConfig) and args.listener in (None, item.name)]
    if not listeners:
        print(f"gateway sms-test: no SMS listener{' named ' + args.listener if args.listener else ''} in {args.config}", file=sys.stderr)
        return EXIT_USAGE
    listener = listeners[0]
    accounts = [item for item in listener.accounts if args.account in (None, item.name)]
    if not accounts:
        print(f"gateway sms-test: listener {listener.name} has no account {args.account!r}", file=sys.stderr)
        return EXIT_USAGE
    account = accounts[0]
    base = (listener.public_url or _endpoint_url(listener.endpoint) or "").rstrip("/")
    target = args.target or ((_endpoint_url(listener.endpoint) or base) + account.path)
    credentials = {name: getattr(account, name) for name in _SMS_CREDENTIALS if getattr(account, name, None)}
    from gateway.protocols.sms.testhook import sign_test_webhook

    try:
        hook = sign_test_webhook(account.provider, base + account.path, text=args.text, from_=args.from_, to=args.to,
                                 kind=args.kind, status=args.status, **credentials)
    except ValueError as exc:
        print(f"gateway sms-test: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.curl:
        import shlex

        print(hook.curl().replace(shlex.quote(hook.url), shlex.quote(target)))
        return EXIT_OK
    import urllib.error
    import urllib.request

    request = urllib.request.Request(target, data=hook.body, headers=dict(hook.headers), method=hook.method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - the configured listener
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except OSError as exc:
        print(f"gateway sms-test: cannot reach {target}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(status, body.decode("utf-8", "replace").strip())
    return EXIT_OK if 200 <= status < 300 else EXIT_FAILED


def _endpoint_url(endpoint: str | None) -> str | None:
    """``http://host:port`` of a ``tcp:PORT[:interface=HOST]`` endpoint, else None."""
    if not endpoint or not endpoint.startswith(("tcp:", "tcp6:")):
        return None
    parts = endpoint.split(":")
    port = parts[1] if len(parts) > 1 and parts[1].isdigit() else None
    if port is None:
        port = next((p.split("=", 1)[1] for p in parts if p.startswith("port=")), None)
    host = next((p.split("=", 1)[1] for p in parts if p.startswith("interface=")), "127.0.0.1")
    if port is None:
        return None
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gateway`` console script and ``python -m gateway``."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.config, args.workers)
    if args.command == "check-config":
        return check_config(args.config, not args.no_import)
    if args.command == "worker":
        return worker(args.config, args.channels, args.layer)
    if args.command == "send":
        return send(args.config, args.layer, args.group, args.channel, args.message)
    if args.command == "hash-password":
        from gateway.passwords import main as hash_main

        return hash_main(["--stdin"] * args.stdin + ["--pbkdf2"] * args.pbkdf2, prog="gateway hash-password")
    if args.command == "sms-test":
        return sms_test(args)
    if args.command == "version":
        print(f"gateway {__version__}")
        return 0
    parser.print_help(sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
