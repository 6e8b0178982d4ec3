"""What people do in a meeting, in real Chromium through Confide's own SFU.

Three people share one meeting for the tests in this file (joining Chromium
three times is the slow part); the test that has one of them leave runs last.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from .participant import Participant, Server


@pytest.fixture(scope="module")
def meeting(browser: Browser, server: Server) -> Iterator[dict[str, Participant]]:
    alice = Participant(browser, server, "Alice")
    link = alice.create_meeting()
    alice.join()
    bob = Participant(browser, server, "Bob")
    bob.join(link)
    carol = Participant(browser, server, "Carol")
    carol.join(link)
    people = {"alice": alice, "bob": bob, "carol": carol}
    yield people
    for person in people.values():
        person.close()


def test_three_people_see_each_others_video(
    meeting: dict[str, Participant], artifacts: Path
) -> None:
    ids = {name: person.self_id for name, person in meeting.items()}
    for name, person in meeting.items():
        others = {pid for other, pid in ids.items() if other != name}
        assert person.wait_for_playing(others) >= others
    meeting["alice"].page.screenshot(path=str(artifacts / "three-person-meeting.png"))


def test_three_people_hear_each_other(meeting: dict[str, Participant]) -> None:
    for person in meeting.values():
        heard = person.wait_for_audio_from(2)
        assert len([s for s in heard if s["energy"] > 0]) >= 2


def test_names_are_shown_on_tiles(meeting: dict[str, Participant]) -> None:
    names = meeting["alice"].page.locator(".tile:not(.self) .name").all_inner_texts()
    assert {"Bob", "Carol"} <= {n.strip() for n in names}


def test_screen_share_reaches_the_others(meeting: dict[str, Participant], artifacts: Path) -> None:
    bob, alice = meeting["bob"], meeting["alice"]
    # Screen share is host-only until the host opens it to everyone.
    assert bob.page.locator("#toggle-screen").is_disabled()
    alice.open_panel("participants")
    alice.page.locator("#allow-screen").check()
    bob.page.wait_for_selector("#toggle-screen:not([disabled])", timeout=10_000)
    alice.open_panel("chat")
    bob.page.locator("#toggle-screen").click()
    bob_id = bob.self_id
    for viewer in (meeting["alice"], meeting["carol"]):
        assert bob_id in viewer.wait_for_playing({bob_id}, kind="screen")
    # Encoded for sharp text, not smooth motion.
    assert "detail" in bob.page.evaluate(
        "() => window.confideClient.peerConnection.getSenders().map((s) => s.track?.contentHint)")
    meeting["alice"].page.screenshot(path=str(artifacts / "screen-share.png"))
    bob.page.locator("#toggle-screen").click()
    deadline = time.monotonic() + 10
    while any(v["kind"] == "screen" for v in meeting["alice"].remote_videos()):
        assert time.monotonic() < deadline, "the screen tile stayed after sharing stopped"
        time.sleep(0.2)


def test_chat_reaches_the_others(meeting: dict[str, Participant]) -> None:
    meeting["alice"].send_chat("Agenda: budget, then hiring")
    for reader in (meeting["bob"], meeting["carol"]):
        reader.page.locator("#toggle-chat").click()
        reader.page.wait_for_selector(
            "#chat-messages .chat-message:has-text('Agenda: budget, then hiring')", timeout=10_000
        )
        assert any("Alice" in text for text in reader.chat_texts())


def security_code(person: Participant) -> str:
    return person.page.locator("#security-code").inner_text()


def test_everyone_sees_the_same_security_code_and_fingerprints(
    meeting: dict[str, Participant]
) -> None:
    people = list(meeting.values())
    for person in people:
        person.page.locator("#encryption[data-state='e2ee']").wait_for(timeout=15_000)
        assert "End-to-end encrypted" in person.page.locator("#encryption").inner_text()
    codes = {security_code(person) for person in people}
    assert len(codes) == 1 and len(codes.pop().split()) == 5
    # The fingerprint each person sees for themselves is what the others list for them.
    alice = meeting["alice"]
    alice.page.locator("#toggle-participants").click()
    for other in people[1:]:
        other.page.locator("#toggle-participants").click()
        own = other.page.locator("#participant-list li.self .participant-fingerprint").inner_text()
        listed = alice.page.locator(
            f"#participant-list li[data-participant-id='{other.self_id}'] .participant-fingerprint"
        ).inner_text()
        assert own == listed and len(own.split()) == 4
        other.page.locator("#toggle-participants").click()
    alice.page.locator("#toggle-participants").click()


def test_leaving_removes_the_tile_within_five_seconds(meeting: dict[str, Participant]) -> None:
    carol = meeting["carol"]
    carol_id = carol.self_id
    code_with_carol = security_code(meeting["alice"])
    carol.page.locator("#leave").click()
    for person in (meeting["alice"], meeting["bob"]):
        person.page.wait_for_selector(
            f".tile[data-participant-id='{carol_id}']", state="detached", timeout=5_000
        )
    # The two who stay still see each other, under a new security code they share.
    alice, bob = meeting["alice"], meeting["bob"]
    assert bob.self_id in alice.wait_for_playing({bob.self_id})
    assert security_code(alice) == security_code(bob) != code_with_carol

