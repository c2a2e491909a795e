"""The daemon as a process: commands, start-up, lifespan, signals, systemd, twistd."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.daemon import BIN, REPO, Daemon, DaemonFailed, http_config, wait_until

pytestmark = pytest.mark.slow


def gateway(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "gateway"), *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_version_command_and_python_dash_m() -> None:
    from gateway import __version__

    assert gateway("version").stdout.strip() == f"gateway {__version__}"
    result = subprocess.run([sys.executable, "-m", "gateway", "version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"gateway {__version__}"


def test_check_config_accepts_the_bundled_config() -> None:
    result = gateway("check-config", "conf/gateway.yaml")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_config_reports_every_error_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("application: tests.apps:app\nloop: tokio\nlisteners:\n  - name: web\n    protocol: http\n    endpoint: tcp:0\n    colour: blue\n")
    result = gateway("check-config", str(bad))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"{bad}:2: loop: 'tokio' is not one of: asyncio, uvloop"
    assert lines[1].startswith(f"{bad}:7: listeners[0].colour: unknown key")
    assert lines[2] == f"{bad}: 2 problems found"


def test_run_with_an_invalid_config_binds_nothing(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"application: tests.apps:app\nlisteners:\n  - {{name: web, protocol: http, endpoint: 'tcp:{port}:interface=127.0.0.1', oops: 1}}\n")
    result = gateway("run", "-c", str(bad))
    assert result.returncode == 2
    assert "oops: unknown key" in result.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # still free


def test_lifespan_startup_failure_stops_the_daemon_with_the_message(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, http_config(), env={"GATEWAY_TEST_LIFESPAN": "fail"})
    with pytest.raises(DaemonFailed):
        daemon.start(timeout=20)
    code = daemon.wait(20)
    daemon.stop()
    assert code == 1
    assert "Application startup failed: database unreachable: test failure" in daemon.output()
    assert not any("READY=1" in n for n in daemon.notifications)


def test_lifespan_on_with_an_application_that_raises(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, http_config(extra="lifespan: 'on'"), env={"GATEWAY_TEST_LIFESPAN": "raise"})
    with pytest.raises(DaemonFailed):
        daemon.start(timeout=20)
    assert daemon.wait(20) == 1
    daemon.stop()
    assert "RuntimeError: lifespan exploded" in daemon.output()


def test_lifespan_auto_continues_without_lifespan(tmp_path: Path) -> None:
    with Daemon(tmp_path, http_config(), env={"GATEWAY_TEST_LIFESPAN": "raise"}) as daemon:
        assert httpx.get(daemon.url() + "/hello").status_code == 200
    assert "does not support lifespan" in daemon.output()


def _output_on_a_taken_port(tmp_path: Path, endpoint: str) -> tuple[int, str]:
    """Start a daemon whose endpoint (``{port}``: a port in use) cannot bind: its port and output."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = Daemon(tmp_path, http_config(endpoint=endpoint.replace("{port}", str(port))))
        daemon.env.pop("GATEWAY_TEST_WEB_PORT", None)
        with pytest.raises(DaemonFailed):
            daemon.start(timeout=20)
        assert daemon.wait(20) == 1
        daemon.stop()
    return port, daemon.output()


def test_port_in_use_is_a_clear_failure(tmp_path: Path) -> None:
    port, output = _output_on_a_taken_port(tmp_path, "tcp:{port}:interface=127.0.0.1")
    assert f"Cannot listen on web (tcp:{port}:interface=127.0.0.1)" in output
    assert "this endpoint reads" not in output  # a literal port: no variable to name


def test_port_in_use_names_the_variable_the_endpoint_reads(tmp_path: Path) -> None:
    port, output = _output_on_a_taken_port(tmp_path, "tcp:${GATEWAY_TEST_WEB_PORT:-{port}}:interface=127.0.0.1")
    assert f"Cannot listen on web (tcp:{port}:interface=127.0.0.1)" in output
    assert "Address already in use" in output
    assert "this endpoint reads GATEWAY_TEST_WEB_PORT: set GATEWAY_TEST_WEB_PORT=... to choose another port" in output


