"""Figures for a real meeting on loopback, in Debian's Chromium:

- the time from the Join click to the first remote video frame, over N tries
  (with the lobby turned off by the host, so that a host's reaction is not timed);
- the server's CPU share while three people are in a meeting.

Run: .venv/bin/python bench/meeting_figures.py [--tries 10] [--seconds 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.proc import cpu_seconds  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from tests.e2e.conftest import start_server  # noqa: E402
from tests.e2e.participant import CHROMIUM_ARGS, Participant  # noqa: E402

FIRST_FRAME_JS = """() => new Promise((resolve) => {
  const look = () => {
    const video = [...document.querySelectorAll('.tile:not(.self) video')]
      .find((v) => v.videoWidth > 0);
    if (video) resolve(performance.now()); else setTimeout(look, 5);
  };
  look();
})"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    process, server = start_server("bench-server.log")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            host = Participant(browser, server, "Host")
            link = host.create_meeting()
            host.join()
            # Measure joining itself, not how quickly a host admits from the lobby.
            host.client_call("hostAct", "lobby", None, {"on": False})
            latencies = []
            for attempt in range(args.tries):
                guest = Participant(browser, server, f"Guest {attempt}")
                guest.open(link)
                guest.page.get_by_label("Your name").fill(guest.name)
                guest.page.wait_for_function("() => !document.querySelector('#join').disabled")
                clicked = guest.page.evaluate(
                    "() => { const t = performance.now(); document.querySelector('#join').click();"
                    " return t; }"
                )
                first_frame = guest.page.evaluate(FIRST_FRAME_JS)
                latencies.append((first_frame - clicked) / 1000)
                guest.close()
                time.sleep(1)
            print(f"join to first remote frame over {len(latencies)} tries: "
                  f"median {statistics.median(latencies):.3f} s, "
                  f"min {min(latencies):.3f} s, max {max(latencies):.3f} s")

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
