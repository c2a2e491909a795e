"""A throwaway ``redis-server`` for tests: free port, no persistence, stopped by its own PID.

``RedisServer(tmp).start()`` runs ``/usr/bin/redis-server --port P --save '' --appendonly no``
bound to 127.0.0.1; :meth:`RedisServer.kill` / :meth:`RedisServer.start` again simulate a crash
and a restart on the same port. :func:`command` speaks just enough RESP for test set-up and
inspection, so the tests need no Redis client library of their own.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["REDIS_SERVER", "RedisServer", "command", "free_port"]

REDIS_SERVER = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _encode(*args: Any) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read(f: Any) -> Any:
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read(f) for _ in range(n)]
    raise RuntimeError(f"bad reply {line!r}")


def command(port: int, *args: Any, password: str | None = None, timeout: float = 5.0) -> Any:
    """Run one Redis command on 127.0.0.1:``port`` and return the decoded reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        f = sock.makefile("rb")
        if password is not None:
            sock.sendall(_encode("AUTH", password))
            _read(f)
        sock.sendall(_encode(*args))
        return _read(f)


class RedisServer:
    """One redis-server process on a free (or given) port."""

    def __init__(self, tmp: Path, port: int | None = None, args: tuple[str, ...] = (), password: str | None = None,
                 config: str | None = None) -> None:
        self.tmp = tmp
        self.port = port or free_port()
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None
        self.password = password
        #: Text of a config file passed first (``--sentinel`` needs one it can rewrite).
        self.config = config

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed")
        log = open(self.tmp / f"redis-{self.port}.log", "ab")
        config: list[str] = []
        if self.config is not None:
            path = self.tmp / f"redis-{self.port}.conf"
            if not path.exists():
                path.write_text(self.config)
            config = [str(path)]
        self.process = subprocess.Popen(
            [REDIS_SERVER, *config, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.tmp), *self.args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.ping():
                    return self
            except (OSError, RuntimeError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not start: {(self.tmp / f'redis-{self.port}.log').read_text()[-2000:]}")
            time.sleep(0.02)

    def ping(self) -> bool:
        return command(self.port, "PING", password=self.password, timeout=1.0) == "PONG"

    def command(self, *args: Any) -> Any:
        return command(self.port, *args, password=self.password)

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL): a crash; everything in it is lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
