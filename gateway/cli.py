"""The ``gateway`` command: ``run``, ``check-config``, ``worker``, ``send``, ``hash-password``, ``sms-test``, ``version``.

Exit statuses: 0 success; 1 the daemon could not start (a port in use, lifespan startup
failed); 2 the command line or the configuration is invalid.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from gateway import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Multi-protocol ASGI gateway daemon.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", required=True, metavar="FILE", help="configuration file (YAML)")
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
        service = GatewayService(config, reactor=reactor, config_path=path)
    except Exception as exc:
        print(f"gateway: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    service.privilegedStartService()
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    # Our own SIGTERM/SIGINT handlers replace Twisted's once running (graceful, then forced).
    reactor.run()
    return service.exit_code


def _run_with_layers(path: str, work: Callable[[Any], Awaitable[None]]) -> int:
    """Run ``work(config)`` on the reactor with the configured layers, then stop (worker/send)."""
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
    from gateway.exceptions import InvalidChannelLayerError
    from gateway.layers import configure_layers

    try:
        registry = configure_layers(config.layers_mapping())
    except InvalidChannelLayerError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    status = {"code": 0}

    async def main() -> None:
        try:
            await work(config)
        except asyncio.CancelledError:
            pass
        except (ValueError, LookupError) as exc:
            print(f"gateway: {exc}", file=sys.stderr)
            status["code"] = 1
        finally:
            await registry.close_all()
            if reactor.running:
                reactor.stop()

    import asyncio

    from twisted.internet import defer

    def start() -> None:
        task = asyncio.ensure_future(main())
        reactor.addSystemEventTrigger("before", "shutdown", lambda: task.cancel() if not task.done() else None)
        defer.Deferred.fromFuture(task)

    reactor.callWhenRunning(start)
    reactor.run()
    return status["code"]


def worker(path: str, channels: list[str], alias: str) -> int:
    """``gateway worker -c FILE CHANNEL...``: feed messages on these channels to the application."""

    async def work(config: Any) -> None:
        from gateway.asgi.app import load_application
        from gateway.layers.worker import run_worker

        if not config.application:
            raise ValueError("the configuration has no top-level application for the worker")
        await run_worker(load_application(config.application), channels, alias=alias)

    return _run_with_layers(path, work)


def send(path: str, alias: str, group: str | None, channel: str | None, text: str) -> int:
    """``gateway send -c FILE --group NAME JSON``: one message through the configured layer."""
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"gateway: the message is not JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(message, dict) or "type" not in message:
        print('gateway: the message must be a JSON object with a "type", like {"type": "chat.message"}', file=sys.stderr)
        return 2

    async def work(config: Any) -> None:
        from gateway.layers.worker import send_message

        await send_message(message, channel=channel, group=group, alias=alias)

    return _run_with_layers(path, work)


#: Credential fields of SMS account configurations that sign_test_webhook() takes.
_SMS_CREDENTIALS = ("auth_token", "account_sid", "signature_secret", "signature_method", "api_key", "secret")


def sms_test(args: argparse.Namespace) -> int:
    """``gateway sms-test -c FILE``: sign a webhook as the account's provider would, send it to the
    listener (``http://HOST:PORT`` of its ``tcp:`` endpoint, or ``--target``), print the answer."""
    config = _load(args.config, import_applications=False)
    if config is None:
        return 2
    listeners = [item for item in config.listeners if item.protocol == "sms" and args.listener in (None, item.name)]
    if not listeners:
        print(f"gateway: no SMS listener{' named ' + args.listener if args.listener else ''} in {args.config}", file=sys.stderr)
        return 2
    listener = listeners[0]
    accounts = [item for item in listener.accounts if args.account in (None, item.name)]
    if not accounts:
        print(f"gateway: listener {listener.name} has no account {args.account!r}", file=sys.stderr)
        return 2
    account = accounts[0]
    base = (listener.public_url or _endpoint_url(listener.endpoint) or "").rstrip("/")
    target = args.target or ((_endpoint_url(listener.endpoint) or base) + account.path)
    credentials = {name: getattr(account, name) for name in _SMS_CREDENTIALS if getattr(account, name, None)}
    from gateway.protocols.sms.testhook import sign_test_webhook

    try:
        hook = sign_test_webhook(account.provider, base + account.path, text=args.text, from_=args.from_, to=args.to,
                                 kind=args.kind, status=args.status, **credentials)
    except ValueError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    if args.curl:
        import shlex

        print(hook.curl().replace(shlex.quote(hook.url), shlex.quote(target)))
        return 0
    import urllib.error
    import urllib.request

    request = urllib.request.Request(target, data=hook.body, headers=dict(hook.headers), method=hook.method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - the configured listener
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except OSError as exc:
        print(f"gateway: cannot reach {target}: {exc}", file=sys.stderr)
        return 1
    print(status, body.decode("utf-8", "replace").strip())
    return 0 if 200 <= status < 300 else 1


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
        return run(args.config)
    if args.command == "check-config":
        return check_config(args.config, not args.no_import)
    if args.command == "worker":
        return worker(args.config, args.channels, args.layer)
    if args.command == "send":
        return send(args.config, args.layer, args.group, args.channel, args.message)
    if args.command == "hash-password":
        from gateway.passwords import main as hash_main

        return hash_main(["--stdin"] * args.stdin + ["--pbkdf2"] * args.pbkdf2)
    if args.command == "sms-test":
        return sms_test(args)
    if args.command == "version":
        print(f"gateway {__version__}")
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
