"""Firefox ESR in meetings with Chromium and with other Firefox pages.

Firefox runs in a network namespace of its own and reaches the server, which
listens on the veth address with a self-signed certificate, as a participant on
another machine reaches a LAN server. Chromium pages join from this side.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from .capture import read_all_bytes, read_frames
from .firefox import FirefoxBrowser, FirefoxParticipant
from .netns import Namespace
from .participant import RECORD_KEYS, Participant, Person, Server
from .server_process import start_server
from .test_e2ee import frame_kid, opens


@pytest.fixture
def people() -> Iterator[list[Person]]:
    """Everyone a test opened, closed after it whatever happened."""
    opened: list[Person] = []
    yield opened
    for person in opened:
        try:
            person.close()
        except Exception:  # noqa: BLE001 - a page already gone needs no closing
            pass


def chromium(browser: Browser, server: Server, name: str, people: list[Person]) -> Participant:
    person = Participant(browser, server, name)
    people.append(person)
    return person


def firefox_person(firefox: FirefoxBrowser, server: Server, name: str,
                   people: list[Person]) -> FirefoxParticipant:
    person = FirefoxParticipant(firefox, server, name)
    people.append(person)
    return person


def wait_for_equal_codes(everyone: list[Person], timeout: float = 20) -> str:
    """The security code once every page shows the same one, for everyone present."""
    deadline = time.monotonic() + timeout
    codes: dict[str, str] = {}
    while time.monotonic() < deadline:
        codes = {p.name: p.security_code for p in everyone}
        chips = {p.name: p.text("#encryption-text") for p in everyone}
        if len(set(codes.values())) == 1 and all(
            f"encrypted · {codes[name]}" in chip for name, chip in chips.items()
        ):
            return next(iter(codes.values()))
        time.sleep(0.2)
    raise AssertionError(f"security codes differ or are not shown: {codes}")


def test_two_chromium_pages_and_firefox_see_hear_and_read_each_other(
    browser: Browser, firefox: FirefoxBrowser, lan_server: Server, people: list[Person],
    artifacts: Path,
) -> None:
    alice = chromium(browser, lan_server, "Alice", people)
    link = alice.create_meeting()
    alice.join()
    bob = chromium(browser, lan_server, "Bob", people)
    bob.join(link)
    fritz = firefox_person(firefox, lan_server, "Fritz", people)
    fritz.join(link)

    everyone: list[Person] = [alice, bob, fritz]
    ids = {p.name: p.self_id for p in everyone}
    for person in everyone:
        others = {i for name, i in ids.items() if name != person.name}
        person.wait_for_playing(others)
        person.wait_for_audio_from(2)
    wait_for_equal_codes(everyone)
    assert fritz.attribute("#encryption", "data-state") == "e2ee"

    fritz.send_chat("Grüße aus Firefox")
    alice.open_panel("chat")
    alice.wait_for(".chat-message:last-child")
    bob.send_chat("hello from Chromium")
    deadline = time.monotonic() + 10
    while not ("hello from Chromium" in " ".join(fritz.chat_texts())
               and "Grüße aus Firefox" in " ".join(alice.chat_texts())):
        assert time.monotonic() < deadline, (fritz.chat_texts(), alice.chat_texts())
        time.sleep(0.2)
    fritz.screenshot(artifacts / "firefox-mixed-meeting.png")


def wait_until(check: object, what: str, timeout: float = 15) -> None:
    """Poll `check()` (a callable) until it is true."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_firefox_host_admits_mutes_and_removes_and_a_firefox_guest_leaves_and_rejoins(
    browser: Browser, firefox: FirefoxBrowser, lan_server: Server, people: list[Person],
) -> None:
    fritz = firefox_person(firefox, lan_server, "Fritz", people)
    link = fritz.create_meeting()
    fritz.join()

    # A Chromium guest waits in the lobby until the Firefox host lets them in.
    chloe = chromium(browser, lan_server, "Chloe", people)
    chloe.join(link, wait_connected=False)
    chloe.wait_for_status("lobby")
    assert "Waiting for the host" in chloe.status_text
    fritz.admit("Chloe")
    chloe.wait_for_status("connected")

    # A second Firefox page, admitted the same way: Firefox to Firefox too.
    frieda = firefox_person(firefox, lan_server, "Frieda", people)
    frieda.join(link, wait_connected=False)
    frieda.wait_for_status("lobby")
    fritz.admit("Frieda")
    frieda.wait_for_status("connected")
    everyone: list[Person] = [fritz, chloe, frieda]
    ids = {p.name: p.self_id for p in everyone}
    for person in everyone:
        person.wait_for_playing({i for name, i in ids.items() if name != person.name})
    wait_for_equal_codes(everyone)

    # The host's signed mute reaches the Chromium guest, whose page honours it.
    fritz.open_panel("participants")
    fritz.click(f"#participant-list li[data-participant-id='{ids['Chloe']}'] .host-mute")
    chloe.page.get_by_text("muted you").wait_for(timeout=10_000)
    assert chloe.attribute("#toggle-mic", "data-state") == "off"

    # Frieda leaves: her tile goes from the others' pages; she rejoins and is back.
    frieda.click("#leave")
    frieda.wait_for("#left:not([hidden])")
    for person in (fritz, chloe):
        wait_until(lambda p=person: ids["Frieda"] not in p.tile_ids(), "Frieda's tile to go")
    frieda.click("#rejoin")
    frieda.wait_for("#status[data-status='connected'], #status[data-status='lobby']")
    if frieda.attribute("#status", "data-status") == "lobby":
        fritz.admit("Frieda")
    frieda.wait_for_status("connected")
    frieda_again = frieda.self_id
    frieda.wait_for_playing({ids["Fritz"], ids["Chloe"]})
    fritz.wait_for_playing({ids["Chloe"], frieda_again})
    wait_for_equal_codes(everyone)

    # The host removes Chloe: her page says so, and she is gone from the others'.
    fritz.click(f"#participant-list li[data-participant-id='{ids['Chloe']}'] .host-remove")
    chloe.page.get_by_text("removed you").first.wait_for(timeout=10_000)
    wait_until(lambda: ids["Chloe"] not in frieda.tile_ids(), "Chloe's tile to go")
    wait_for_equal_codes([fritz, frieda])


