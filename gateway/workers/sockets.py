"""The supervisor's listening sockets: bound once, passed to every worker.

``tcp:``/``tcp6:``/``ssl:`` endpoints are bound here (TLS itself runs in the workers); with
``supervisor.balance: reuseport`` each worker slot gets its own socket on the same address with
``SO_REUSEPORT``, so the kernel spreads new connections evenly over the slots (a shared socket
lets the worker that wakes first take a whole burst). The supervisor keeps every socket open,
so connections that arrive while a slot's worker restarts wait in that socket's queue for the
next one. ``unix:`` endpoints are bound here too (the file is removed when the daemon stops);
``systemd:`` endpoints are the sockets systemd passed. Those two are shared by all workers.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass, field
from typing import Any

from gateway.listener import with_default_backlog

__all__ = ["BindError", "ListenerSockets", "bind_listener"]


class BindError(Exception):
    """A listener's socket cannot be bound; the message says why."""


@dataclass
class ListenerSockets:
    """The sockets of one listener.

    Attributes:
        name: the listener's name.
        endpoint: its endpoint string.
        family: the address family.
        fds: one descriptor per worker slot (reuseport), or one that every slot shares.
        unix_path: the socket file the supervisor created (removed when it stops).
    """

    name: str
    endpoint: str
    family: int
    fds: list[int] = field(default_factory=list)
    unix_path: str | None = None
    sockets: list[socket.socket] = field(default_factory=list, repr=False)

    def fd_for(self, slot: int) -> int:
        """The descriptor worker ``slot`` serves."""
        return self.fds[slot % len(self.fds)]

    def address(self) -> str:
        """``127.0.0.1:8000``, ``[::1]:8000`` or ``unix:/path``."""
        name = self.sockets[0].getsockname()
        if self.family == socket.AF_UNIX:
            return f"unix:{name.decode() if isinstance(name, bytes) else name}"
        host, port = name[0], name[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def close(self) -> None:
        """Close the supervisor's copies (workers still holding one keep serving it)."""
        for sock in self.sockets:
            sock.close()
        self.sockets = []
        if self.unix_path is not None:
            try:
                os.unlink(self.unix_path)
            except OSError:
                pass
            self.unix_path = None


def bind_listener(name: str, endpoint: str, reactor: Any, slots: int, balance: str,
                  replacing: ListenerSockets | None = None) -> ListenerSockets:
    """Bind the socket(s) of one listener for ``slots`` workers (``replacing``: the sockets this
    daemon has for the listener now, which a reload replaces; their port may be reused).

    Raises:
        BindError: the address is in use, the endpoint kind cannot be shared, and the like.
    """
    from twisted.internet import endpoints

    try:
        parsed = endpoints.serverFromString(reactor, with_default_backlog(endpoint))
    except IndexError:
        raise BindError("no socket was passed by systemd (is the .socket unit enabled and LISTEN_FDS set?)") from None
    except Exception as exc:
        raise BindError(f"{type(exc).__name__}: {exc}") from None
    if isinstance(parsed, (endpoints.TCP4ServerEndpoint, endpoints.TCP6ServerEndpoint, endpoints.SSL4ServerEndpoint)):
        interface = parsed._interface
        if isinstance(parsed, endpoints.TCP6ServerEndpoint) or ":" in interface:
            family, interface = socket.AF_INET6, interface or "::"
        else:
            family, interface = socket.AF_INET, interface or "0.0.0.0"
        ours = None
        if replacing is not None and replacing.sockets and replacing.family == family:
            ours = replacing.sockets[0].getsockname()[:2]
        return _bind_tcp(name, endpoint, family, interface, parsed._port, parsed._backlog,
                         slots if balance == "reuseport" else 1, ours)
    if isinstance(parsed, endpoints.UNIXServerEndpoint):
        return _bind_unix(name, endpoint, parsed._address, parsed._backlog, parsed._mode)
    if isinstance(parsed, endpoints.AdoptedStreamServerEndpoint):
        fd = parsed.fileno
        sock = socket.socket(fileno=os.dup(fd))
        sock.setblocking(False)
        sock.set_inheritable(True)
        return ListenerSockets(name, endpoint, sock.family, [sock.fileno()], sockets=[sock])
    raise BindError(f"endpoint {endpoint!r} cannot be shared by worker processes (use tcp, ssl, unix or systemd)")


def _bind_tcp(name: str, endpoint: str, family: int, interface: str, port: int, backlog: int,
              count: int, ours: Any = None) -> ListenerSockets:
    result = ListenerSockets(name, endpoint, family)
    try:
        if count > 1 and (ours is None or tuple(ours) != (interface, port)):
            # SO_REUSEPORT would let this daemon join the sockets of another one of the same user
            # on this port (a second daemon started by mistake): bind once without it first, so
            # that a port in use is refused as it is with one process.
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind((interface, port))
                port = probe.getsockname()[1]
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            result.sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if count > 1:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((interface, port))
            port = sock.getsockname()[1]  # port 0: the others share the one the first got
            sock.listen(backlog)
            sock.setblocking(False)
            sock.set_inheritable(True)
    except OSError as exc:
        result.close()
        where = f"[{interface}]:{port}" if family == socket.AF_INET6 else f"{interface}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise BindError(f"Couldn't listen on {where}: [Errno {exc.errno}] Address already in use.") from None
        raise BindError(f"Couldn't listen on {where}: {exc}") from None
    result.fds = [sock.fileno() for sock in result.sockets]
    return result


def _bind_unix(name: str, endpoint: str, path: str, backlog: int, mode: int) -> ListenerSockets:
    path = os.path.abspath(path)
    if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode) and not _in_use(path):
        os.unlink(path)  # a stale file from a daemon that did not stop cleanly
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, mode)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"Couldn't listen on unix:{path}: {exc}") from None
    sock.setblocking(False)
    sock.set_inheritable(True)
    return ListenerSockets(name, endpoint, socket.AF_UNIX, [sock.fileno()], unix_path=path, sockets=[sock])


def _in_use(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True
