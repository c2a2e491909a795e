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

__all__ = ["REDIS_SERVER", "RedisCluster", "RedisServer", "command", "free_port"]

REDIS_SERVER = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)


def free_port(taken: set[int] | None = None) -> int:
    """A port free now (and not in ``taken``, to which it is added)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if taken is None:
            return port
        if port not in taken:
            taken.add(port)
            return port


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


class RedisCluster:
    """A Redis Cluster of ``primaries`` primaries with ``replicas`` replicas each, on free ports
    (``redis-server --cluster-enabled yes`` per node, ``redis-cli --cluster create``).

    ``node_timeout`` (ms) is the cluster's failure detection time: a killed primary's replica
    takes over about one to two node timeouts later.
    """

    def __init__(self, tmp: Path, primaries: int = 3, replicas: int = 1, node_timeout: int = 1000) -> None:
        self.tmp = tmp
        self.nodes: list[RedisServer] = []
        used: set[int] = set()
        for _ in range(primaries * (1 + replicas)):
            port, bus = free_port(used), free_port(used)
            directory = tmp / f"node-{port}"
            directory.mkdir()
            self.nodes.append(RedisServer(directory, port=port, args=(
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", str(node_timeout), "--cluster-port", str(bus),
                "--cluster-replica-validity-factor", "0", "--cluster-require-full-coverage", "no",
                "--cluster-allow-reads-when-down", "no")))
        self.replicas = replicas

    @property
    def urls(self) -> list[str]:
        """Seed URLs (every node)."""
        return [f"redis+cluster://127.0.0.1:{node.port}" for node in self.nodes]

    def start(self, timeout: float = 60.0) -> RedisCluster:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        done = subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas),
                               "--cluster-yes"], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
        self.wait_ok(timeout)
        return self

    def alive(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.process is not None and node.process.poll() is None]

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Until every live node says the cluster is ok, all agree on the slot map and every
        replica is linked to its primary (replicating)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                states = [node.command("CLUSTER", "INFO") for node in self.alive()]
                maps = {str(sorted((s[0], s[1], s[2][1]) for s in node.command("CLUSTER", "SLOTS")))
                        for node in self.alive()}
                replication = [node.command("INFO", "replication") for node in self.alive()]
                linked = all(b"master_link_status:up" in info for info in replication if b"role:slave" in info)
                if all(b"cluster_state:ok" in state for state in states) and len(maps) == 1 and linked:
                    return
            except (OSError, RuntimeError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not become ok")
            time.sleep(0.05)

    def owner(self, slot: int) -> RedisServer:
        """The live node serving ``slot`` as primary."""
        for node in self.alive():
            for start, end, primary, *_ in node.command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    port = int(primary[1])
                    return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no node serves slot {slot}")

    def primaries(self) -> list[RedisServer]:
        ports = {int(primary[1]) for _s, _e, primary, *_ in self.alive()[0].command("CLUSTER", "SLOTS")}
        return [node for node in self.nodes if node.port in ports]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