def test_the_bundled_configuration_names_its_port_variables(tmp_path: Path) -> None:
    """The README's advice (GATEWAY_PORT=8080 make run) is what the error says, for each port."""
    from gateway.config import load_config

    config = load_config(REPO / "conf/gateway.yaml", environ={}, import_applications=False)
    read = {listener.name: listener.environment.get("endpoint") for listener in config.listeners}
    assert read == {"web": ("GATEWAY_PORT",), "mqtt": ("GATEWAY_MQTT_PORT",), "smtp": ("GATEWAY_SMTP_PORT",),
                    "sms": ("GATEWAY_SMS_PORT",), "admin": ("GATEWAY_ADMIN_PORT",)}


def _slow_started(tmp_path: Path) -> Path:
    """The file ``/slow`` writes to as it starts (``GATEWAY_TEST_SLOW_STARTED``)."""
    return tmp_path / "slow-started"


def _wait_in_flight(tmp_path: Path) -> None:
    wait_until(_slow_started(tmp_path).exists, what="the slow request to reach the application")


def _slow_request(url: str, results: list[object]) -> None:
    try:
        results.append(httpx.get(url, timeout=30))
    except Exception as exc:  # pragma: no cover - reported by the assertion
        results.append(exc)


@pytest.mark.parametrize("runner", ["script", "twistd"])
def test_sigterm_drains_in_flight_requests_then_runs_lifespan_shutdown(tmp_path: Path, runner: str) -> None:
    marker = tmp_path / "shutdown-marker"
    daemon = Daemon(tmp_path, http_config(), runner=runner, env={"GATEWAY_TEST_SHUTDOWN_MARKER": str(marker),
                                                                 "GATEWAY_TEST_SLOW_STARTED": str(_slow_started(tmp_path))}).start()
    try:
        results: list[object] = []
        thread = threading.Thread(target=_slow_request, args=(daemon.url() + "/slow?s=1.5", results))
        thread.start()
        _wait_in_flight(tmp_path)  # the request is in flight
        daemon.signal(signal.SIGTERM)
        daemon.wait_for("STOPPING=1", 10)
        # New connections are refused while draining.
        with pytest.raises(httpx.ConnectError):
            httpx.get(daemon.url() + "/hello", timeout=2)
        thread.join(30)
        assert daemon.wait(30) == 0
    finally:
        daemon.stop()
    response = results[0]
    assert isinstance(response, httpx.Response) and response.status_code == 200 and response.text == "slow done"
    assert marker.read_text() == "shutdown"


@pytest.mark.parametrize("runner", ["script", "twistd"])
def test_second_signal_that_cuts_requests_says_so_and_exits_3(tmp_path: Path, runner: str) -> None:
    daemon = Daemon(tmp_path, http_config(), runner=runner,
                    env={"GATEWAY_TEST_SLOW_STARTED": str(_slow_started(tmp_path))}).start()
    try:
        results: list[object] = []
        thread = threading.Thread(target=_slow_request, args=(daemon.url() + "/slow?s=60", results))
        thread.start()
        _wait_in_flight(tmp_path)
        daemon.signal(signal.SIGINT)
        daemon.wait_for("STOPPING=1", 10)
        daemon.signal(signal.SIGINT)
        # Stopped although the request (60 s) and the default drain (30 s) would keep it longer.
        assert daemon.wait(20) == 3
        thread.join(10)
    finally:
        daemon.stop()
    output = daemon.output()
    assert "closing all connections now" in output
    assert "Forced stop: 1 connection(s) were cut before they finished; exiting with status 3" in output
    assert not isinstance(results[0], httpx.Response)  # the request was indeed cut


def test_second_signal_with_nothing_in_flight_exits_0(tmp_path: Path) -> None:
    marker = tmp_path / "shutdown-marker"
    daemon = Daemon(tmp_path, http_config(extra="timeouts: {drain: 1s}"),
                    env={"GATEWAY_TEST_SHUTDOWN_MARKER": str(marker), "GATEWAY_TEST_SHUTDOWN_DELAY": "2"}).start()
    try:
        daemon.signal(signal.SIGTERM)
        # Lifespan shutdown is under way (it takes 2 s): the daemon is still running.
        wait_until(Path(str(marker) + ".started").exists, what="lifespan shutdown to start")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(20) == 0
    finally:
        daemon.stop()
    output = daemon.output()
    assert "closing all connections now" in output
    assert "Forced stop" not in output


