"""``workers: N``: a supervisor binds the sockets, N worker processes serve them.

Real processes throughout: the daemon (``gateway run``), its workers, a redis-server each test
module starts, paho MQTT clients, WebSockets, wrk when it is installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.daemon import REPO, Daemon, wait_until
from tests.unit.layers.redis_server import REDIS_SERVER, RedisServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(REDIS_SERVER is None, reason="needs redis-server"),
]


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


def config(redis: RedisServer, workers: int | str = 2, *, app: str = "tests.apps:app", extra: str = "",
           listeners: str = "", endpoint: str = "tcp:0:interface=127.0.0.1") -> str:
    return f"""
application: {app}
workers: {workers}
layers:
  default: {{backend: redis, hosts: ["{redis.url}"]}}
{extra}
listeners:
  - name: web
    protocol: http
    endpoint: "{endpoint}"
  - name: admin
    protocol: admin
    endpoint: "tcp:0:interface=127.0.0.1"
{listeners}
logging: {{level: info}}
"""


def worker_pids(daemon: Daemon) -> list[int]:
    """The supervisor's live children (its workers)."""
    assert daemon.process is not None
    try:
        text = Path(f"/proc/{daemon.process.pid}/task/{daemon.process.pid}/children").read_text()
    except OSError:
        return []
    return [int(pid) for pid in text.split()]


