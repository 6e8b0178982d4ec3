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

from .firefox import FirefoxBrowser, FirefoxParticipant
from .participant import Participant, Person, Server


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
            f"security code {codes[name]}" in chip for name, chip in chips.items()
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
