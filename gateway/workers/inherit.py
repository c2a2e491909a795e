"""A worker's view of the sockets its supervisor bound (``GATEWAY_WORKER`` in its environment)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from gateway.workers import WORKER_ENV

__all__ = ["InheritedSocket", "WorkerSettings", "inherited_socket", "worker_settings"]


@dataclass(frozen=True)
class InheritedSocket:
    """A listening socket passed to this worker: its descriptor and address family."""

    fd: int
    family: int


@dataclass(frozen=True)
class WorkerSettings:
    """What the supervisor tells a worker it starts.

    Attributes:
        index: the worker's slot (0 to N-1), kept by its replacements.
        report_fd: the pipe the worker writes its reports to (JSON lines).
        control_fd: the pipe the supervisor writes commands to (``stop``, ``retire``, ``force``).
        sockets: listener name -> the socket to adopt.
        heartbeat: seconds between two reports.
    """

    index: int
    report_fd: int
    control_fd: int
    sockets: dict[str, InheritedSocket]
    heartbeat: float = 1.0

    def encode(self) -> str:
        """The value of ``GATEWAY_WORKER``."""
        return json.dumps({"index": self.index, "report": self.report_fd, "control": self.control_fd,
                           "heartbeat": self.heartbeat,
                           "sockets": {name: [item.fd, item.family] for name, item in self.sockets.items()}})

    @classmethod
    def decode(cls, text: str) -> WorkerSettings:
        data: dict[str, Any] = json.loads(text)
        sockets = {str(name): InheritedSocket(int(fd), int(family)) for name, (fd, family) in data["sockets"].items()}
        return cls(int(data["index"]), int(data["report"]), int(data["control"]), sockets,
                   float(data.get("heartbeat", 1.0)))


_settings: WorkerSettings | None = None
_read = False


def worker_settings() -> WorkerSettings | None:
    """This process's worker settings, or ``None`` when it is not a worker."""
    global _settings, _read
    if not _read:
        text = os.environ.get(WORKER_ENV)
        _settings = WorkerSettings.decode(text) if text else None
        _read = True
    return _settings


def inherited_socket(name: str) -> InheritedSocket | None:
    """The socket the supervisor bound for listener ``name``, when this process is a worker."""
    settings = worker_settings()
    return None if settings is None else settings.sockets.get(name)
