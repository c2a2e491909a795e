"""Run a real gateway daemon (``gateway run`` or ``twistd``) for integration tests.

Readiness is read from a real ``NOTIFY_SOCKET``: the daemon sends ``READY=1`` with a ``STATUS``
naming every listener's address, exactly as it does under systemd, so no test sleeps or polls.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll ``predicate()`` until it returns something truthy and return that; raise
    ``AssertionError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class DaemonFailed(Exception):
    """The daemon exited or did not become ready; carries its output."""


class Daemon:
    """A gateway process.

    Args:
        tmp_path: a directory for the config, the notify socket and the output.
        config: YAML text (dedented); ``{tmp}`` is replaced by ``tmp_path``.
        runner: ``run`` (``python -m gateway run``), ``script`` (the ``gateway`` console script)
            or ``twistd``.
        env: extra environment variables.
    """

    def __init__(self, tmp_path: Path, config: str, runner: str = "run", env: dict[str, str] | None = None) -> None:
        self.tmp = tmp_path
        self.config_path = tmp_path / "gateway.yaml"
        self.config_path.write_text(textwrap.dedent(config).replace("{tmp}", str(tmp_path)))
        self.output_path = tmp_path / "daemon.log"
        self.runner = runner
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = str(REPO) + os.pathsep + self.env.get("PYTHONPATH", "")
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        #: Run in the child before the daemon starts (say, to lower its resource limits).
        self.preexec: Callable[[], None] | None = None
        #: Descriptors the daemon inherits (a socket passed as systemd would).
        self.pass_fds: tuple[int, ...] = ()
        self.addresses: dict[str, str] = {}
        self.notifications: list[str] = []
        self._sock: socket.socket | None = None

    def command(self) -> list[str]:
        config = str(self.config_path)
        if self.runner == "twistd":
            return [str(BIN / "twistd"), "--nodaemon", "--pidfile=", "gateway", "-c", config]
        if self.runner == "script":
            return [str(BIN / "gateway"), "run", "-c", config]
        return [sys.executable, "-m", "gateway", "run", "-c", config]

    def start(self, timeout: float = 30.0, expect_ready: bool = True) -> Daemon:
        notify_path = str(self.tmp / "notify.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(notify_path)
        self.env["NOTIFY_SOCKET"] = notify_path
        self._output = open(self.output_path, "wb")
        self.process = subprocess.Popen(self.command(), cwd=REPO, env=self.env, stdout=self._output, stderr=subprocess.STDOUT,
                                        preexec_fn=self.preexec, pass_fds=self.pass_fds)
        if expect_ready:
            self.wait_for("READY=1", timeout)
            for line in self.notifications:
                for part in line.split("\n"):
                    if part.startswith("STATUS=listening"):
                        for item in part.split()[1:]:
                            name, _, address = item.partition("=")
                            self.addresses[name] = address
        return self

    def wait_for(self, state: str, timeout: float = 30.0, since: int = 0) -> str:
        """Wait for a notification containing ``state`` (among those from index ``since`` on);
        raise if the process exits first."""
        assert self._sock is not None and self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            for line in self.notifications[since:]:
                if state in line:
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DaemonFailed(f"no {state} within {timeout}s:\n{self.output()}")
            self._sock.settimeout(min(remaining, 0.2))
            try:
                self.notifications.append(self._sock.recv(65536).decode())
            except TimeoutError:
                if self.process.poll() is not None:
                    raise DaemonFailed(f"daemon exited with {self.process.returncode} before {state}:\n{self.output()}") from None

    def reload(self, config: str, timeout: float = 30.0) -> str:
        """Rewrite the configuration, send SIGHUP, wait for the READY=1 that ends the reload;
        refresh ``addresses`` from its STATUS and return it."""
        self.config_path.write_text(textwrap.dedent(config).replace("{tmp}", str(self.tmp)))
        since = len(self.notifications)
        self.signal(signal.SIGHUP)
        line = self.wait_for("READY=1", timeout, since=since)
        for part in line.split("\n"):
            if part.startswith("STATUS=listening"):
                self.addresses = {}
                for item in part.split()[1:]:
                    name, _, address = item.partition("=")
                    self.addresses[name] = address
        return line

    def url(self, listener: str = "web", scheme: str = "http") -> str:
        return f"{scheme}://{self.addresses[listener]}"

    def port(self, listener: str = "web") -> int:
        return int(self.addresses[listener].rsplit(":", 1)[1])

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._output.close()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        return self.process.returncode

    def output(self) -> str:
        try:
            return self.output_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> Daemon:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def http_config(app: str = "tests.apps:app", extra: str = "", listener_extra: str = "", endpoint: str = "tcp:0:interface=127.0.0.1") -> str:
    """A configuration with one HTTP listener named ``web`` on a free port."""
    return f"""
application: {app}
{extra}
listeners:
  - name: web
    protocol: http
    endpoint: "{endpoint}"
{textwrap.indent(textwrap.dedent(listener_extra), '    ')}
logging: {{level: info}}
"""
