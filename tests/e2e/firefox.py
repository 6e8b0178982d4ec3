"""Debian's Firefox ESR in the browser tests, driven over WebDriver BiDi.

Playwright cannot drive Debian's `firefox-esr`, so `tests/firefox/driver.mjs`
(puppeteer-core) does, and this module speaks JSON lines to it. The driver and
the browser it starts may run inside a network namespace (see `netns.py`), as a
participant on another host would.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from .participant import Person, Server

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "firefox" / "driver.mjs"
FIREFOX = os.environ.get("CONFIDE_FIREFOX", "/usr/bin/firefox-esr")


class DriverError(RuntimeError):
    """The driver reported that an operation failed in the page or the browser."""


class FirefoxBrowser:
    """One Firefox process; each `new_page` is a private browser context."""

    def __init__(self, log_path: Path, prefix: tuple[str, ...] = (),
                 display: str | None = None, prefs: dict[str, Any] | None = None) -> None:
        """`prefix` runs the driver, e.g. inside a network namespace; with an X
        `display` Firefox runs on it (and can share its screen), else headless."""
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        env = {**os.environ}
        if display:
            env["DISPLAY"] = display
        self._process = subprocess.Popen(
            [*prefix, "node", str(DRIVER)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            cwd=DRIVER.parent, env=env,
        )
        self._lock = threading.Lock()
        self._next_id = 0
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read_lines, daemon=True).start()
        self.version = str(self.call(
            "launch", executable=FIREFOX, headless=display is None, prefs=prefs or {},
            timeout=90))

    def call(self, op: str, timeout: float = 60, **params: Any) -> Any:
        """Run one operation in the driver and return its value."""
        with self._lock:
            self._next_id += 1
            request = {"id": self._next_id, "op": op, **params}
            assert self._process.stdin and self._process.stdout
            self._process.stdin.write((json.dumps(request) + "\n").encode())
            self._process.stdin.flush()
            reply = self._answer_to(self._next_id, timeout)
        if not reply["ok"]:
            raise DriverError(f"{op}: {reply['error']}")
        return reply["value"]

    def _answer_to(self, request_id: int, timeout: float) -> dict[str, Any]:
        """The driver's answer to this request; a late answer to an earlier one is skipped."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no answer from the Firefox driver in {timeout} s") from None
            if not line:
                raise DriverError(f"the Firefox driver exited ({self._process.poll()})")
            reply: dict[str, Any] = json.loads(line)
            if reply.get("id") == request_id:
                return reply

    def _read_lines(self) -> None:
        """One thread reads the driver's output for the browser's whole life."""
        assert self._process.stdout
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put(b"")  # the driver exited

    def new_page(self, width: int = 1280, height: int = 720) -> FirefoxPage:
        return FirefoxPage(self, int(self.call("newPage", width=width, height=height)))

    def close(self) -> None:
        try:
            self.call("close", timeout=20)
        except (DriverError, OSError, TimeoutError):
            pass
        if self._process.stdin:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()


class FirefoxPage:
    """A page, addressed by CSS selectors; `evaluate` takes a JS function's source."""

    def __init__(self, browser: FirefoxBrowser, page_id: int) -> None:
        self._browser = browser
        self._id = page_id

    def _call(self, op: str, timeout: float = 60, **params: Any) -> Any:
        return self._browser.call(op, page=self._id, timeout=timeout, **params)

    def add_init_script(self, source: str) -> None:
        self._call("addInitScript", source=source)

    def goto(self, url: str) -> None:
        self._call("goto", url=url)

    @property
    def url(self) -> str:
        return str(self._call("url"))

    def evaluate(self, function: str, arg: Any = None) -> Any:
        return self._call("evaluate", fn=function, arg=arg)

    def wait_for_function(self, function: str, arg: Any = None, timeout: float = 20) -> Any:
        return self._call("waitForFunction", fn=function, arg=arg,
                          timeout=timeout + 10, wait_ms=int(timeout * 1000))

    def click(self, selector: str) -> None:
        self._call("click", selector=selector)

    def fill(self, selector: str, text: str) -> None:
        self._call("fill", selector=selector, text=text)

    def wait_for_selector(self, selector: str, timeout: float = 20, visible: bool = False) -> None:
        self._call("waitForSelector", selector=selector, visible=visible,
                   timeout=timeout + 10, wait_ms=int(timeout * 1000))

    def screenshot(self, path: Path) -> None:
        self._call("screenshot", path=str(path))

    def console(self) -> list[str]:
        return list(self._call("console"))

    def close(self) -> None:
        self._call("closePage")


class FirefoxParticipant(Person):
    """A person in Firefox: the same actions and readings as a Chromium `Participant`."""

    def __init__(self, browser: FirefoxBrowser, server: Server, name: str,
                 width: int = 1280, height: int = 720) -> None:
        self.server = server
        self.name = name
        self.page = browser.new_page(width, height)

    def click(self, selector: str) -> None:
        self.page.click(selector)

    def fill(self, selector: str, text: str) -> None:
        self.page.fill(selector, text)

    def wait_for(self, selector: str, timeout: float = 20) -> None:
        self.page.wait_for_selector(selector, timeout)

    def screenshot(self, path: Path) -> None:
        self.page.screenshot(path)

    @property
    def console(self) -> list[str]:
        return list(self.page.console())

    def close(self) -> None:
        self.page.close()


class VirtualDisplay:
    """An Xvfb screen: Firefox shares it when a page asks for a screen."""

    def __init__(self, width: int = 1280, height: int = 800) -> None:
        read_end, write_end = os.pipe()
        self._process = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_end), "-screen", "0", f"{width}x{height}x24",
             "-nolisten", "tcp"],
            pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(write_end)
        # Xvfb picks a free display number and writes it once it accepts clients.
        with os.fdopen(read_end) as numbers:
            number = numbers.readline().strip()
        if not number:
            self._process.kill()
            raise RuntimeError("Xvfb did not start")
        self.name = f":{number}"

    def close(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
