"""What end-to-end encryption costs, measured in Debian's Chromium on this machine:

- frames per second that SFrame (the code the frame worker runs) encrypts and
  decrypts, at 720p frame sizes (a 60 kB key frame, 6 kB delta frames: about
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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import sync_playwright  # noqa: E402
from tests.e2e.capture import read_frames  # noqa: E402
from tests.e2e.conftest import start_server  # noqa: E402
from tests.e2e.participant import CHROMIUM_ARGS, Participant  # noqa: E402

from confide.e2ee.sframe import decode_header  # noqa: E402

THROUGHPUT_JS = """async ([seconds, size]) => {
  const { SFrameSender, SFrameReceiver } = await import('/static/sframe.js');
  const key = crypto.getRandomValues(new Uint8Array(32));
  const sender = new SFrameSender(key, 0x12345600);
  const receiver = new SFrameReceiver();
  await receiver.addKey(0x12345600, key);
  const frame = crypto.getRandomValues(new Uint8Array(size));
  const clear = frame.subarray(0, 3);
  let encrypted = 0; let sealed; let start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    sealed = await sender.encrypt(frame.subarray(3), clear);
    encrypted += 1;
  }
  const encryptRate = encrypted / ((performance.now() - start) / 1000);
  const frames = [];
  for (let i = 0; i < 2000; i += 1) frames.push(await sender.encrypt(frame.subarray(3), clear));
  let decrypted = 0; start = performance.now();
  for (const f of frames) { await receiver.decrypt(f, clear); decrypted += 1;
    if (performance.now() - start > seconds * 1000) break; }
  const decryptRate = decrypted / ((performance.now() - start) / 1000);
  return { encryptRate, decryptRate, overhead: sealed.length - (size - 3) };
}"""

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
            alice = Participant(browser, server, "Alice")
            link = alice.create_meeting()
            sizes = (("720p delta frame, 6 kB", 6_250), ("720p key frame, 60 kB", 60_000))
            for label, size in sizes:
                figures = alice.page.evaluate(THROUGHPUT_JS, [args.seconds, size])
                print(f"SFrame in Chromium, {label}: encrypts {figures['encryptRate']:,.0f} "
                      f"frames/s, decrypts {figures['decryptRate']:,.0f} frames/s")
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
