#!/usr/bin/env python3
"""Run Django Channels' own test files (4.3.2) against the gateway, with only imports changed.

    python bench/channels_suite/run.py                 # rewrite, run, print the counts
    python bench/channels_suite/run.py --pristine      # imports only, no adapted assertions
    python bench/channels_suite/run.py --keep DIR -- -x -k routing   # keep the tree; pytest args

``channels-4.3.2/`` beside this file is an unmodified copy of the ``tests/`` directory of
django/channels at tag 4.3.2 (BSD licence, ``channels-4.3.2/LICENSE``); Channels' PyPI
archive does not ship its tests. The runner copies it to a temporary directory, then:

1. rewrites every ``channels`` import to the gateway's module that offers the same name
   (:data:`IMPORTS`), and the ``INSTALLED_APPS`` entries ``"channels"`` and ``"daphne"`` of
   the sample project to the one app ``"gateway.django"``;
2. unless ``--pristine``: applies :data:`ADAPTATIONS`, the assertions that test behaviour the
   gateway deliberately changes (each is listed in ``docs/consumers.md``, "Differences from
   Channels"; a replacement that no longer matches the source is an error, never skipped);
3. runs pytest (with pytest-django and pytest-asyncio, as Channels' CI does) on everything but
   ``tests/sample_project/tests`` (Selenium), with ``channels`` and ``daphne`` made
   unimportable, so no test can pass through Channels' own code.

The last line printed is ``CHANNELS-SUITE passed=N failed=N errors=N skipped=N total=N``;
the exit status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "channels-4.3.2"

#: Channels module -> the gateway module that offers the same names.
IMPORTS: dict[str, str] = {
    "channels.auth": "gateway.django",
    "channels.db": "gateway.django",
    "channels.sessions": "gateway.django",
    "channels.consumer": "gateway.consumers",
    "channels.generic.http": "gateway.consumers",
    "channels.generic.websocket": "gateway.consumers",
    "channels.exceptions": "gateway.exceptions",
    "channels.layers": "gateway.layers",
    "channels.middleware": "gateway.middleware",
    "channels.security.websocket": "gateway.middleware",
    "channels.routing": "gateway.routing",
    "channels.testing": "gateway.testing",
    "channels": "gateway.layers",  # from channels import DEFAULT_CHANNEL_LAYER
}

#: ``INSTALLED_APPS`` entries: Channels' and Daphne's apps become the gateway's one app.
APPS: dict[str, str | None] = {'"daphne",': '"gateway.django",', '"channels",': None}


@dataclass(frozen=True)
class Adaptation:
    """One assertion about behaviour the gateway changes on purpose."""

    file: str
    old: str
    new: str
    why: str


#: The assertions adapted (``docs/consumers.md``, "Differences from Channels").
ADAPTATIONS: list[Adaptation] = [
    Adaptation(
        "tests/test_routing.py",
        """    # Unmatched root_path in scope
    with pytest.raises(ValueError):
        await router({"type": "http", "path": "/", "root_path": "/root"}, None, None)

    # Invalid matches
    with pytest.raises(ValueError):
        await router({"type": "http", "path": "/nonexistent/"}, None, None)
""",
        """    # Unmatched root_path in scope
    assert await not_found_status(router, {"type": "http", "path": "/", "root_path": "/root"}) == 404

    # Invalid matches
    assert await not_found_status(router, {"type": "http", "path": "/nonexistent/"}) == 404
""",
        "an unmatched HTTP path is answered 404 (Channels raises ValueError: a 500)",
    ),
    Adaptation(
        "tests/test_routing.py",
        """    with pytest.raises(ValueError):
        assert await outer_router(
            {"type": "http", "path": "/number/42/test/3/bla/"}, None, None
        )
    with pytest.raises(ValueError):
        assert await outer_router(
            {"type": "http", "path": "/number/42/blub/"}, None, None
        )
""",
        """    assert await not_found_status(outer_router, {"type": "http", "path": "/number/42/test/3/bla/"}) == 404
    assert await not_found_status(outer_router, {"type": "http", "path": "/number/42/blub/"}) == 404
""",
        "an unmatched HTTP path is answered 404 (nested routers)",
    ),
    Adaptation(
        "tests/test_routing.py",
        """    # Invalid matches
    with pytest.raises(ValueError):
        await router({"type": "http", "path": "/nonexistent/"}, None, None)


@pytest.mark.asyncio
async def test_path_remaining():""",
        """    # Invalid matches
    assert await not_found_status(router, {"type": "http", "path": "/nonexistent/"}) == 404


@pytest.mark.asyncio
async def test_path_remaining():""",
        "an unmatched HTTP path is answered 404 (path() routes)",
    ),
    Adaptation(
        "tests/test_routing.py",
        """    with pytest.raises(ValueError):
        await outermost_router(
            {"type": "http", "path": "/root/root/prefix/stuff/", "root_path": "/root"},
            None,
            None,
        )

    with pytest.raises(ValueError):
        await outermost_router(
            {"type": "http", "path": "/root/prefix/root/stuff/", "root_path": "/root"},
            None,
            None,
        )
""",
        """    assert await not_found_status(
        outermost_router, {"type": "http", "path": "/root/root/prefix/stuff/", "root_path": "/root"}
    ) == 404

    assert await not_found_status(
        outermost_router, {"type": "http", "path": "/root/prefix/root/stuff/", "root_path": "/root"}
    ) == 404
""",
        "an unmatched HTTP path is answered 404 (root_path)",
    ),
    Adaptation(
        "tests/test_routing.py",
        """def test_invalid_routes():
    \"\"\"
    Test URLRouter route validation
    \"\"\"
    from django.urls import include

    with pytest.raises(ImproperlyConfigured) as exc:
        URLRouter([path("", include([]))])

    assert "include() is not supported in URLRouter." in str(exc)
