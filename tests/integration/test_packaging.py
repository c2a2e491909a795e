"""``twistd gateway`` works however the gateway is installed: from a wheel, from a normal
editable install (``pip install -e .``) and from ``make`` (this test suite's own virtualenv), with
no deprecated setuptools mode. twistd finds its plugins by scanning ``sys.path`` for
``twisted/plugins`` directories, so each way must leave ``twisted/plugins/gateway_plugin.py``
in one of them.

Each install goes into a fresh virtualenv whose dependencies come from this suite's virtualenv
through a ``.pth`` line (whose own ``.pth`` files, among them the checkout's editable install,
are not processed), so nothing of the checkout is importable there unless the install put it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.integration.daemon import BIN, REPO

pytestmark = pytest.mark.slow

PLUGIN = "twisted/plugins/gateway_plugin.py"


def _env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(*args: str | Path, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(arg) for arg in args], capture_output=True, text=True, cwd=cwd, env=_env(), timeout=300)
    if check:
        assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result


def _source(tmp: Path) -> Path:
    """A copy of the tracked files of the checkout (what a clone has)."""
    files = subprocess.run(["git", "ls-files", "-z"], capture_output=True, cwd=REPO, check=True).stdout.decode().split("\0")
    source = tmp / "src"
    for name in filter(None, files):
        target = source / name
        if not (REPO / name).is_file():
            continue  # deleted in the work tree but not yet committed
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((REPO / name).read_bytes())
    return source


def _venv(tmp: Path, name: str) -> Path:
    """A new virtualenv (no pip) that borrows this suite's installed dependencies."""
    venv = tmp / name
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    purelib = Path(_run(venv / "bin/python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp).stdout.strip())
    (purelib / "_borrowed_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


def _pip(venv: Path, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return _run(sys.executable, "-m", "pip", "--python", venv / "bin/python", *args, cwd=cwd)


def _twistd(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return _run(python, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
                *args, cwd=cwd, check=False)


def _serves_twistd_gateway(python: Path, tmp: Path, checkout: Path | None) -> None:
    """The plugin is listed, its options parse, and gateway comes from the install."""
    where = _run(python, "-c", "import gateway, twisted.plugins.gateway_plugin as p; print(gateway.__file__); print(p.__file__)",
                 cwd=tmp).stdout.split()
    if checkout is None:
        assert all(not path.startswith(str(REPO)) for path in where), where
    else:
        assert all(path.startswith(str(checkout)) for path in where), where
    listed = _twistd(python, "--help", cwd=tmp)
    assert "Multi-protocol ASGI gateway" in listed.stdout, listed.stdout + listed.stderr
    missing = _twistd(python, "--nodaemon", "--pidfile=", "gateway", cwd=tmp)
    assert missing.returncode == 2, missing.stderr
    assert "the configuration file is required" in missing.stderr
    config = tmp / "check.yaml"
    config.write_text("application: gateway.demo:application\nlisteners:\n  - {name: web, protocol: http, endpoint: 'tcp:0'}\n")
    checked = _run(python, "-m", "gateway", "check-config", config, cwd=tmp)
    assert checked.stdout.strip() == f"{config}: OK; listeners: web (http)"


def test_twistd_gateway_from_a_wheel(tmp_path: Path) -> None:
    source = _source(tmp_path)
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", dist, source, cwd=tmp_path)
    (wheel,) = dist.glob("gateway-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert PLUGIN in names and "gateway/tap.py" in names and "gateway/py.typed" in names
    assert not any(name.startswith(("tests/", "bench/", "conf/")) for name in names)
    venv = _venv(tmp_path, "wheel-venv")
    _pip(venv, "install", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    _serves_twistd_gateway(venv / "bin/python", tmp_path, None)


def test_twistd_gateway_from_a_normal_editable_install(tmp_path: Path) -> None:
    source = _source(tmp_path)
    venv = _venv(tmp_path, "editable-venv")
    installed = _pip(venv, "install", "--no-deps", "--no-build-isolation", "-e", source, cwd=tmp_path)
    # setuptools' deprecated "compat" mode announces itself in a boxed warning; no mode is asked for.
    assert "compat" not in installed.stdout + installed.stderr, installed.stderr
    _serves_twistd_gateway(venv / "bin/python", tmp_path, source)


def test_twistd_gateway_from_make(tmp_path: Path) -> None:
    """This suite runs in the virtualenv ``make install-test`` made (in this checkout): twistd
    finds the plugin from anywhere, with no PYTHONPATH."""
    makefile = (REPO / "Makefile").read_text()
    assert "pip install --quiet -e '.[uvloop]'" in makefile and "editable_mode" not in makefile
    result = _run(BIN / "twistd", "--help", cwd=tmp_path)
    assert "Multi-protocol ASGI gateway" in result.stdout
    _serves_twistd_gateway(BIN / "python", tmp_path, REPO)
