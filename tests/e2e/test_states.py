"""What people see when someone vanishes or the server goes away."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser

from .participant import Participant, Server
from .server_process import start_server
from .tampering_proxy import TamperingProxy


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
        alice.evaluate(RECORD_STATUSES)
        process.terminate()
        process.wait(timeout=10)
        alice.wait_for_status("reconnecting")
        wait_for_status_text(alice, "The server is restarting: reconnecting")

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


# Every status the page shows, in order, from the moment this runs.
# Every status and status line the page shows from now on: a line can be replaced
# within a second (say, after the first failed retry), before a test could read it.
RECORD_STATUSES = """() => {
  window.statusesSeen = [];
  window.statusTextsSeen = [];
  const status = document.querySelector('#status');
  new MutationObserver(() => window.statusesSeen.push(status.dataset.status))
    .observe(status, { attributes: true, attributeFilter: ['data-status'] });
  new MutationObserver(() => window.statusTextsSeen.push(status.textContent))
    .observe(status, { childList: true, characterData: true, subtree: true });
}"""


def wait_for_status_text(person: Participant, text: str, timeout: float = 20) -> None:
    """Until the page has shown a status line with this text (RECORD_STATUSES)."""
    person.page.wait_for_function(
        "(text) => window.statusTextsSeen.some((line) => line.includes(text))",
        arg=text, timeout=timeout * 1000)


def wait_for_code(person: Participant, code: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while person.security_code != code:
        if time.monotonic() > deadline:
            raise AssertionError(f"{person.name}'s code is {person.security_code}, not {code}")
        time.sleep(0.1)


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_a_server_restart_with_its_store_is_ridden_out_without_a_click(
    browser: Browser, tmp_path: Path, artifacts: Path, stop: str,
) -> None:
    """SIGTERM, as an upgrade does, or SIGKILL, as a crash: the host and a guest the
    host let in are back in the meeting by themselves once the server is back on the
    same store, with video, E2EE and the same security code. Before, the guest
    waited in the lobby until the host clicked Admit again."""
    store = str(tmp_path / "confide.sqlite3")
    process, server = start_server(f"{stop}-server.log", "--store", store)
    alice, bob = Participant(browser, server, "Alice"), Participant(browser, server, "Bob")
    try:
        link = alice.create_meeting()
        alice.join()
        bob.join(link)
        for person in (alice, bob):
            person.page.locator("#encryption[data-state='e2ee']").wait_for(timeout=15_000)
        code = alice.security_code
        wait_for_code(bob, code)
        bob.evaluate(RECORD_STATUSES)
        alice.evaluate(RECORD_STATUSES)
        if stop == "SIGTERM":
            process.terminate()
        else:
            process.kill()
        process.wait(timeout=10)
        if stop == "SIGTERM":
            wait_for_status_text(alice, "The server is restarting")
        alice.page.get_by_text("Not connected: nothing is sent or received").wait_for()
        alice.page.screenshot(path=str(artifacts / f"server-restarting-{stop}.png"))
        assert alice.page.locator("#encryption").get_attribute("data-state") != "e2ee"
        port = urlparse(server.base_url).port
        assert port is not None
        process, server = start_server(
            f"{stop}-server-again.log", "--store", store, ports=(port, server.media_port))
        serving_at = time.monotonic()
        for person in (alice, bob):
            person.wait_for_status("connected", timeout=30)
        assert bob.self_id in alice.wait_for_playing({bob.self_id})
        assert alice.self_id in bob.wait_for_playing({alice.self_id})
        print(f"\n{stop}: both back with video {time.monotonic() - serving_at:.1f} s after"
              " the server was serving again (sampled over 0.8 s)")
        for person in (alice, bob):
            person.page.locator("#encryption[data-state='e2ee']").wait_for(timeout=15_000)
            wait_for_code(person, code)
        assert "lobby" not in bob.evaluate("() => window.statusesSeen")
    finally:
        alice.close()
        bob.close()
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


def test_a_reconnect_attempt_that_throws_is_followed_by_another(
    browser: Browser, server: Server,
) -> None:
    """Before, one throw before the socket opened ended the retries for good: the
    page said "Cannot reach the server: retrying…" and never tried again."""
    alice = Participant(browser, server, "Alice")
    try:
        alice.create_meeting()
        alice.join()
        first_id = alice.self_id
        alice.evaluate("""() => {
          const client = window.confideClient;
          const fresh = client.keys.newConnectionKeys.bind(client.keys);
          window.throwsLeft = 1;
          client.keys.newConnectionKeys = async () => {
            if (window.throwsLeft > 0) { window.throwsLeft -= 1; throw new Error('made to throw'); }
            return fresh();
          };
          client._socket.close();
        }""")
        alice.page.wait_for_function("() => window.throwsLeft === 0")
        alice.page.wait_for_function(
            "(first) => window.confideClient.selfId && window.confideClient.selfId !== first",
            arg=first_id, timeout=20_000)
        alice.wait_for_status("connected")
    finally:
        alice.close()


def test_a_reload_comes_back_without_the_lobby(browser: Browser, server: Server) -> None:
    """The browser keeps its identity and the host's pass for the meeting: someone
    who reloads the page (what people do when something looks stuck) is back in
    without waiting for the host again, with the same fingerprint."""
    alice, bob = Participant(browser, server, "Alice"), Participant(browser, server, "Bob")
    try:
        link = alice.create_meeting()
        alice.join()
        bob.join(link)
        fingerprint = bob.evaluate("() => window.confideClient.ownFingerprint()")
        bob.page.reload()
        bob.evaluate(RECORD_STATUSES)
        bob.join(wait_connected=False)
        bob.wait_for_status("connected")
        assert "lobby" not in bob.evaluate("() => window.statusesSeen")
        assert bob.evaluate("() => window.confideClient.ownFingerprint()") == fingerprint
        assert bob.self_id in alice.wait_for_playing({bob.self_id})
    finally:
        alice.close()
        bob.close()


def test_a_connection_lost_while_an_offer_waits_for_its_answer_comes_back(
    browser: Browser, server: Server,
) -> None:
    """The page's messages are handled one at a time; an offer waiting for an answer
    that the lost connection never brings must not hold up the next connection's."""
    answers = {"withheld": 0}

    def withhold_answers(message: dict[str, Any]) -> dict[str, Any] | None:
        if message.get("type") == "answer" and answers["withheld"] < 1:
            answers["withheld"] += 1
            return None
        return message

    proxy = TamperingProxy(server.base_url, withhold_answers)
    proxy.start()
    alice = Participant(browser, Server(base_url=proxy.base_url, media_port=server.media_port,
                                        log_path=server.log_path), "Alice")
    try:
        alice.create_meeting()
        alice.join(wait_connected=False)
        alice.page.wait_for_function(
            "() => Boolean(window.confideClient && window.confideClient._answerWaiter)")
        assert answers["withheld"] == 1
        # The connection drops with the offer still waiting; the page connects again.
        alice.evaluate("() => window.confideClient._socket.close()")
        alice.wait_for_status("connected", timeout=30)
    finally:
        alice.close()
        proxy.stop()
