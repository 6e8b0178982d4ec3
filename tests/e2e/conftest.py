"""Browser tests: a real `confide serve` process, Debian's Chromium with fake
camera, microphone and screen driven by Playwright, and Debian's Firefox ESR in a
network namespace of its own. Media goes over real UDP: on loopback for Chromium,
over a veth pair for Firefox."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from .firefox import FirefoxBrowser, VirtualDisplay
from .netns import Namespace
from .participant import CHROMIUM_ARGS, OPENED, Server
from .server_process import ARTIFACTS, start_server

SUITE_CREATE_RATE = ("--create-rate-per-address", "10/1000")
"""Every meeting of the suite comes from one address; tests/test_abuse.py checks the default."""


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    process, running = start_server("server.log", *SUITE_CREATE_RATE)
    yield running
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    executable = os.environ.get("CONFIDE_CHROMIUM", "/usr/bin/chromium")
    launched = playwright_instance.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def other_host() -> Iterator[Namespace]:
    """A second host on this machine, for browsers that do not pair loopback."""
    namespace = Namespace.create()
    yield namespace
    namespace.close()


@pytest.fixture(scope="session")
def lan_server(other_host: Namespace) -> Iterator[Server]:
    """A server as on a LAN: on the veth address, HTTPS with a self-signed certificate."""
    process, running = start_server(
        "lan-server.log", *SUITE_CREATE_RATE, host=other_host.host_address)
    yield running
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def firefox(other_host: Namespace) -> Iterator[FirefoxBrowser]:
    """Debian's Firefox ESR, in the other host, on a virtual screen it can share."""
    ARTIFACTS.mkdir(exist_ok=True)
    display = VirtualDisplay()
    launched = FirefoxBrowser(ARTIFACTS / "firefox-driver.log", prefix=other_host.prefix,
                              display=display.name)
    yield launched
    launched.close()
    display.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(autouse=True)
def no_false_alarms() -> Iterator[None]:
    """An honest meeting never shows the possible-attack alert: every test fails if
    one of its pages did, unless the test plays an attack and says so."""
    OPENED.clear()
    yield
    raised = {p.name: p.security_alerts for p in OPENED
              if p.security_alerts and not p.expects_alerts}
    OPENED.clear()
    assert not raised, f"possible-attack alerts in an honest meeting: {raised}"
