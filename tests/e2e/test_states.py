"""What people see when someone vanishes or the server goes away."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

from playwright.sync_api import Browser

from .participant import Participant, Server
from .server_process import start_server


def test_closing_the_tab_removes_the_tile_within_five_seconds(
    browser: Browser, server: Server
) -> None:
    alice = Participant(browser, server, "Alice")
    link = alice.create_meeting()
    alice.join()
    bob = Participant(browser, server, "Bob")
    bob.join(link)
    bob_id = bob.self_id
    assert bob_id in alice.wait_for_playing({bob_id})
    bob.page.close()  # no Leave click: the tab is just gone
    alice.page.wait_for_selector(
        f".tile[data-participant-id='{bob_id}']", state="detached", timeout=5_000
    )
    alice.close()
    bob.close()


def test_server_restart_shows_reconnecting_then_meeting_not_found(browser: Browser) -> None:
    process, server = start_server("restart-server.log")
    try:
        alice = Participant(browser, server, "Alice")
        link = alice.create_meeting()
        alice.join()
        process.terminate()
        process.wait(timeout=10)
        alice.wait_for_status("reconnecting")
        assert "reconnecting" in alice.status_text.lower()

        # The same address again, but a fresh server: in-memory meetings are gone.
        port = urlparse(server.base_url).port
        assert port is not None
        process, server = start_server(
            "restart-server-again.log", ports=(port, server.media_port)
        )
        alice.wait_for_status("failed", timeout=30)
        assert "does not exist" in alice.status_text
        assert link.startswith(server.base_url)
        alice.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_server_restart_with_its_store_is_ridden_out_without_a_click(
    browser: Browser, tmp_path: Path, artifacts: Path
) -> None:
    """SIGTERM, as an upgrade does: the page says the server is restarting (not that
    anyone left), and once the server is back on the same store the host is back in
    the meeting with video, by itself."""
    store = str(tmp_path / "confide.sqlite3")
    process, server = start_server("sigterm-server.log", "--store", store)
    try:
        alice = Participant(browser, server, "Alice")
        alice.create_meeting()
        alice.join()
        process.terminate()
        process.wait(timeout=10)
        alice.page.get_by_text("The server is restarting").first.wait_for(timeout=10_000)
        alice.page.get_by_text("Not connected: nothing is sent or received").wait_for()
        alice.page.screenshot(path=str(artifacts / "server-restarting.png"))
        assert alice.page.locator("#encryption").get_attribute("data-state") != "e2ee"
        port = urlparse(server.base_url).port
        assert port is not None
        process, server = start_server(
            "sigterm-server-again.log", "--store", store, ports=(port, server.media_port))
        alice.wait_for_status("connected", timeout=30)
        alice.page.locator("#encryption[data-state='e2ee']").wait_for(timeout=15_000)
        alice.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


# The browser refuses every camera and microphone request, as after "Block".
REFUSE_DEVICES = """navigator.mediaDevices.getUserMedia = async () => {
  throw new DOMException('Permission denied', 'NotAllowedError');
};"""


def test_refused_camera_is_explained_and_joining_still_works(
    browser: Browser, server: Server
) -> None:
    host = Participant(browser, server, "Host")
    link = host.create_meeting()
    host.join()
    shy = Participant(browser, server, "Shy")
    shy.context.add_init_script(REFUSE_DEVICES)
    shy.open(link)
    message = shy.page.locator("#device-message")
    message.get_by_text("blocked").wait_for(timeout=10_000)
    assert "site settings" in message.inner_text()
    shy.join()
    # Without a camera they still see the host, and the host sees their tile.
    assert host.self_id in shy.wait_for_playing({host.self_id})
    host.page.wait_for_selector(f".tile[data-participant-id='{shy.self_id}'].camera-off")
    host.close()
    shy.close()


def test_alone_the_chip_shows_a_security_code(browser: Browser, server: Server) -> None:
    alice = Participant(browser, server, "Alice")
    alice.create_meeting()
    alice.join()
    alice.page.locator("#encryption[data-state='e2ee']").wait_for(timeout=15_000)
    assert re.fullmatch(r"End-to-end encrypted · (\d{5} ){4}\d{5}",
                        alice.text("#encryption-text"))
    alice.close()


# The page's frame worker never gets its send key, so it sends no frames at all.
WITHHOLD_SEND_KEY = """(() => {
  const post = Worker.prototype.postMessage;
  Worker.prototype.postMessage = function (message, ...rest) {
    if (message && message.type === 'send-key') return undefined;
    return post.call(this, message, ...rest);
  };
})();"""


def test_chip_waits_for_media_rather_than_claim_encryption_when_none_arrives(
    browser: Browser, server: Server
) -> None:
    alice = Participant(browser, server, "Alice")
    link = alice.create_meeting()
    alice.join()
    silent = Participant(browser, server, "Silent")
    silent.context.add_init_script(WITHHOLD_SEND_KEY)
    silent.join(link)
    chip = alice.page.locator("#encryption[data-state='pending']")
    chip.get_by_text("Waiting for media from Silent").wait_for(timeout=15_000)
    alice.close()
    silent.close()
