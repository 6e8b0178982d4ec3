"""What end-to-end encryption costs, measured in Debian's Chromium on this machine:

- frames per second that SFrame encrypts and decrypts inside a dedicated Worker
  (as the frame transform runs it), at 720p frame sizes (a 60 kB key frame, 6 kB delta frames: about
  1.5 Mbit/s at 30 frames per second);
- the bytes SFrame adds to each frame, from a real meeting's capture;
- the time from someone leaving until every remaining sender's frames are under
  the fresh key, and how many frames failed to decrypt meanwhile.

Run: .venv/bin/python bench/e2ee_cost.py [--leaves 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import sync_playwright  # noqa: E402
from tests.e2e.capture import read_frames  # noqa: E402
from tests.e2e.participant import CHROMIUM_ARGS, Participant  # noqa: E402
from tests.e2e.server_process import start_server  # noqa: E402

from confide.e2ee.sframe import decode_header  # noqa: E402

THROUGHPUT_JS = """async ([seconds, size]) => {
  const worker = new Worker('/bench/sframe_worker_bench.js', { type: 'module' });
  const result = new Promise((resolve) => { worker.onmessage = (event) => resolve(event.data); });
  worker.postMessage({ seconds, size });
  const figures = await result;
  worker.terminate();
  return figures;
}"""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass


def serve_bench_origin() -> tuple[ThreadingHTTPServer, str]:
    """A local origin of its own for the worker benchmark: the client's static files
    and the bench worker, so no benchmark code ships with the web client."""
    root = Path(tempfile.mkdtemp(prefix="confide-bench-origin-"))
    repository = Path(__file__).resolve().parents[1]
    (root / "static").symlink_to(repository / "src" / "confide" / "static")
    (root / "bench").symlink_to(repository / "bench")
    (root / "index.html").write_text("<!doctype html><title>SFrame worker bench</title>")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://localhost:{server.server_address[1]}/"

FAILED_JS = """() => Object.values(window.confideClient._lastStats?.receiving ?? {})
  .reduce((n, s) => n + s.failed, 0)"""


def epochs_after(frames: list, sender: str, since: float) -> list[tuple[float, int]]:
    return [(f.time, decode_header(f.sframe)[0] % 256) for f in frames
            if f.sender == sender and f.time >= since]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leaves", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    capture = Path(tempfile.mkdtemp(prefix="confide-capture-"))
    process, server = start_server(
        "bench-e2ee.log", launcher=("tests.e2e.capturing_server", str(capture))
    )
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            origin, origin_url = serve_bench_origin()
            bench_page = browser.new_page()
            bench_page.goto(origin_url)
            sizes = (("720p delta frame, 6 kB", 6_250), ("720p key frame, 60 kB", 60_000))
            for label, size in sizes:
                figures = bench_page.evaluate(THROUGHPUT_JS, [args.seconds, size])
                print(f"SFrame in a Chromium worker, {label}: encrypts "
                      f"{figures['encryptRate']:,.0f} frames/s, decrypts "
                      f"{figures['decryptRate']:,.0f} frames/s")
            bench_page.close()
            origin.shutdown()
            alice = Participant(browser, server, "Alice")
            link = alice.create_meeting()
            alice.join()
            bob = Participant(browser, server, "Bob")
            bob.join(link)
            bob.wait_for_playing({alice.self_id})
            switches = []
            failed_before = alice.page.evaluate(FAILED_JS) + bob.page.evaluate(FAILED_JS)
            for attempt in range(args.leaves):
                guest = Participant(browser, server, f"Guest {attempt}")
                guest.join(link)
                guest.wait_for_playing({alice.self_id, bob.self_id})
                time.sleep(1.5)
                left_at = time.time()
                guest.page.locator("#leave").click()
                time.sleep(3)
                guest.close()
                frames = read_frames(capture)
                slowest = 0.0
                for person in (alice, bob):
                    seen = epochs_after(frames, person.self_id, left_at - 1)
                    old = next(e for t, e in seen if t < left_at)
                    first_new = next(t for t, e in seen if t >= left_at and e != old)
                    slowest = max(slowest, first_new - left_at)
                switches.append(slowest)
            failed = alice.page.evaluate(FAILED_JS) + bob.page.evaluate(FAILED_JS) - failed_before
            frames = read_frames(capture)
            headers = [decode_header(f.sframe)[2] for f in frames]
            overhead = statistics.mean(headers) + 16
            print(f"SFrame overhead per frame in a real meeting: {overhead:.1f} bytes on "
                  f"average (header {min(headers)} to {max(headers)} bytes, tag 16 bytes), "
                  f"over {len(frames)} frames")
            print(f"leave to every sender on the fresh key, over {len(switches)} leaves: "
                  f"median {statistics.median(switches):.2f} s, max {max(switches):.2f} s; "
                  f"frames that failed to decrypt at the two who stayed: {failed}")
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
