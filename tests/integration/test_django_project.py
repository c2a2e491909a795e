"""A real Django project on the gateway, from ``django-admin startproject`` on (docs/django.md).

The project is generated in a temporary directory; ``tests/integration/django_project/`` holds
the files the walk adds (the Channels tutorial's chat with imports changed, a model, a view
that sends to a group, and the project's own tests). Then, over real sockets:

* ``manage.py rungateway``: admin login with CSRF, static files while ``DEBUG``, a
  session-authenticated WebSocket seeing its user, a sync consumer using the ORM, a Django
  view sending to a group, autoreload after a code change;
* ``manage.py test``: the same consumers under ``gateway.testing``'s communicators;
* ``manage.py check``: a wrong ``ASGI_APPLICATION`` / ``CHANNEL_LAYERS`` reported by Django's
  check framework;
* ``gateway run`` with ``django: {settings: ...}``: ``ASGI_APPLICATION`` is the default
  application.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, wait_until

pytestmark = pytest.mark.slow

pytest.importorskip("django")
httpx = pytest.importorskip("httpx")
websockets_sync = pytest.importorskip("websockets.sync.client")

FILES = Path(__file__).resolve().parent / "django_project"
REPO = Path(__file__).resolve().parents[2]
PASSWORD = "a-long-test-password-17"

SETTINGS = '''
INSTALLED_APPS += ["chat", "gateway.django"]
ASGI_APPLICATION = "mysite.asgi.application"
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
'''

BAD_SETTINGS = '''
from mysite.settings import *  # noqa: F403

ASGI_APPLICATION = "mysite.nowhere.application"
CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hots": ["redis://x"]}}}
'''


def _run(args: list[str], cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DJANGO_SUPERUSER_PASSWORD=PASSWORD)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, **kwargs)  # type: ignore[call-overload, no-any-return]


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("django")
    _ok(_run(["-m", "django", "startproject", "mysite", "."], root))
    _ok(_run(["manage.py", "startapp", "chat"], root))
    for name in ("asgi", "urls"):
        shutil.copy(FILES / f"{name}.py.tmpl", root / "mysite" / f"{name}.py")
    for name in ("models", "consumers", "routing", "views", "tests"):
        shutil.copy(FILES / f"{name}.py.tmpl", root / "chat" / f"{name}.py")
    with open(root / "mysite" / "settings.py", "a") as settings:
        settings.write(SETTINGS)
    (root / "mysite" / "bad_settings.py").write_text(BAD_SETTINGS)
    _ok(_run(["manage.py", "makemigrations", "chat"], root))
    _ok(_run(["manage.py", "migrate"], root))
    _ok(_run(["manage.py", "createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com"], root))
    return root


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def rungateway(project: Path) -> Iterator[str]:
    port = _free_port()
    log = open(project / "rungateway.log", "w")
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    process = subprocess.Popen([sys.executable, "manage.py", "rungateway", f"127.0.0.1:{port}"], cwd=project,
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"127.0.0.1:{port}"

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError("rungateway exited:\n" + (project / "rungateway.log").read_text())
        try:
            return httpx.get(f"http://{base}/version/", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(answers, timeout=60, what="manage.py rungateway")
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the autoreloader and its child
        process.wait(timeout=30)
        log.close()


def _login(client: httpx.Client) -> str:
    """Log in through the admin's form (with its CSRF token); return the session id."""
    page = client.get("/admin/login/")
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token is not None
    refused = client.post("/admin/login/", data={"username": "admin", "password": PASSWORD})
    assert refused.status_code == 403  # no CSRF token: Django's CSRF protection is on
    done = client.post("/admin/login/?next=/admin/", data={
        "csrfmiddlewaretoken": token.group(1), "username": "admin", "password": PASSWORD, "next": "/admin/",
    })
    assert done.status_code == 302 and done.headers["location"] == "/admin/"
    assert "Site administration" in client.get("/admin/").text
    return client.cookies["sessionid"]


def _chat(base: str, path: str, session: str | None) -> object:
    headers = {"Cookie": f"sessionid={session}"} if session else {}
    return websockets_sync.connect(f"ws://{base}{path}", origin=f"http://{base}", additional_headers=headers)


def test_the_tutorial_walk_on_rungateway(project: Path, rungateway: str) -> None:
    base = rungateway
    with httpx.Client(base_url=f"http://{base}", timeout=10) as client:
        session = _login(client)

        static = client.get("/static/admin/css/base.css")
        assert static.status_code == 200 and static.headers["content-type"].startswith("text/css")

        from websockets.exceptions import InvalidStatus

        with pytest.raises(InvalidStatus) as refused:
            _chat(base, "/ws/chat/lobby/", None)
        assert refused.value.response.status_code == 403  # anonymous: the consumer closes

        with _chat(base, "/ws/chat/lobby/", session) as alice:  # type: ignore[attr-defined]
            assert json.loads(alice.recv(timeout=10)) == {"hello": "admin"}
            alice.send(json.dumps({"message": "hello room"}))
            assert json.loads(alice.recv(timeout=10)) == {"message": "hello room", "user": "admin"}

            with _chat(base, "/ws/history/lobby/", session) as history:  # type: ignore[attr-defined]
                assert json.loads(history.recv(timeout=10)) == [{"user": "admin", "message": "hello room"}]

            sent = client.post("/chat/lobby/announce/", data={"message": "from a view"},
                               headers={"X-CSRFToken": client.cookies["csrftoken"]})
            assert sent.status_code == 200 and sent.json() == {"sent": True}
            assert json.loads(alice.recv(timeout=10)) == {"message": "from a view", "user": "announcer:admin"}

        assert client.get("/version/").text == "version 1"
        views = project / "chat" / "views.py"
        views.write_text(views.read_text().replace('"version 1"', '"version 2"'))

        def reloaded() -> bool:
            try:
                return client.get("/version/").text == "version 2"
            except httpx.TransportError:  # between the old process and the new one
                return False

        wait_until(reloaded, timeout=60, interval=0.2, what="the autoreloaded code")


def test_project_tests_use_gateway_testing(project: Path) -> None:
    output = _ok(_run(["manage.py", "test", "chat", "-v", "2"], project))
    assert "Ran 2 tests" in output and "OK" in output


def test_system_checks_report_misconfiguration(project: Path) -> None:
    assert "no issues" in _ok(_run(["manage.py", "check"], project))
    result = _run(["manage.py", "check", "--settings", "mysite.bad_settings"], project)
    assert result.returncode == 1
    assert "gateway.E001" in result.stderr and "mysite.nowhere.application" in result.stderr
    assert "gateway.E002" in result.stderr and "hots" in result.stderr


def test_gateway_run_serves_asgi_application(project: Path, tmp_path: Path) -> None:
    config = """
django: {settings: mysite.settings}
listeners:
  - name: web
    protocol: http
    endpoint: "tcp:0:interface=127.0.0.1"
"""
    env = {"PYTHONPATH": f"{project}{os.pathsep}{REPO}"}
    daemon = Daemon(tmp_path, config, env=env)
    daemon.env.pop("DJANGO_SETTINGS_MODULE", None)
    daemon.start()
    try:
        base = daemon.addresses["web"]
        with httpx.Client(base_url=f"http://{base}", timeout=10) as client:
            session = _login(client)
        with _chat(base, "/ws/chat/other/", session) as ws:  # type: ignore[attr-defined]
            assert json.loads(ws.recv(timeout=10)) == {"hello": "admin"}
    finally:
        daemon.stop()
