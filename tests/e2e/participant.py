"""A person in a browser: opens a link, types a name, joins, and looks at the page.

Everything here goes through the page as a person would (labels, buttons), and
reads what the page shows (tiles, playing videos, chat). Live media is judged by
the video elements' size and advancing time, and by the receiver's audio energy.
"""

from __future__ import annotations

import json
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

    def metrics(self) -> dict[str, int]:
        text = urllib.request.urlopen(self.base_url + "/metrics", timeout=5).read().decode()
        values: dict[str, int] = {}
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            values[name] = int(value)
        return values


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

# Reads every remote video on the page: who it belongs to, its size, its clock.
REMOTE_VIDEOS_JS = """() => [...document.querySelectorAll('.tile[data-participant-id] video')]
  .filter((v) => !v.closest('.tile').classList.contains('self'))
  .map((v) => ({
    participant: v.closest('.tile').dataset.participantId,
    kind: v.dataset.kind || 'camera',
    width: v.videoWidth,
    time: v.currentTime,
  }))"""

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


HOSTS: dict[str, Participant] = {}
"""Who created (and so hosts) each meeting the tests made, by meeting id."""


def meeting_id_of(link: str) -> str:
    return link.split("/m/", 1)[1].split("#", 1)[0]


class Participant:
    def __init__(self, browser: Browser, server: Server, name: str) -> None:
        self.server = server
        self.name = name
        self.context = browser.new_context(viewport={"width": 1280, "height": 720})
        self.page: Page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda message: self.console.append(message.text))

    def create_meeting(self) -> str:
        """Start a meeting from the start page's button; returns the full link."""
        self.page.goto(self.server.base_url + "/")
        self.page.get_by_role("button", name="New meeting").click()
        self.page.wait_for_url("**/m/**#*")
        HOSTS[meeting_id_of(self.page.url)] = self
        return self.page.url

    def open(self, link: str) -> None:
        self.page.goto(link)

    def join(self, link: str | None = None, wait_connected: bool = True) -> None:
        if link is not None:
            self.open(link)
        self.page.get_by_label("Your name").fill(self.name)
        self.page.locator("#join").click()
        if wait_connected:
            self.page.wait_for_selector(
                "#status[data-status='connected'], #status[data-status='lobby']", timeout=20_000)
            if self.page.locator("#status").get_attribute("data-status") == "lobby":
                host = HOSTS[meeting_id_of(self.page.url)]
                host.admit(self.name)
            self.wait_for_status("connected")

    def open_panel(self, which: str) -> None:
        """Open the side panel on 'chat' or 'participants', if it is not already."""
        button = self.page.locator(f"#toggle-{which}")
        if button.get_attribute("aria-pressed") != "true":
            button.click()

    def client_call(self, method: str, *args: object) -> object:
        """Call a method of this page's MeetingClient, as its UI would."""
        return self.page.evaluate(
            "([method, args]) => window.confideClient[method](...args)", [method, list(args)])

    def admit(self, name: str) -> None:
        """As the host: let the person of this name in from the lobby."""
        self.open_panel("participants")
        knock = self.page.locator("#lobby-list li", has_text=name).first
        knock.locator(".admit").click()

    def wait_for_status(self, status: str, timeout: float = 20) -> None:
        self.page.wait_for_selector(f"#status[data-status='{status}']", timeout=timeout * 1000)

    @property
    def status_text(self) -> str:
        return self.page.locator("#status").inner_text()

    @property
    def self_id(self) -> str:
        return str(self.page.evaluate("() => window.confideClient.selfId"))

    def remote_videos(self) -> list[dict[str, Any]]:
        return list(self.page.evaluate(REMOTE_VIDEOS_JS))

    def playing_remote_videos(self, kind: str = "camera") -> set[str]:
        """Participants whose remote video of this kind has frames and moving time."""
        before = {(v["participant"], v["kind"]): v for v in self.remote_videos()}
        time.sleep(0.8)
        playing = set()
        for video in self.remote_videos():
            earlier = before.get((video["participant"], video["kind"]))
            if (
                video["kind"] == kind
                and earlier is not None
                and video["width"] > 0
                and video["time"] > earlier["time"]
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
        return list(self.page.evaluate(AUDIO_STATS_JS))

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
        return set(self.page.evaluate(
            "() => [...document.querySelectorAll('.tile[data-participant-id]:not(.self)')]"
            ".map((t) => t.dataset.participantId)"
        ))

    def send_chat(self, text: str) -> None:
        if not self.page.locator("#chat-input").is_visible():
            self.page.locator("#toggle-chat").click()
        self.page.locator("#chat-input").fill(text)
        self.page.locator("#chat-send").click()

    def chat_texts(self) -> list[str]:
        return list(self.page.locator("#chat-messages .chat-message").all_inner_texts())

    def close(self) -> None:
        self.context.close()
