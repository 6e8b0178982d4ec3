"""A person in a browser: opens a link, types a name, joins, and looks at the page.

Everything here goes through the page as a person would (fields, buttons), and
reads what the page shows (tiles, playing videos, chat). Live media is judged by
frames decoded for each video tile, and by the receiver's audio energy. `Person`
is the same in every browser; `Participant` is Chromium through Playwright, and
`firefox.FirefoxParticipant` is Firefox through its driver.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page

CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-sandbox",
]


@dataclass
class Server:
    base_url: str
    media_port: int
    log_path: Path
    self_signed: bool = False
    """Serves HTTPS with a certificate made at startup (`--self-signed`)."""
    metrics_url: str = ""
    """Its operator-only /metrics listener (`--metrics-listen`)."""
    pid: int = 0
    """Its process, where the test started one."""

    def metrics(self) -> dict[str, int]:
        text = urllib.request.urlopen(self.metrics_url, timeout=5).read().decode()
        values: dict[str, int] = {}
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            values[name] = int(float(value))
        return values

    def tls_context(self) -> ssl.SSLContext | None:
        """For our own self-signed server: the tests know whose certificate it is."""
        if not self.self_signed:
            return None
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context


# Copies every key the page hands its frame worker, so the test can check frames.
RECORD_KEYS = """(() => {
  window.__sendKeys = []; window.__receiveKeys = [];
  const post = Worker.prototype.postMessage;
  Worker.prototype.postMessage = function (message, ...rest) {
    const record = message && message.key
      && {kid: message.kid, key: Array.from(message.key), t: Date.now() / 1000};
    if (record && message.type === 'send-key') window.__sendKeys.push(record);
    if (record && message.type === 'receive-key') window.__receiveKeys.push(record);
    return post.call(this, message, ...rest);
  };
})();"""

# Every remote video on the page: whose it is, its size, and the frames its
# receiver has decoded (inbound-rtp framesDecoded): a video plays when that rises.
REMOTE_VIDEOS_JS = """async () => {
  const pc = window.confideClient && window.confideClient.peerConnection;
  const receivers = pc ? pc.getReceivers() : [];
  const found = [];
  for (const v of document.querySelectorAll('.tile[data-participant-id] video')) {
    if (v.closest('.tile').classList.contains('self')) continue;
    const track = v.srcObject && v.srcObject.getVideoTracks()[0];
    const receiver = track && receivers.find((r) => r.track === track);
    let frames = 0;
    if (receiver) {
      (await receiver.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp') frames = Math.max(frames, s.framesDecoded || 0);
      });
    }
    found.push({
      participant: v.closest('.tile').dataset.participantId,
      kind: v.dataset.kind || 'camera',
      width: v.videoWidth,
      frames,
    });
  }
  return found;
}"""

# Per remote audio stream: packets received and the decoded audio energy.
AUDIO_STATS_JS = """async () => {
  const pc = window.confideClient && window.confideClient.peerConnection;
  if (!pc) return [];
  const stats = await pc.getStats();
  const found = [];
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      found.push({ssrc: s.ssrc, packets: s.packetsReceived, energy: s.totalAudioEnergy || 0});
    }
  });
  return found;
}"""


HOSTS: dict[str, Person] = {}
"""Who created (and so hosts) each meeting the tests made, by meeting id."""


def meeting_id_of(link: str) -> str:
    return link.split("/m/", 1)[1].split("#", 1)[0]


class Person:
    """What a person does in a meeting page and what they see there, in any browser.

    Subclasses give the page primitives: go to a URL, click, fill and wait for a
    CSS selector, and evaluate a JS function's source in the page.
    """

    server: Server
    name: str
    page: Any
    """Playwright's Page, or firefox.FirefoxPage: both go to URLs and evaluate alike."""

    # --- page primitives -----------------------------------------------------------------------

    def goto(self, url: str) -> None:
        self.page.goto(url)

    @property
    def url(self) -> str:
        return str(self.page.url)

    def evaluate(self, function: str, arg: Any = None) -> Any:
        return self.page.evaluate(function, arg)

    def click(self, selector: str) -> None:
        raise NotImplementedError

    def fill(self, selector: str, text: str) -> None:
        raise NotImplementedError

    def wait_for(self, selector: str, timeout: float = 20) -> None:
        raise NotImplementedError

    def wait_for_meeting_page(self, timeout: float = 20) -> None:
        """Wait until the page is at a meeting link, /m/<id>#<secret>."""
        deadline = time.monotonic() + timeout
        while "/m/" not in self.url or "#" not in self.url:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: not at a meeting link: {self.url}")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def attribute(self, selector: str, name: str) -> str | None:
        value = self.evaluate(
            "([selector, name]) => document.querySelector(selector)?.getAttribute(name) ?? null",
            [selector, name])
        return None if value is None else str(value)

    def text(self, selector: str) -> str:
        return str(self.evaluate(
            "(selector) => document.querySelector(selector)?.innerText ?? ''", selector))

    # --- what a person does ------------------------------------------------------------------

    def create_meeting(self) -> str:
        """Start a meeting from the start page's button; returns the full link."""
        self.goto(self.server.base_url + "/")
        self.click("#new-meeting")
        self.wait_for_meeting_page()
        HOSTS[meeting_id_of(self.url)] = self
        return self.url

    def open(self, link: str) -> None:
        self.goto(link)

    def join(self, link: str | None = None, wait_connected: bool = True) -> None:
        if link is not None:
            self.open(link)
        self.fill("#name", self.name)
        self.click("#join")
        if wait_connected:
            self.wait_for(
                "#status[data-status='connected'], #status[data-status='lobby']", timeout=20)
            if self.attribute("#status", "data-status") == "lobby":
                host = HOSTS[meeting_id_of(self.url)]
                host.admit(self.name)
            self.wait_for_status("connected")

    def open_panel(self, which: str) -> None:
        """Open the side panel on 'chat' or 'participants', if it is not already."""
        if self.attribute(f"#toggle-{which}", "aria-pressed") != "true":
            self.click(f"#toggle-{which}")

    def client_call(self, method: str, *args: object) -> object:
        """Call a method of this page's MeetingClient, as its UI would."""
        return self.evaluate(
            "([method, args]) => window.confideClient[method](...args)", [method, list(args)])

    def admit(self, name: str) -> None:
        """As the host: let the person of this name in from the lobby."""
        self.open_panel("participants")
        selector = "#lobby-list li[data-lobby-id]"
        deadline = time.monotonic() + 20
        while True:
            lobby_id = self.evaluate(
                "([selector, name]) => [...document.querySelectorAll(selector)]"
                ".find((li) => li.innerText.includes(name))?.dataset.lobbyId ?? null",
                [selector, name])
            if lobby_id:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} sees nobody called {name} in the lobby")
            time.sleep(0.1)
        self.click(f'#lobby-list li[data-lobby-id="{lobby_id}"] .admit')

    def wait_for_status(self, status: str, timeout: float = 20) -> None:
        self.wait_for(f"#status[data-status='{status}']", timeout=timeout)

    @property
    def status_text(self) -> str:
        return self.text("#status")

    @property
    def security_code(self) -> str:
        """The code the chip shows, once the chip says the meeting is end-to-end encrypted."""
        return str(self.evaluate("() => window.confideClient.securityCode"))

    @property
    def self_id(self) -> str:
        return str(self.evaluate("() => window.confideClient.selfId"))

    def remote_videos(self) -> list[dict[str, Any]]:
        return list(self.evaluate(REMOTE_VIDEOS_JS))

    def playing_remote_videos(self, kind: str = "camera") -> set[str]:
        """Participants whose remote video of this kind shows frames, more each moment."""
        before = {(v["participant"], v["kind"]): v for v in self.remote_videos()}
        time.sleep(0.8)
        playing = set()
        for video in self.remote_videos():
            earlier = before.get((video["participant"], video["kind"]))
            if (
                video["kind"] == kind
                and earlier is not None
                and video["width"] > 0
                and video["frames"] > earlier["frames"]
            ):
                playing.add(video["participant"])
        return playing

    def wait_for_playing(self, participants: set[str], kind: str = "camera",
                         timeout: float = 30) -> set[str]:
        deadline = time.monotonic() + timeout
        playing: set[str] = set()
        while time.monotonic() < deadline:
            playing = self.playing_remote_videos(kind)
            if participants <= playing:
                return playing
        raise AssertionError(
            f"{self.name} sees {kind} playing from {playing}, expected {participants}; "
            f"videos: {json.dumps(self.remote_videos())}"
        )

    def audio_stats(self) -> list[dict[str, Any]]:
        return list(self.evaluate(AUDIO_STATS_JS))

    def wait_for_audio_from(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        """Wait until `count` remote audio streams carry decoded sound."""
        deadline = time.monotonic() + timeout
        stats: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            stats = self.audio_stats()
            if len([s for s in stats if s["packets"] > 20 and s["energy"] > 0]) >= count:
                return stats
            time.sleep(0.5)
        raise AssertionError(f"{self.name} hears {stats}, expected {count} audio streams")

    def tile_ids(self) -> set[str]:
        return set(self.evaluate(
            "() => [...document.querySelectorAll('.tile[data-participant-id]:not(.self)')]"
            ".map((t) => t.dataset.participantId)"
        ))

    def send_chat(self, text: str) -> None:
        self.open_panel("chat")
        self.fill("#chat-input", text)
        self.click("#chat-send")

    def chat_texts(self) -> list[str]:
        return list(self.evaluate(
            "() => [...document.querySelectorAll('#chat-messages .chat-message')]"
            ".map((m) => m.innerText)"))


ALERT_PREFIX = "confide: possible attack: "
"""What the page logs with each possible-attack alert it shows (app.js)."""
OPENED: list[Participant] = []
"""Chromium participants of the running test, checked for alerts when it ends."""


class Participant(Person):
    """A person in Chromium, driven by Playwright; `page` is theirs for anything else."""

    def __init__(self, browser: Browser, server: Server, name: str) -> None:
        self.server = server
        self.name = name
        self.context = browser.new_context(
            viewport={"width": 1280, "height": 720}, ignore_https_errors=server.self_signed)
        self.page: Page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda message: self.console.append(message.text))
        self.expects_alerts = False
        """Set by tests that play an attack; otherwise any alert fails the test."""
        OPENED.append(self)

    @property
    def security_alerts(self) -> list[str]:
        return [line for line in self.console if line.startswith(ALERT_PREFIX)]

    def click(self, selector: str) -> None:
        self.page.locator(selector).click()

    def fill(self, selector: str, text: str) -> None:
        self.page.locator(selector).fill(text)

    def wait_for(self, selector: str, timeout: float = 20) -> None:
        self.page.wait_for_selector(selector, timeout=timeout * 1000)

    def wait_for_meeting_page(self, timeout: float = 20) -> None:
        # Playwright learns of navigations only while it is called, not while we sleep.
        self.page.wait_for_url("**/m/**#*", timeout=timeout * 1000)

    def screenshot(self, path: Path) -> None:
        self.page.screenshot(path=str(path))

    def close(self) -> None:
        self.context.close()