def test_firefox_and_chromium_see_each_others_screen(
    browser: Browser, firefox: FirefoxBrowser, lan_server: Server, people: list[Person],
    artifacts: Path,
) -> None:
    fritz = firefox_person(firefox, lan_server, "Fritz", people)
    link = fritz.create_meeting()
    fritz.join()
    chloe = chromium(browser, lan_server, "Chloe", people)
    chloe.join(link)
    fritz.click("#toggle-screen")
    fritz.wait_for("#toggle-screen[data-state='on']")
    chloe.wait_for_playing({fritz.self_id}, kind="screen")
    chloe.wait_for_playing({fritz.self_id}, kind="camera")
    chloe.screenshot(artifacts / "chromium-sees-firefox-screen.png")
    fritz.screenshot(artifacts / "firefox-sharing-screen.png")
    # The other way: the Firefox host lets everyone share, and Chromium's screen plays there.
    fritz.click("#toggle-screen")
    fritz.wait_for("#toggle-screen[data-state='off']")
    fritz.open_panel("participants")
    fritz.click("#allow-screen")
    chloe.wait_for("#toggle-screen:not([disabled])")
    chloe.click("#toggle-screen")
    fritz.wait_for_playing({chloe.self_id}, kind="screen")


def send_keys(person: Person) -> list[tuple[int, bytes]]:
    """Every (KID, key) the person's page gave its frame worker to send with."""
    return [(r["kid"], bytes(r["key"])) for r in person.evaluate("() => window.__sendKeys")]


FIREFOX_NAME = "Friedrich Wolkenstein"
FIREFOX_CHAT = "the Rotterdam shipment is delayed"