""",
        """def test_invalid_routes():
    \"\"\"
    Test URLRouter route validation
    \"\"\"
    from django.urls import include

    # The gateway's URLRouter takes include(): the included list is routed as a nested URLRouter.
    router = URLRouter([path("", include([]))])
    assert await_(not_found_status(router, {"type": "http", "path": "/"})) == 404
""",
        "URLRouter accepts include() (a nested URLRouter); Channels raises ImproperlyConfigured",
    ),
    Adaptation(
        "tests/test_http.py",
        """    with pytest.raises(AssertionError):
        await communicator.get_response()
""",
        """    with pytest.raises(ValueError, match="samesite must be either"):
        await communicator.get_response()
""",
        "an invalid SESSION_COOKIE_SAMESITE raises ValueError (Channels: a bare assert, gone under python -O)",
    ),
    Adaptation(
        "tests/test_inmemorychannel.py",
        """    await channel_layer.send("test-channel-2", {"type": "message.2"})
    assert len(channel_layer.channels) == 2
""",
        """    await channel_layer.send("test-channel-2", {"type": "message.2"})
    assert "test-channel-2" in channel_layer.channels
""",
        "expired messages of idle channels are swept by any operation, a send included (Channels: on receive)",
    ),
    Adaptation(
        "tests/test_routing.py",
        """class MockApplication:""",
        """async def not_found_status(router, scope):
    \"\"\"The status the router answers an unmatched HTTP scope with.\"\"\"
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await router(scope, receive, send)
    return sent[0]["status"]


def await_(coroutine):
    import asyncio

    return asyncio.run(coroutine)


class MockApplication:""",
        "helper for the adapted assertions above",
    ),
]


def rewrite_imports(text: str) -> str:
    """Replace every ``channels`` module in import statements with the gateway's module."""

    def module(match: re.Match[str]) -> str:
        return match.group(1) + IMPORTS[match.group(2)] + match.group(3)

    names = "|".join(re.escape(name) for name in sorted(IMPORTS, key=len, reverse=True))
    pattern = re.compile(rf"^(\s*(?:from|import)\s+)({names})(\s)", re.MULTILINE)
    text = pattern.sub(module, text)
    for old, new in APPS.items():
        lines = []
        for line in text.splitlines(keepends=True):
            if line.strip() == old:
                if new is None:
                    continue
                line = line.replace(old, new)
            lines.append(line)
        text = "".join(lines)
    return text


_BLOCK = '''
# Added by bench/channels_suite/run.py: Channels and Daphne must not be importable, so that
# every pass comes from the gateway's code.
import sys as _sys

_sys.modules["channels"] = None
_sys.modules["daphne"] = None
'''


def prepare(destination: Path, pristine: bool) -> list[Adaptation]:
    """Copy the suite to ``destination`` and rewrite it; return the adaptations applied."""
    shutil.copytree(SOURCE / "tests", destination / "tests")
    for path in (destination / "tests").rglob("*.py"):
        path.write_text(rewrite_imports(path.read_text(encoding="utf-8")), encoding="utf-8")
    conftest = destination / "tests" / "conftest.py"
    conftest.write_text(_BLOCK + conftest.read_text(encoding="utf-8"), encoding="utf-8")
    applied: list[Adaptation] = []
    if not pristine:
        for adaptation in ADAPTATIONS:
            path = destination / adaptation.file
            text = path.read_text(encoding="utf-8")
            if text.count(adaptation.old) != 1:
                raise SystemExit(f"adaptation no longer matches {adaptation.file}: {adaptation.why}")
            path.write_text(text.replace(adaptation.old, adaptation.new), encoding="utf-8")
            applied.append(adaptation)
    (destination / "pytest.ini").write_text(
        "[pytest]\n"
        "testpaths = tests\n"
        "asyncio_mode = auto\n"
        "asyncio_default_fixture_loop_scope = function\n"
        "norecursedirs = sample_project\n"
    )
    return applied


def counts(junit: Path) -> dict[str, int]:
    """Totals from pytest's JUnit XML report."""
    root = ElementTree.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    total = int(suite.get("tests", 0))
    failed = int(suite.get("failures", 0))
    errors = int(suite.get("errors", 0))
    skipped = int(suite.get("skipped", 0))
    return {"passed": total - failed - errors - skipped, "failed": failed, "errors": errors,
            "skipped": skipped, "total": total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pristine", action="store_true", help="change imports only; adapt no assertion")
    parser.add_argument("--keep", metavar="DIR", help="build the rewritten suite in DIR and keep it")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="channels-suite-") as scratch:
        work = Path(args.keep) if args.keep else Path(scratch)
        if args.keep and work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        applied = prepare(work, args.pristine)
        junit = work / "junit.xml"
        env = dict(os.environ)
        env.pop("DJANGO_SETTINGS_MODULE", None)
        command = [sys.executable, "-m", "pytest", "-c", str(work / "pytest.ini"), "--rootdir", str(work),
                   "-p", "no:cacheprovider", "-q", f"--junitxml={junit}", *args.pytest_args]
        status = subprocess.call(command, cwd=work, env=env)
        if not junit.exists():
            print("CHANNELS-SUITE no report (pytest could not start)")
            return status or 1
        result = counts(junit)
        print(f"adaptations applied: {len(applied)} (see docs/consumers.md, Differences from Channels)")
        print("CHANNELS-SUITE " + " ".join(f"{key}={value}" for key, value in result.items()))
        return status


if __name__ == "__main__":
    sys.exit(main())
