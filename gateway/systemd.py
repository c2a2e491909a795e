"""systemd integration: ``sd_notify`` (READY, STOPPING, STATUS, WATCHDOG).

Socket activation needs nothing here: ``systemd:domain=INET:index=0`` endpoints adopt the
sockets systemd passes (Twisted reads ``LISTEN_FDS``/``LISTEN_PID``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from twisted.internet.task import LoopingCall


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (like ``READY=1``) to systemd's notification socket.

    Returns:
        Whether a notification socket was configured (and the message sent).
    """
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
        except OSError:
            return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WatchdogSec``), or ``None``."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2_000_000


def start_watchdog(reactor: Any, environ: Mapping[str, str] | None = None) -> LoopingCall | None:
    """Ping systemd's watchdog while the reactor runs, when ``WatchdogSec`` is set."""
    interval = watchdog_interval(environ)
    if interval is None:
        return None
    call = LoopingCall(notify, "WATCHDOG=1", environ)
    call.clock = reactor
    call.start(interval, now=True)
    return call
