"""The speaker view and pinning, in Chromium: the person shown large gets the large
simulcast layer, the strip gets the small one, so a meeting of many costs each page
one large video and small ones."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser

from .participant import Participant, Server
from .test_simulcast import wait_for_layer


def test_a_pinned_person_is_shown_large_at_the_large_layer_and_the_rest_small(
    browser: Browser, server: Server, artifacts: Path,
) -> None:
    alice = Participant(browser, server, "Alice")
    alice.page.set_viewport_size({"width": 1600, "height": 1000})
    link = alice.create_meeting()
    alice.join()
    bob, carol = Participant(browser, server, "Bob"), Participant(browser, server, "Carol")
    for person in (bob, carol):
        person.join(link)
    alice.wait_for_playing({bob.self_id, carol.self_id})
    assert alice.attribute("#toggle-view", "aria-pressed") == "false"

    alice.click(f".tile[data-participant-id='{bob.self_id}'] .tile-pin")
    alice.wait_for(f"#featured > .tile[data-participant-id='{bob.self_id}']")
    assert alice.attribute("#toggle-view", "aria-pressed") == "true"
    assert alice.attribute(f".tile[data-participant-id='{bob.self_id}'] .tile-pin",
                           "aria-pressed") == "true"
    # Bob fills the stage: his full-size layer. Carol is in the strip: the smallest.
    wait_for_layer(alice, bob, "f")
    wait_for_layer(alice, carol, "q")
    alice.page.screenshot(path=str(artifacts / "speaker-view-pinned.png"))

    # Back to the gallery: everyone alike, the stage empty.
    alice.click("#toggle-view")
    alice.page.wait_for_selector("#featured > .tile", state="detached", timeout=10_000)
    assert alice.attribute("#toggle-view", "aria-pressed") == "false"
    alice.wait_for_playing({bob.self_id, carol.self_id})
    alice.page.screenshot(path=str(artifacts / "gallery-view.png"))
    for person in (alice, bob, carol):
        person.close()
