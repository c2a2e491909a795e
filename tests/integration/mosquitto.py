"""A Mosquitto broker (Debian's ``mosquitto``) on a free port, for the connector's tests: plain or
TLS, with a password file, with persistence; it can be killed, stopped and started again on the
same port. Readiness is its own log line, never a sleep."""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    """One broker process.

    Args:
        tmp: a directory for its configuration, log, password and persistence files.
        tls: ``(certfile, keyfile)`` for a TLS listener, or None.
        users: ``{user: password}`` (a password file; anonymous clients refused), or None.
        persistence: keep sessions and queued messages in a file (saved when it stops).
        extra: more configuration lines.
    """

    def __init__(self, tmp: Path, *, tls: tuple[str, str] | None = None, users: dict[str, str] | None = None,
                 persistence: bool = False, extra: str = "") -> None:
        if MOSQUITTO is None:
            raise RuntimeError("mosquitto is not installed")
        self.tmp = tmp
        self.port = free_port()
        self.log_path = tmp / f"mosquitto-{self.port}.log"
        # As root, mosquitto would switch to the user "mosquitto", who cannot write here.
        lines = [f"user {getpass.getuser()}", f"listener {self.port} 127.0.0.1", "log_dest file " + str(self.log_path),
                 "log_type error", "log_type warning", "log_type notice", "log_type information", "log_type subscribe",
                 "max_queued_messages 0", "max_inflight_messages 20"]
        if tls is not None:
            lines += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
        if users is not None:
            passwords = tmp / f"passwords-{self.port}"
            passwords.write_text("")
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True,
                               capture_output=True, timeout=30)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines += ["allow_anonymous true"]
        if persistence:
            lines += ["persistence true", f"persistence_location {tmp}/", f"persistence_file mosquitto-{self.port}.db"]
        lines += extra.strip().splitlines()
        self.config = tmp / f"mosquitto-{self.port}.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Mosquitto:
        """Start it; return once it accepts connections (its log says it is running)."""
        since = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.process = subprocess.Popen([str(MOSQUITTO), "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        try:
            self.wait_for_log("running", since, timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def wait_for_log(self, text: str, since: int = 0, timeout: float = 10.0) -> str:
        """Wait for ``text`` in the log written after byte ``since``; return the log from there."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log_path.read_bytes()[since:].decode(errors="replace") if self.log_path.exists() else ""
            if text in log:
                return log
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}:\n{log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {text!r} in mosquitto's log within {timeout}s:\n{log}")
            time.sleep(0.02)

    def wait_subscribed(self, topic_filter: str, timeout: float = 20.0) -> None:
        """Wait until a client subscribed to ``topic_filter`` (its log line: ``<client> <qos> <filter>``)."""
        deadline = time.monotonic() + timeout
        while not any(line.endswith(f" {topic_filter}") for line in self.log_path.read_text().splitlines()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"nobody subscribed to {topic_filter} within {timeout}s")
            time.sleep(0.02)

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def kill(self) -> None:
        """SIGKILL: nothing is saved."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: it saves its persistence file and exits."""
        self._end(signal.SIGTERM)

    def _end(self, sig: int) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            process.wait(timeout=30)
