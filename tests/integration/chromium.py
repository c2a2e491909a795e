"""Headless Chromium for page tests: Debian's ``/usr/bin/chromium`` driven over the DevTools
protocol (a small CDP client on the ``websockets`` library's sync client).

``Browser(tmp_path).start(url)`` returns a :class:`Page` whose :meth:`Page.evaluate` runs
JavaScript in the page and :meth:`Page.wait_for` polls an expression until it is truthy;
:meth:`Page.set_viewport` emulates a phone or a desktop screen and :meth:`Page.screenshot` saves
a PNG (tests keep theirs under ``tests/artifacts/``, see the ``artifacts`` fixture). Tests using it
are marked ``chromium`` and skipped when the browser is missing (:data:`CHROMIUM`).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)

requires_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")

#: (name, width, height, mobile): the screens pages are checked on, a phone and a desktop.
SCREENS = [("phone", 390, 844, True), ("desktop", 1280, 800, False)]

_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--remote-debugging-port=0", "--remote-allow-origins=*",
]


class Page:
    """One page target."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self._connection = connect(url, max_size=None, open_timeout=10)
        self._ws = self._connection.__enter__()
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a CDP command and return its result (events are skipped)."""
        ident = next(self._ids)
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=20))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})  # type: ignore[no-any-return]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0, what: str | None = None) -> Any:
        """Poll ``expression`` every 100 ms until it is truthy (an exception, say while the page
        is still loading, counts as not yet); return its value."""
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except RuntimeError as exc:
                value = exc
            else:
                if value:
                    return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what or expression} (last value {value!r})")

    def set_viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        """Emulate a screen of ``width`` x ``height`` CSS pixels (``mobile``: a phone's viewport
        rules, touch-sized), then wait until the page has the new size."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=mobile)
        self.wait_for(f"window.innerWidth === {width} && window.innerHeight === {height}",
                      what=f"a {width}x{height} viewport")

    def screenshot(self, path: Path) -> Path:
        """Save what the viewport shows as a PNG at ``path``."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


class Browser:
    """A headless Chromium with its own profile directory under ``tmp``."""

    def __init__(self, tmp: Path) -> None:
        if CHROMIUM is None:
            pytest.skip("chromium is not installed")
        self.profile = tmp / "chromium-profile"
        self.profile.mkdir(exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.pages: list[Page] = []

    def start(self, url: str, width: int = 390, height: int = 844, flags: tuple[str, ...] = ()) -> Page:
        """Start the browser on ``url`` (a phone-sized window by default) and attach to the page
        (``flags``: more command-line switches, such as a certificate to trust)."""
        self.process = subprocess.Popen(
            [CHROMIUM, *_FLAGS, *flags, f"--user-data-dir={self.profile}", f"--window-size={width},{height}", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.05)
        self.port = int(port_file.read_text().split()[0])
        while True:
            targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10).read())
            pages = [t for t in targets if t.get("type") == "page" and "webSocketDebuggerUrl" in t]
            if pages:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("chromium opened no page")
            time.sleep(0.05)
        page = Page(pages[0]["webSocketDebuggerUrl"])
        self.pages.append(page)
        return page

    def stop(self) -> None:
        for page in self.pages:
            try:
                page.close()
            except Exception:
                pass
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
