"""Figures for a real meeting, in Debian's Chromium on loopback:

- the time from the Join click to the first remote video frame, over N tries
  (with the lobby turned off by the host, so that a host's reaction is not timed);
- the server's CPU share while three people are in a meeting.

With `--guest-browser firefox`, the guests who join are Firefox ESR pages in a
network namespace, reaching the server over a veth pair (as in the tests), and
only the join figure is measured.

Run: .venv/bin/python bench/meeting_figures.py [--tries 10] [--seconds 30]
     [--guest-browser chromium|firefox]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.proc import cpu_seconds  # noqa: E402
from playwright.sync_api import Browser, Playwright, sync_playwright  # noqa: E402
from tests.e2e.firefox import (  # noqa: E402
    FirefoxBrowser,
    FirefoxParticipant,
    VirtualDisplay,
)
from tests.e2e.netns import Namespace  # noqa: E402
from tests.e2e.participant import CHROMIUM_ARGS, Participant, Person, Server  # noqa: E402
from tests.e2e.server_process import start_server  # noqa: E402

FIRST_FRAME_JS = """() => new Promise((resolve) => {
  const look = () => {
    const video = [...document.querySelectorAll('.tile:not(.self) video')]
      .find((v) => v.videoWidth > 0);
    if (video) resolve(performance.now()); else setTimeout(look, 5);
  };
  look();
})"""


def time_joins(host: Person, link: str, tries: int, new_guest: Callable[[str], Person]) -> None:
    """Join `tries` times and print the time from the click to the first remote frame."""
    # Measure joining itself, not how quickly a host admits from the lobby.
    host.client_call("hostAct", "lobby", None, {"on": False})
    latencies = []
    for attempt in range(tries):
        guest = new_guest(f"Guest {attempt}")
        guest.open(link)
        guest.fill("#name", guest.name)
        guest.wait_for("#join:not([disabled])")
        clicked = guest.evaluate(
            "() => { const t = performance.now(); document.querySelector('#join').click();"
            " return t; }"
        )
        first_frame = guest.evaluate(FIRST_FRAME_JS)
        latencies.append((first_frame - clicked) / 1000)
        guest.close()
        time.sleep(1)
    print(f"join to first remote frame over {len(latencies)} tries: "
          f"median {statistics.median(latencies):.3f} s, "
          f"min {min(latencies):.3f} s, max {max(latencies):.3f} s")


def chromium_host(playwright: Playwright, server: Server) -> tuple[Browser, Participant, str]:
    """Chromium, and in it the host of a new meeting, joined; returns the link too."""
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
    host = Participant(browser, server, "Host")
    link = host.create_meeting()
    host.join()
    return browser, host, link


def firefox_joins(tries: int) -> None:
    namespace = Namespace.create("b")
    display = VirtualDisplay()
    process, server = start_server("bench-lan-server.log", host=namespace.host_address)
    firefox = FirefoxBrowser(Path("test-artifacts/bench-firefox-driver.log"),
                             prefix=namespace.prefix, display=display.name)
    try:
        with sync_playwright() as playwright:
            browser, host, link = chromium_host(playwright, server)
            print(f"guests in {firefox.version}, in a network namespace")
            time_joins(host, link, tries, lambda name: FirefoxParticipant(firefox, server, name))
            browser.close()
    finally:
        firefox.close()
        process.terminate()
        process.wait(timeout=10)
        display.close()
        namespace.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--guest-browser", choices=("chromium", "firefox"), default="chromium")
    args = parser.parse_args()
    if args.guest_browser == "firefox":
        firefox_joins(args.tries)
        return
    process, server = start_server("bench-server.log")
    try:
        with sync_playwright() as playwright:
            browser, host, link = chromium_host(playwright, server)
            time_joins(host, link, args.tries, lambda name: Participant(browser, server, name))

            second = Participant(browser, server, "Second")
            second.join(link)
            third = Participant(browser, server, "Third")
            third.join(link)
            for person in (host, second, third):
                others = {p.self_id for p in (host, second, third) if p is not person}
                person.wait_for_playing(others)
            start_cpu, start = cpu_seconds(process.pid), time.monotonic()
            time.sleep(args.seconds)
            used, elapsed = cpu_seconds(process.pid) - start_cpu, time.monotonic() - start
            metrics = server.metrics()
            forwarded = metrics.get('confide_media_events_total{event="rtp_forwarded"}', 0)
            print(f"server CPU during a three-person meeting: {100 * used / elapsed:.1f}% "
                  f"of one core over {elapsed:.0f} s; {forwarded} RTP packets forwarded in all")
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
