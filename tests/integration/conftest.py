"""Fixtures for tests that run a real daemon."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import REPO, Daemon, http_config

#: Where tests keep what a person may want to look at afterwards (the pages' screenshots).
ARTIFACTS = Path(os.environ.get("GATEWAY_TEST_ARTIFACTS", REPO / "tests" / "artifacts"))
_written: list[Path] = []


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """A directory for this test's artefacts, ``tests/artifacts/<test name>/`` (emptied first;
    ``GATEWAY_TEST_ARTIFACTS`` moves the root). Its path is printed at the end of the run."""
    path = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_")
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.png"):
        old.unlink()
    _written.append(path)
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _written:
        terminalreporter.write_sep("-", "test artefacts")
        for path in _written:
            terminalreporter.write_line(str(path))


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon serving tests.apps:app on a free port, shared by a module's tests."""
    tmp = tmp_path_factory.mktemp("web")
    config = http_config(listener_extra=f"access_log: {tmp / 'access.log'}\nlimits: {{max_body_size: 1MiB}}")
    daemon = Daemon(tmp, config).start()
    yield daemon
    daemon.stop()


def raw_request(port: int, data: bytes, *, read_until_close: bool = True, timeout: float = 10.0) -> bytes:
    """Send raw bytes and return everything the server sends until it closes (or times out)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if not read_until_close:
                break
        return b"".join(chunks)


def path_of(tmp: Path, name: str) -> str:
    return str(tmp / name)
