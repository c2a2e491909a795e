"""Channels' own test files (4.3.2), with only imports changed, pass against the gateway.

The runner is ``bench/channels_suite/run.py``; the assertions it adapts are the deliberate
differences listed in ``docs/consumers.md`` ("Differences from Channels").
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("pytest_django")
pytest.importorskip("pytest_asyncio")
pytest.importorskip("async_timeout")


def test_channels_own_tests_pass(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "channels_suite" / "run.py"), "--keep", str(tmp_path / "suite")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    summary = re.search(r"^CHANNELS-SUITE (.*)$", result.stdout, re.MULTILINE)
    assert summary is not None, result.stdout[-3000:] + result.stderr[-3000:]
    counts = dict(item.split("=") for item in summary.group(1).split())
    assert counts["failed"] == "0" and counts["errors"] == "0", result.stdout[-5000:]
    assert int(counts["passed"]) == int(counts["total"]) == 80
    assert result.returncode == 0


def test_no_channels_import_survives_the_rewrite(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("channels_suite_run", REPO / "bench" / "channels_suite" / "run.py")
    assert spec is not None and spec.loader is not None
    runner = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = runner  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(runner)
        runner.prepare(tmp_path, pristine=False)
    finally:
        del sys.modules[spec.name]
    leftovers = [
        f"{path.relative_to(tmp_path)}:{number}: {line.strip()}"
        for path in (tmp_path / "tests").rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.match(r"\s*(from|import)\s+(channels|daphne)\b", line)
    ]
    assert leftovers == []