def test_drain_timeout_closes_stragglers(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, http_config(extra="timeouts: {drain: 1s}"),
                    env={"GATEWAY_TEST_SLOW_STARTED": str(_slow_started(tmp_path))}).start()
    try:
        results: list[object] = []
        thread = threading.Thread(target=_slow_request, args=(daemon.url() + "/slow?s=60", results))
        thread.start()
        _wait_in_flight(tmp_path)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(20) == 0  # the request would take 60 s: the 1 s drain cut it short
        thread.join(10)
    finally:
        daemon.stop()
    assert "did not finish in time" in daemon.output()


def test_twistd_accepts_reactor_asyncio(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(http_config())
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([str(BIN / "twistd"), "--nodaemon", "--pidfile=", "--reactor=asyncio", "gateway", "-c", str(config)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        out = ""
        assert proc.stdout is not None
        while "Listening: web" not in out and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out += line
        assert "Listening: web" in out, out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_twistd_refuses_another_reactor_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(http_config())
    result = subprocess.run([str(BIN / "twistd"), "--nodaemon", "--pidfile=", "--reactor=poll", "gateway", "-c", str(config)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "asyncio reactor" in lines[0] and "--reactor=asyncio" in lines[0]


def test_twistd_plugin_is_listed() -> None:
    result = subprocess.run([str(BIN / "twistd"), "--help"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert "gateway" in result.stdout and "Multi-protocol ASGI gateway" in result.stdout


def test_systemd_socket_activation(tmp_path: Path) -> None:
    """A socket passed the way systemd passes it (fd 3, LISTEN_FDS, LISTEN_PID) is served."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    config = tmp_path / "gateway.yaml"
    config.write_text(http_config(endpoint="systemd:domain=INET:index=0"))
    env = dict(os.environ, PYTHONPATH=str(REPO), LISTEN_FDS="1", LISTEN_FDNAMES="gateway.socket")
    fd = listener.fileno()
    # What systemd does: the socket as fd 3, LISTEN_FDS=1, LISTEN_FDNAMES and LISTEN_PID=<the service's pid>.
    launcher = ("import os, sys; os.dup2(int(sys.argv[2]), 3); os.environ['LISTEN_PID'] = str(os.getpid()); "
                "os.execv(sys.executable, [sys.executable, '-m', 'gateway', 'run', '-c', sys.argv[1]])")
    proc = subprocess.Popen([sys.executable, "-c", launcher, str(config), str(fd)], cwd=REPO, env=env, pass_fds=(fd,),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    listener.close()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/hello", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert response.text == "Hello, world!"
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out


def test_ready_is_sent_only_after_listening(tmp_path: Path) -> None:
    with Daemon(tmp_path, http_config()) as daemon:
        ready = next(n for n in daemon.notifications if "READY=1" in n)
        assert "STATUS=listening web=127.0.0.1:" in ready
        # READY means the port answers at once.
        assert httpx.get(daemon.url() + "/hello").status_code == 200


def test_watchdog_pings_when_configured(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, http_config(), env={"WATCHDOG_USEC": "400000"}).start()
    try:
        daemon.wait_for("WATCHDOG=1", 5)
    finally:
        daemon.stop()


def test_json_logging(tmp_path: Path) -> None:
    import json

    config = http_config().replace("logging: {level: info}", "logging: {level: info, format: json}")
    with Daemon(tmp_path, config) as daemon:
        httpx.get(daemon.url() + "/hello")
    records = [json.loads(line) for line in daemon.output().splitlines() if line.startswith("{")]
    assert any(r["message"].startswith("Listening: web (http) on 127.0.0.1:") and r["level"] == "info" for r in records)


def test_systemd_endpoint_without_a_passed_socket_fails_clearly(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, http_config(endpoint="systemd:domain=INET:index=0"))
    with pytest.raises(DaemonFailed):
        daemon.start(timeout=20)
    assert daemon.wait(20) == 1
    daemon.stop()
    assert "no socket was passed by systemd" in daemon.output()
