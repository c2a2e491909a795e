"""The ``gateway`` commands and the twistd tap as a user runs them: real processes, a real
redis-server, and an application that imports Twisted's reactor at module level."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.daemon import BIN, REPO, Daemon, http_config, wait_until
from tests.unit.layers.redis_server import REDIS_SERVER, RedisServer, free_port

pytestmark = pytest.mark.slow

REACTOR_APP = "tests.reactor_apps:app"


def gateway(*args: str, input: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([str(BIN / "gateway"), *args], capture_output=True, text=True, cwd=REPO, input=input,
                          env=environment, timeout=timeout)


def layer_config(redis_url: str, app: str = REACTOR_APP) -> str:
    return http_config(app=app, extra=f"""
lifespan: "off"
layers:
  default:
    backend: redis
    hosts: ["{redis_url}"]
    connect_timeout: 2s
""")


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


# -- the reactor is installed before the application is imported ----------------------------


@pytest.mark.parametrize("runner", ["script", "run", "twistd"])
def test_an_application_importing_the_reactor_at_module_level_runs(tmp_path: Path, runner: str) -> None:
    with Daemon(tmp_path, http_config(app=REACTOR_APP), runner=runner) as daemon:
        assert httpx.get(daemon.url() + "/reactor").text == "GatewayReactor"
        assert httpx.get(daemon.url() + "/hello").text == "Hello, world!"
    assert daemon.process is not None and daemon.process.returncode == 0, daemon.output()


def test_twistd_with_reactor_asyncio_and_an_application_importing_the_reactor(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, http_config(app=REACTOR_APP), runner="twistd")
    command = daemon.command
    daemon.command = lambda: [*command()[:3], "--reactor=asyncio", *command()[3:]]  # type: ignore[method-assign]
    with daemon:
        assert httpx.get(daemon.url() + "/reactor").text == "AsyncioSelectorReactor"


def test_check_config_imports_the_application_on_the_gateway_reactor(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(http_config(app=REACTOR_APP))
    result = gateway("check-config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{config}: OK; listeners: web (http)"


def test_worker_and_send_with_an_application_importing_the_reactor(tmp_path: Path, redis: RedisServer) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(layer_config(redis.url))
    out = tmp_path / "jobs.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO), GATEWAY_TEST_WORKER_OUT=str(out))
    log = tmp_path / "worker.log"
    with open(log, "wb") as log_file:
        worker = subprocess.Popen([str(BIN / "gateway"), "worker", "-c", str(config), "jobs"], cwd=REPO, env=env,
                                  stdout=log_file, stderr=subprocess.STDOUT)
    try:
        # The worker says when it starts: which application, channels and layer.
        wait_until(lambda: "Worker started" in log.read_text(), timeout=30, what="the worker's start line")
        line = next(text for text in log.read_text().splitlines() if "Worker started" in text)
        assert line.endswith(f"Worker started: {REACTOR_APP} on channel(s) jobs of layer 'default' "
                             f"(RedisChannelLayer {redis.url})"), line
        sent = gateway("send", "-c", str(config), "--channel", "jobs", '{"type": "job.run", "job": 7}')
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.strip() == "sent to channel 'jobs'"
        assert sent.stderr == ""
        wait_until(lambda: out.exists() and out.read_text(), timeout=30, what="the worker to run the job")
        assert json.loads(out.read_text()) == {"job": 7, "reactor": "GatewayReactor"}
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(30)
    output = log.read_text()
    assert "Traceback" not in output, output
    assert code == 0, output


def test_send_to_a_group_says_how_many_members_got_it(tmp_path: Path, redis: RedisServer) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(layer_config(redis.url))
    result = gateway("send", "-c", str(config), "--group", "nobody-here", '{"type": "x.y"}')
    assert (result.returncode, result.stdout.strip(), result.stderr) == (
        0, "sent to group 'nobody-here': 0 member(s) (the group has no members)", "")


# -- one clear line when a command fails ---------------------------------------------------


@pytest.mark.parametrize("target", [["--channel", "jobs"], ["--group", "room"]])
def test_send_with_redis_unreachable_exits_1_with_one_line(tmp_path: Path, target: list[str]) -> None:
    port = free_port()  # nothing listens there
    config = tmp_path / "gateway.yaml"
    config.write_text(layer_config(f"redis://127.0.0.1:{port}/0"))
    result = gateway("send", "-c", str(config), *target, '{"type": "x.y"}')
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gateway send: the message was not sent")
    assert f"Redis redis://127.0.0.1:{port}/0 is unavailable" in lines[0]
    assert "Connection refused" in lines[0] or "refused" in lines[0]


def test_send_refuses_the_in_memory_layer_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(http_config())
    result = gateway("send", "-c", str(config), "--group", "room", '{"type": "x.y"}')
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "lives inside one process" in result.stderr and "backend: redis" in result.stderr


def test_send_to_an_unknown_layer_alias_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(http_config())
    result = gateway("send", "-c", str(config), "--layer", "other", "--group", "room", '{"type": "x.y"}')
    assert (result.returncode, result.stderr.strip()) == (
        2, "gateway send: no channel layer 'other' in the configuration (see its layers: section)")


def test_a_reactor_installed_before_gateway_run_is_reported_without_twistd_options(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("from twisted.internet import reactor  # noqa: F401\n")
    env = {"PYTHONPATH": f"{site}{os.pathsep}{REPO}"}
    probe = subprocess.run([sys.executable, "-c", "import sys; print('twisted.internet.reactor' in sys.modules)"],
                           capture_output=True, text=True, env=dict(os.environ, **env), timeout=60)
    if probe.stdout.strip() != "True":
        pytest.skip("another sitecustomize module takes precedence on this Python")
    config = tmp_path / "gateway.yaml"
    config.write_text(http_config())
    environment = dict(os.environ, **env)
    for command in (["run", "-c", str(config)], ["worker", "-c", str(config), "jobs"], ["check-config", str(config)]):
        result = subprocess.run([str(BIN / "gateway"), *command], capture_output=True, text=True, cwd=REPO,
                                env=environment, timeout=60)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"gateway {command[0]}: {config}: the twisted.internet.")
        assert "--reactor" not in result.stderr  # an option of twistd, not of the gateway commands
        assert "sitecustomize" in result.stderr


# -- small commands ------------------------------------------------------------------------


def test_version_option() -> None:
    from gateway import __version__

    result = gateway("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"gateway {__version__}")


def test_hash_password_without_stdin_on_a_pipe_says_to_use_stdin() -> None:
    result = gateway("hash-password", input="secret\n")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'gateway hash-password: standard input is not a terminal: to read the password from it, use --stdin '
        '(echo "$PASSWORD" | gateway hash-password --stdin)']
    hashed = gateway("hash-password", "--stdin", input="secret\n")
    assert hashed.returncode == 0 and hashed.stdout.startswith("scrypt$")


def test_twistd_without_a_configuration_exits_2() -> None:
    result = subprocess.run([str(BIN / "twistd"), "--nodaemon", "--pidfile=", "gateway"], capture_output=True,
                            text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "twistd gateway: the configuration file is required: twistd -n gateway -c conf/gateway.yaml"


def test_a_yaml_syntax_error_says_what_to_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("application: tests.apps:app\nlisteners:\n  - name: web\n    protocol: http\n  endpoint: tcp:0\n")
    result = gateway("check-config", str(bad))
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{bad}:5: not valid YAML: the indentation of this line does not match the lines above it")
    assert "the YAML parser says" in first
    run = gateway("run", "-c", str(bad))
    assert run.returncode == 2 and run.stderr.splitlines()[0] == first