def test_what_the_server_receives_from_firefox_opens_only_with_its_senders_key(
    browser: Browser, firefox: FirefoxBrowser, other_host: Namespace, people: list[Person],
    tmp_path: Path,
) -> None:
    process, server = start_server(
        "capturing-lan-server.log", launcher=("tests.e2e.capturing_server", str(tmp_path)),
        host=other_host.host_address)
    try:
        fritz = firefox_person(firefox, server, FIREFOX_NAME, people)
        fritz.page.add_init_script(RECORD_KEYS)
        link = fritz.create_meeting()
        fritz.join()
        chloe = chromium(browser, server, "Chloe", people)
        chloe.context.add_init_script(RECORD_KEYS)
        chloe.join(link)
        fritz_id = fritz.self_id
        chloe.wait_for_playing({fritz_id})
        chloe.wait_for_audio_from(1)
        fritz.send_chat(FIREFOX_CHAT)
        chloe.open_panel("chat")
        wait_until(lambda: any(FIREFOX_CHAT in t for t in chloe.chat_texts()), "the chat")
        read_at = time.time()
        fritz_keys, chloe_keys = send_keys(fritz), send_keys(chloe)
    finally:
        process.terminate()
        process.wait(timeout=10)

    frames = [f for f in read_frames(tmp_path) if f.sender == fritz_id and f.time < read_at]
    assert len([f for f in frames if f.kind == "video"]) > 50
    assert len([f for f in frames if f.kind == "audio"]) > 100
    for frame in frames:
        kid = frame_kid(frame)
        own = [key for k, key in fritz_keys if k == kid]
        assert own, f"a Firefox frame with KID {kid} under no key its sender used"
        assert opens(frame, kid, own[-1]), "a Firefox frame is not SFrame under its sender's key"
        assert not any(opens(frame, kid, key) for _, key in chloe_keys)
    seen = read_all_bytes(tmp_path) + server.log_path.read_bytes()
    for needle in (FIREFOX_NAME, "Wolkenstein", FIREFOX_CHAT, "Rotterdam"):
        assert needle.encode() not in seen, f"{needle!r} reached the server"


def test_firefox_shows_reconnecting_while_its_network_drops_media_then_connected(
    browser: Browser, firefox: FirefoxBrowser, other_host: Namespace, lan_server: Server,
    people: list[Person],
) -> None:
    chloe = chromium(browser, lan_server, "Chloe", people)
    link = chloe.create_meeting()
    chloe.join()
    fritz = firefox_person(firefox, lan_server, "Fritz", people)
    fritz.join(link)
    fritz.wait_for_playing({chloe.self_id})
    with other_host.blocking_udp_to(lan_server.media_port):
        fritz.wait_for_status("reconnecting", timeout=30)
        assert "reconnecting" in fritz.status_text.lower()
        # Nothing is sent or received: the chip claims no encryption meanwhile.
        assert fritz.attribute("#encryption", "data-state") == "pending"
        assert fritz.text("#encryption-text") == "Not connected: nothing is sent or received"
    fritz.wait_for_status("connected", timeout=30)
    fritz.wait_for("#encryption[data-state='e2ee']")
    fritz.wait_for_playing({chloe.self_id})
    chloe.wait_for_playing({fritz.self_id})


def test_firefox_at_a_loopback_server_is_told_why_no_media_flows(
    browser: Browser, server: Server, people: list[Person], artifacts: Path,
) -> None:
    """Firefox by default sends no media to 127.0.0.1 (its `ice.loopback` pref is off)."""
    firefox = FirefoxBrowser(artifacts / "firefox-loopback-driver.log",
                             prefs={"media.peerconnection.ice.loopback": False})
    try:
        alice = chromium(browser, server, "Alice", people)
        link = alice.create_meeting()
        alice.join()
        fritz = FirefoxParticipant(firefox, server, "Fritz")
        fritz.join(link, wait_connected=False)
        fritz.wait_for_status("lobby")
        alice.admit("Fritz")
        # Not a rejoin loop back into the lobby: the page stops and says why.
        fritz.wait_for_status("failed", timeout=60)
        assert "loopback" in fritz.text("#left-detail")
        assert "network address" in fritz.text("#left-detail")
        fritz.screenshot(artifacts / "firefox-loopback.png")
    finally:
        firefox.close()