def metric(daemon: Daemon, name: str, **labels: str) -> float | None:
    """One sample of the admin listener's /metrics."""
    text = httpx.get(daemon.url("admin") + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        series, _, rest = head.partition("{")
        if series != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(found.get(key) == wanted for key, wanted in labels.items()):
            return float(value)
    return None


def pid_of(url: str) -> int:
    with httpx.Client() as client:  # a new connection each time
        return int(client.get(url + "/pid", timeout=10).text)


# -- configuration -------------------------------------------------------------------------


def test_in_memory_layer_is_refused_by_check_config_and_run(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("""
application: tests.apps:app
workers: 2
layers:
  default: {backend: memory}
listeners:
  - {name: web, protocol: http, endpoint: "tcp:0:interface=127.0.0.1"}
""")
    for command in (["check-config", str(path)], ["run", "-c", str(path)]):
        done = subprocess.run([os.sys.executable, "-m", "gateway", *command], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert "layers.default" in done.stderr and "backend: redis" in done.stderr and "workers: 1" in done.stderr
    # No layer at all means the in-memory default: refused too; --workers on the command line as well.
    path.write_text("""
application: tests.apps:app
listeners:
  - {name: web, protocol: http, endpoint: "tcp:0:interface=127.0.0.1"}
""")
    done = subprocess.run([os.sys.executable, "-m", "gateway", "run", "-c", str(path), "--workers", "2"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "in-memory" in done.stderr and "Redis layer" in done.stderr


def test_mqtt_broker_without_a_shared_store_is_refused(tmp_path: Path, redis: RedisServer) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(config(redis, listeners='  - {name: mqtt, protocol: mqtt, endpoint: "tcp:0"}\n'))
    done = subprocess.run([os.sys.executable, "-m", "gateway", "check-config", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "broker.store: redis" in done.stderr


# -- serving, spreading, readiness, metrics ---------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, redis: RedisServer) -> Iterator[Daemon]:
    with Daemon(tmp_path_factory.mktemp("workers"), config(redis)) as running:
        yield running


def test_the_supervisor_does_not_import_the_application(tmp_path: Path, redis: RedisServer) -> None:
    imported = tmp_path / "imported"
    with Daemon(tmp_path, config(redis), env={"GATEWAY_TEST_IMPORTED": str(imported)}) as daemon:
        assert daemon.process is not None
        pids = {int(line) for line in imported.read_text().split()}
        assert pids == set(worker_pids(daemon))
        assert daemon.process.pid not in pids


def test_every_worker_serves_once_ready(daemon: Daemon) -> None:
    assert len(worker_pids(daemon)) == 2
    # READY=1 came once both served: both answer at once.
    seen = {pid_of(daemon.url()) for _ in range(40)}
    assert seen == set(worker_pids(daemon))
    assert httpx.get(daemon.url("admin") + "/readyz").status_code == 200


def test_a_burst_of_connections_is_spread_evenly(daemon: Daemon) -> None:
    counts: Counter[int] = Counter()
    lock = threading.Lock()

    def connect(n: int) -> None:
        for _ in range(n):
            pid = pid_of(daemon.url())
            with lock:
                counts[pid] += 1

    threads = [threading.Thread(target=connect, args=(25,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(counts.values()) == 200
    assert len(counts) == 2
    assert max(counts.values()) <= 140, counts  # no worker takes most of them (SO_REUSEPORT)


def test_metrics_add_the_workers_up(daemon: Daemon) -> None:
    before = metric(daemon, "gateway_http_requests_total", listener="web", http_version="1.x") or 0
    for _ in range(30):
        assert httpx.get(daemon.url() + "/hello").status_code == 200
    # A scrape asks every worker for its numbers first (no waiting for the next heartbeat; on a
    # loaded machine a worker may take longer than the second a scrape waits, hence the retry).
    wait_until(lambda: (metric(daemon, "gateway_http_requests_total", listener="web", http_version="1.x") or 0)
               >= before + 30, what="the requests counted")
    assert metric(daemon, "gateway_workers") == 2
    assert metric(daemon, "gateway_worker_up", worker="0") == 1
    assert metric(daemon, "gateway_worker_up", worker="1") == 1
    assert metric(daemon, "gateway_ready") == 1
    # The status page gets one row per worker besides the totals.
    from websockets.sync.client import connect

    with connect(daemon.url("admin", "ws") + "/ws", proxy=None, open_timeout=10) as ws:
        hello = json.loads(ws.recv(timeout=10))
        sample = json.loads(ws.recv(timeout=10))["sample"]
    assert "history" in hello
    assert [row["worker"] for row in sample["workers"]] == [0, 1]
    assert all(row["state"] == "serving" for row in sample["workers"])
    assert sample["protocols"]["http"]["connections"] >= 30


# -- supervision ----------------------------------------------------------------------------


def test_a_killed_worker_loses_only_its_connections_and_comes_back(tmp_path: Path, redis: RedisServer) -> None:
    with Daemon(tmp_path, config(redis)) as daemon:
        before = metric(daemon, "gateway_http_requests_total", listener="web", http_version="1.x") or 0
        stop = threading.Event()
        failures: list[int] = []  # the pid each failed connection was talking to
        served: Counter[int] = Counter()
        answered: set[str] = set()  # the clients that got an answer (their connection's pid is known)
        lock = threading.Lock()

        def client() -> None:
            current: int | None = None
            http = httpx.Client(timeout=30)
            while not stop.is_set():
                try:
                    pid = int(http.get(daemon.url() + "/pid").text)
                except httpx.HTTPError:
                    with lock:
                        failures.append(current or 0)
                    http.close()
                    http = httpx.Client(timeout=30)
                    current = None
                    continue
                current = pid
                with lock:
                    served[pid] += 1
                    answered.add(threading.current_thread().name)
            http.close()

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        try:
            old = worker_pids(daemon)
            wait_until(lambda: all(served[pid] > 20 for pid in old) and len(answered) == len(threads),
                       what="both workers under load, every client connected")
            victim, survivor = old
            os.kill(victim, signal.SIGKILL)
            replacement = wait_until(lambda: [pid for pid in worker_pids(daemon) if pid not in old], timeout=20,
                                     what="a new worker")[0]
            wait_until(lambda: served[replacement] > 20, timeout=20, what="the new worker serving")
            count = served[survivor]
            wait_until(lambda: served[survivor] > count + 20, what="the other worker still serving")
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert set(failures) <= {victim}, failures  # only the killed worker's connections failed
        assert metric(daemon, "gateway_worker_restarts_total", worker="0") + metric(
            daemon, "gateway_worker_restarts_total", worker="1") == 1
        wait_until(lambda: httpx.get(daemon.url("admin") + "/readyz").status_code == 200, what="ready again")
        # The counters of the killed worker are kept: the total never goes back.
        assert (metric(daemon, "gateway_http_requests_total", listener="web", http_version="1.x") or 0) >= before
        assert "was killed by SIGKILL" in daemon.output()


def test_readyz_says_not_ready_while_a_worker_does_not_answer(tmp_path: Path, redis: RedisServer) -> None:
    with Daemon(tmp_path, config(redis)) as daemon:
        assert httpx.get(daemon.url("admin") + "/readyz").status_code == 200
        stuck = worker_pids(daemon)[0]
        os.kill(stuck, signal.SIGSTOP)
        try:
            answer = wait_until(lambda: _not_ready(daemon), timeout=20, what="/readyz saying not ready")
            assert any("has not answered" in reason for reason in answer["reasons"]), answer
            assert metric(daemon, "gateway_ready") == 0
        finally:
            os.kill(stuck, signal.SIGCONT)
        wait_until(lambda: httpx.get(daemon.url("admin") + "/readyz").status_code == 200, timeout=20, what="ready again")


def _not_ready(daemon: Daemon) -> dict[str, Any] | None:
    answer = httpx.get(daemon.url("admin") + "/readyz", timeout=10)
    return answer.json() if answer.status_code == 503 else None


def test_a_hung_worker_is_killed_and_replaced(tmp_path: Path, redis: RedisServer) -> None:
    extra = "supervisor: {heartbeat_timeout: 2s}"
    with Daemon(tmp_path, config(redis, extra=extra)) as daemon:
        hung, other = worker_pids(daemon)
        os.kill(hung, signal.SIGSTOP)  # its event loop stops answering
        try:
            wait_until(lambda: hung not in worker_pids(daemon), timeout=20, what="the hung worker killed")
        finally:
            try:
                os.kill(hung, signal.SIGCONT)
            except ProcessLookupError:
                pass
        wait_until(lambda: len(worker_pids(daemon)) == 2, timeout=20, what="a replacement")
        assert other in worker_pids(daemon)
        assert "has not answered" in daemon.output()


# -- reload, stop ---------------------------------------------------------------------------


def test_reload_under_load_fails_no_request(tmp_path: Path, redis: RedisServer) -> None:
    with Daemon(tmp_path, config(redis)) as daemon:
        stop = threading.Event()
        errors: list[str] = []
        statuses: Counter[int] = Counter()
        pids: set[int] = set()
        lock = threading.Lock()

        def client() -> None:
            with httpx.Client(timeout=30) as http:  # keep-alive
                while not stop.is_set():
                    try:
                        answer = http.get(daemon.url() + "/pid")
                    except httpx.HTTPError as exc:
                        with lock:
                            errors.append(repr(exc))
                        continue
                    with lock:
                        statuses[answer.status_code] += 1
                        pids.add(int(answer.text))

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        try:
            old = set(worker_pids(daemon))
            wait_until(lambda: sum(statuses.values()) > 200, what="load")
            daemon.reload(daemon.config_path.read_text())
            # The old workers drain (idle keep-alive connections get Connection: close), then exit.
            wait_until(lambda: not (old & set(worker_pids(daemon))), what="the old workers gone")
            new = set(worker_pids(daemon))
            wait_until(lambda: new <= pids, what="the new workers serving the clients")
            count = sum(statuses.values())
            wait_until(lambda: sum(statuses.values()) > count + 200, what="more load after the reload")
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert errors == []
        assert set(statuses) == {200}
        assert not (old & new)


def test_reload_answers_keep_alive_clients_with_connection_close(tmp_path: Path, redis: RedisServer) -> None:
    """The replaced worker does not close a keep-alive connection under a client that may be
    sending: its next request is answered, with Connection: close. One that stays idle is closed."""
    import http.client

    with Daemon(tmp_path, config(redis)) as daemon:
        host, port = daemon.addresses["web"].rsplit(":", 1)
        busy = http.client.HTTPConnection(host, int(port), timeout=10)
        idle = http.client.HTTPConnection(host, int(port), timeout=10)
        for conn in (busy, idle):
            conn.request("GET", "/pid")
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 200 and answer.getheader("connection") != "close"
        daemon.signal(signal.SIGHUP)
        closing: list[str] = []

        def next_answer() -> bool:
            busy.request("GET", "/pid")  # raises if the connection was closed under us
            answer = busy.getresponse()
            answer.read()
            assert answer.status == 200
            if answer.getheader("connection") == "close":
                closing.append(answer.getheader("connection") or "")
                return True
            time.sleep(0.05)
            return False

        wait_until(next_answer, timeout=30, what="an answer with Connection: close")
        assert idle.sock is not None
        idle.sock.settimeout(30)
        assert idle.sock.recv(1) == b""  # the idle one was closed: no request raced it
        busy.close()
        idle.close()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk")
def test_reload_under_wrk_gives_no_error_and_no_non_2xx(tmp_path: Path, redis: RedisServer) -> None:
    with Daemon(tmp_path, config(redis)) as daemon:
        wrk = subprocess.Popen(["wrk", "-t2", "-c32", "-d6s", daemon.url() + "/hello"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: (metric(daemon, "gateway_http_requests_total", listener="web", http_version="1.x")
                                or 0) > 1000, what="wrk running")
            old = set(worker_pids(daemon))
            daemon.reload(daemon.config_path.read_text())
            wait_until(lambda: not (old & set(worker_pids(daemon))), what="the old workers gone")
            output, _ = wrk.communicate(timeout=60)
        finally:
            if wrk.poll() is None:
                wrk.kill()
                wrk.wait()
        assert "requests in" in output, output
        assert "Socket errors" not in output, output
        assert "Non-2xx" not in output, output


def test_reload_with_an_application_that_fails_keeps_the_running_workers(tmp_path: Path, redis: RedisServer) -> None:
    with Daemon(tmp_path, config(redis)) as daemon:
        old = set(worker_pids(daemon))
        text = config(redis).replace("tests.apps:app", "tests.apps:no_such_app")
        line = daemon.reload(text)
        assert "listening web=" in line
        assert set(worker_pids(daemon)) == old
        assert httpx.get(daemon.url() + "/hello").status_code == 200
        assert "did not start" in daemon.output() or "before it served" in daemon.output()


def test_reload_adds_a_listener(tmp_path: Path, redis: RedisServer) -> None:
    with Daemon(tmp_path, config(redis)) as daemon:
        extra = '  - {name: more, protocol: http, endpoint: "tcp:0:interface=127.0.0.1"}\n'
        daemon.reload(config(redis, listeners=extra))
        assert "more" in daemon.addresses
        seen = {pid_of(daemon.url("more")) for _ in range(30)}
        assert seen == set(worker_pids(daemon))
        daemon.reload(config(redis))
        assert "more" not in daemon.addresses


def test_sigterm_drains_every_worker(tmp_path: Path, redis: RedisServer) -> None:
    started = tmp_path / "slow-started"
    daemon = Daemon(tmp_path, config(redis), env={"GATEWAY_TEST_SLOW_STARTED": str(started)}).start()
    try:
        results: list[httpx.Response] = []
        thread = threading.Thread(target=lambda: results.append(httpx.get(daemon.url() + "/slow?s=1", timeout=20)))
        thread.start()
        wait_until(started.exists, what="the slow request to reach the application")
        children = worker_pids(daemon)
        daemon.signal(signal.SIGTERM)
        thread.join(20)
        assert results[0].text == "slow done"
        assert daemon.wait(30) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in children)
    finally:
        daemon.stop()


def test_second_sigterm_forces_every_worker(tmp_path: Path, redis: RedisServer) -> None:
    started = tmp_path / "slow-started"
    daemon = Daemon(tmp_path, config(redis), env={"GATEWAY_TEST_SLOW_STARTED": str(started)}).start()
    try:
        thread = threading.Thread(target=lambda: _ignore_errors(lambda: httpx.get(daemon.url() + "/slow?s=30", timeout=40)))
        thread.start()
        wait_until(started.exists, what="the slow request to reach the application")
        daemon.signal(signal.SIGTERM)
        wait_until(lambda: "Stopping" in daemon.output(), what="the drain")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(20) == 3
        thread.join(20)
    finally:
        daemon.stop()


def _ignore_errors(call: Any) -> None:
    try:
        call()
    except httpx.HTTPError:
        pass


def test_unix_endpoint_is_shared_by_the_workers(tmp_path: Path, redis: RedisServer) -> None:
    path = tmp_path / "web.sock"
    with Daemon(tmp_path, config(redis, endpoint=f"unix:{path}:mode=600")) as daemon:
        transport = httpx.HTTPTransport(uds=str(path))
        seen: set[int] = set()
        for _ in range(60):
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as client:
                seen.add(int(client.get("http://gateway/pid").text))
        transport.close()
        assert seen <= set(worker_pids(daemon)) and seen
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        daemon.reload(daemon.config_path.read_text())  # replaced workers leave the file alone
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as client:
            assert client.get("http://gateway/hello").status_code == 200
    assert not path.exists()


# -- acting as one through the channel layer -------------------------------------------------


def test_websocket_group_spans_workers(tmp_path: Path, redis: RedisServer) -> None:
    from websockets.sync.client import connect

    with Daemon(tmp_path, config(redis, app="tests.layer_apps:app")) as daemon:
        url = f"ws://{daemon.addresses['web']}/ws?group=room"
        sockets: dict[str, Any] = {}  # by the prefix of the channel name: one layer per process
        opened = []
        with contextlib.ExitStack() as stack:
            for _ in range(40):
                ws = stack.enter_context(connect(url, proxy=None, open_timeout=10))
                opened.append(ws)
                hello = json.loads(ws.recv(timeout=10))
                sockets.setdefault(hello["channel"].split("!")[0], (ws, hello["channel"]))
                if len(sockets) == 2:
                    break
            assert len(sockets) == 2, "all WebSockets landed on one worker"
            (one, one_channel), (two, two_channel) = sockets.values()
            answer = httpx.post(daemon.url() + "/send?group=room", json={"type": "stream.message", "text": "all"})
            assert answer.status_code == 200
            for ws in opened:
                assert json.loads(ws.recv(timeout=10)) == {"type": "stream.message", "text": "all"}
            # From a socket on one worker to the channel of a socket on the other.
            one.send(json.dumps({"to": two_channel, "message": {"type": "stream.message", "from": "one"}}))
            assert json.loads(one.recv(timeout=10)) == {"sent": True}
            assert json.loads(two.recv(timeout=10)) == {"type": "stream.message", "from": "one"}
            # gateway send reaches the group through the same layer.
            done = subprocess.run([os.sys.executable, "-m", "gateway", "send", "-c", str(daemon.config_path),
                                   "--group", "room", '{"type": "stream.message", "text": "cli"}'],
                                  cwd=REPO, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            for ws in opened:
                assert json.loads(ws.recv(timeout=10)) == {"type": "stream.message", "text": "cli"}


def test_mqtt_subscriber_on_one_worker_gets_a_publish_made_through_another(tmp_path: Path, redis: RedisServer) -> None:
    pytest.importorskip("paho.mqtt.client")
    from tests.integration.test_mqtt_clients import V5, Client

    mqtt = ('  - name: mqtt\n    protocol: mqtt\n    endpoint: "tcp:0:interface=127.0.0.1"\n'
            f'    broker: {{store: redis, redis: "{redis.url}"}}\n')
    with Daemon(tmp_path, config(redis, app="tests.mqtt_apps:http_only_app", listeners=mqtt)) as daemon:

        def per_worker() -> dict[str, float]:
            return {slot: metric(daemon, "gateway_worker_connections_open", worker=slot) or 0 for slot in ("0", "1")}

        subscriber = Client(daemon.addresses["mqtt"], "subscriber", V5)
        publishers: list[Any] = []
        try:
            subscriber.subscribe(("spread/#", 1))
            home = wait_until(lambda: [slot for slot, count in per_worker().items() if count == 1], what="the subscriber")[0]
            other = "1" if home == "0" else "0"
            for number in range(30):
                publishers.append(Client(daemon.addresses["mqtt"], f"publisher-{number}", V5))
                if wait_until(lambda: sum(per_worker().values()) == len(publishers) + 1, what="the connection counted") \
                        and per_worker()[other] >= 1:
                    break
            assert per_worker()[other] >= 1, "every publisher landed on the subscriber's worker"
            for number, publisher in enumerate(publishers):
                publisher.publish(f"spread/{number}", str(number).encode(), 1)
            got = {message.payload for message in subscriber.collect(len(publishers))}
            assert got == {str(number).encode() for number in range(len(publishers))}
        finally:
            for client in [subscriber, *publishers]:
                client.close()


def test_workers_auto_runs_one_per_cpu(tmp_path: Path, redis: RedisServer) -> None:
    with Daemon(tmp_path, config(redis, workers="auto")) as daemon:
        assert metric(daemon, "gateway_workers") == len(os.sched_getaffinity(0))


def test_workers_option_overrides_the_file(tmp_path: Path, redis: RedisServer) -> None:
    daemon = Daemon(tmp_path, config(redis, workers=1))
    command = daemon.command
    daemon.command = lambda: [*command(), "--workers", "2"]  # type: ignore[method-assign]
    with daemon:
        assert len(worker_pids(daemon)) == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_port_in_use_fails_the_start(tmp_path: Path, redis: RedisServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        daemon = Daemon(tmp_path, config(redis, endpoint=f"tcp:{port}:interface=127.0.0.1"))
        daemon.start(expect_ready=False)
        try:
            assert daemon.wait(30) == 1
            assert "Address already in use" in daemon.output()
        finally:
            daemon.stop()


# -- systemd ----------------------------------------------------------------------------------


def test_systemd_socket_activation_with_workers(tmp_path: Path, redis: RedisServer) -> None:
    """A socket passed the way systemd passes it (fd 3, LISTEN_FDS, LISTEN_PID) is served by
    every worker; READY=1 comes from the supervisor once both serve."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    daemon = Daemon(tmp_path, config(redis, endpoint="systemd:domain=INET:index=0"),
                    env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": "gateway.socket"})
    fd = listener.fileno()
    launcher = ("import os, sys; os.dup2(int(sys.argv[2]), 3); os.environ['LISTEN_PID'] = str(os.getpid()); "
                "os.execv(sys.executable, [sys.executable, '-m', 'gateway', 'run', '-c', sys.argv[1]])")
    daemon.command = lambda: [os.sys.executable, "-c", launcher, str(daemon.config_path), str(fd)]  # type: ignore[method-assign]
    daemon.pass_fds = (fd,)
    try:
        daemon.start()
        listener.close()
        seen = {pid_of(f"http://127.0.0.1:{port}") for _ in range(40)}
        assert seen and seen <= set(worker_pids(daemon))
        assert daemon.stop() == 0
    finally:
        listener.close()
        daemon.stop()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_sigterm_to_every_process_at_once_still_drains(tmp_path: Path, redis: RedisServer, loop: str) -> None:
    """systemd's default KillMode=control-group (or Ctrl-C in a terminal) signals the workers too:
    that and the supervisor's own request are one stop, not a forced one. On uvloop too, which
    takes the signal wakeup descriptor Twisted uses to hear of exited children (the supervisor
    itself runs on the standard loop)."""
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    started = tmp_path / "slow-started"
    daemon = Daemon(tmp_path, config(redis, extra=f"loop: {loop}"), env={"GATEWAY_TEST_SLOW_STARTED": str(started)})
    daemon.preexec = os.setsid  # its own process group, as under systemd
    daemon.start()
    try:
        results: list[httpx.Response] = []
        thread = threading.Thread(target=lambda: results.append(httpx.get(daemon.url() + "/slow?s=1", timeout=20)))
        thread.start()
        wait_until(started.exists, what="the slow request to reach the application")
        assert daemon.process is not None
        os.killpg(daemon.process.pid, signal.SIGTERM)
        thread.join(20)
        assert results and results[0].text == "slow done"
        assert daemon.wait(30) == 0
        assert "closing all connections now" not in daemon.output()
    finally:
        daemon.stop()


def test_watchdog_pings_come_from_the_supervisor_only(tmp_path: Path, redis: RedisServer) -> None:
    with Daemon(tmp_path, config(redis), env={"WATCHDOG_USEC": "400000"}) as daemon:
        since = len(daemon.notifications)
        daemon.wait_for("WATCHDOG=1", since=since)
        # Workers never talk to systemd: only the supervisor's pid may (NotifyAccess=main).
        assert "NOTIFY_SOCKET" not in Path(f"/proc/{worker_pids(daemon)[0]}/environ").read_text()


def test_a_worker_that_cannot_start_stops_the_daemon(tmp_path: Path, redis: RedisServer) -> None:
    """The supervisor does not import the application; a worker that cannot (a typo in the
    reference) exits, and the daemon exits 1 instead of restarting it forever at boot."""
    daemon = Daemon(tmp_path, config(redis, app="tests.apps:no_such_app"))
    daemon.start(expect_ready=False)
    try:
        assert daemon.wait(60) == 1
        output = daemon.output()
        assert "no_such_app" in output
        assert "before it served" in output
    finally:
        daemon.stop()


def test_twistd_refuses_several_workers(tmp_path: Path, redis: RedisServer) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(config(redis))
    from tests.integration.daemon import BIN

    done = subprocess.run([str(BIN / "twistd"), "--nodaemon", "--pidfile=", "gateway", "-c", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "gateway run" in done.stderr and "workers: 1" in done.stderr


def test_tls_listener_is_served_by_every_worker(tmp_path: Path, redis: RedisServer) -> None:
    """The supervisor binds the TCP socket; TLS (and its handshake limits) runs in each worker."""
    import ssl

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    key_path, cert_path, ca_path = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    ca.cert_pem.write_to_path(str(ca_path))
    endpoint = f"ssl:0:interface=127.0.0.1:privateKey={key_path}:certKey={cert_path}"
    with Daemon(tmp_path, config(redis, endpoint=endpoint)) as daemon:
        url = f"https://localhost:{daemon.port()}"
        context = ssl.create_default_context(cafile=str(ca_path))
        seen = set()
        for _ in range(40):
            with httpx.Client(verify=context) as client:
                seen.add(int(client.get(url + "/pid").text))
        assert seen == set(worker_pids(daemon))
        assert httpx.get(url + "/scope", verify=context).json()["scheme"] == "https"


def test_reload_moves_a_listener_to_another_port(tmp_path: Path, redis: RedisServer) -> None:
    first, second = _free_port(), _free_port()
    with Daemon(tmp_path, config(redis, endpoint=f"tcp:{first}:interface=127.0.0.1")) as daemon:
        assert pid_of(f"http://127.0.0.1:{first}")
        daemon.reload(config(redis, endpoint=f"tcp:{second}:interface=127.0.0.1"))
        assert daemon.addresses["web"] == f"127.0.0.1:{second}"
        assert {pid_of(f"http://127.0.0.1:{second}") for _ in range(30)} == set(worker_pids(daemon))
        wait_until(lambda: len(worker_pids(daemon)) == 2, what="the replaced workers gone")

        def refused() -> bool:
            try:
                pid_of(f"http://127.0.0.1:{first}")
            except httpx.ConnectError:
                return True
            return False

        wait_until(refused, what="the old port closed")


def test_a_second_daemon_on_the_same_port_is_refused(tmp_path: Path, redis: RedisServer) -> None:
    """SO_REUSEPORT must not let a second daemon share the first one's port."""
    port = _free_port()
    text = config(redis, endpoint=f"tcp:{port}:interface=127.0.0.1")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with Daemon(tmp_path / "one", text):
        second = Daemon(tmp_path / "two", text)
        second.start(expect_ready=False)
        try:
            assert second.wait(30) == 1
            assert "Address already in use" in second.output()
        finally:
            second.stop()


def test_reload_changes_a_listeners_endpoint_on_the_same_port(tmp_path: Path, redis: RedisServer) -> None:
    port = _free_port()
    with Daemon(tmp_path, config(redis, endpoint=f"tcp:{port}:interface=127.0.0.1")) as daemon:
        daemon.reload(config(redis, endpoint=f"tcp:{port}:interface=127.0.0.1:backlog=64"))
        assert "cannot start listener" not in daemon.output()
        assert {pid_of(f"http://127.0.0.1:{port}") for _ in range(30)} <= set(worker_pids(daemon))
