"""A server that swaps a participant's announced key is caught by the others."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import Browser

from .participant import Participant, Server
from .tampering_proxy import TamperingProxy

ATTACKER_KEY = base64.b64encode(
    X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
).decode()


def swap_announced_keys(message: dict[str, Any]) -> dict[str, Any]:
    """What a malicious server would do to read the media: put its own X25519 key
    in place of each participant's, hoping to be sent their sender keys."""
    def swap(participant: dict[str, Any]) -> None:
        profile = json.loads(participant["profile"])
        profile["x"] = ATTACKER_KEY
        participant["profile"] = json.dumps(profile)

    if message["type"] == "welcome":
        for participant in message["participants"]:
            swap(participant)
    elif message["type"] == "joined":
        swap(message["participant"])
    return message


@pytest.fixture
def tampering_server(server: Server) -> Iterator[Server]:
    proxy = TamperingProxy(server.base_url, swap_announced_keys)
    proxy.start()
    yield Server(base_url=proxy.base_url, media_port=server.media_port, log_path=server.log_path,
                 metrics_url=server.metrics_url)
    proxy.stop()


def test_a_swapped_key_is_caught_and_nothing_is_shared(
    browser: Browser, tampering_server: Server
) -> None:
    alice = Participant(browser, tampering_server, "Alice")
    bob = Participant(browser, tampering_server, "Bob")
    alice.expects_alerts = bob.expects_alerts = True
    try:
        check_tampering_is_caught(alice, bob)
    finally:
        alice.close()
        bob.close()


def check_tampering_is_caught(alice: Participant, bob: Participant) -> None:
    link = alice.create_meeting()
    alice.join()
    bob.join(link)

    for person in (alice, bob):
        alert = person.page.locator("#security-alert")
        alert.wait_for(state="visible", timeout=10_000)
        assert "possible attack" in alert.inner_text()
        person.page.locator("#toggle-participants").click()
        other = bob if person is alice else alice
        entry = person.page.locator(f"#participant-list li[data-participant-id='{other.self_id}']")
        assert "unverified" in (entry.get_attribute("class") or "")
        assert "Not verified" in entry.inner_text()
        # The page never claims end-to-end encryption with someone it cannot verify.
        chip = person.page.locator("#encryption[data-state='failing']")
        chip.wait_for(timeout=10_000)
        assert "possible attack" in chip.inner_text()
        # No sender key went to the forged identity.
        assert person.page.evaluate(
            "() => [...window.confideClient.participants.values()].every((p) => p.peer === null)"
        )
    # And the security codes differ, for anyone who compares them aloud.
    codes = {p.page.locator("#security-code").inner_text() for p in (alice, bob)}
    assert len(codes) == 2


def is_sender_key(message: dict[str, Any]) -> bool:
    return message["type"] == "relay" and json.loads(message["body"]).get("t") == "sender-key"


def withhold_sender_keys(message: dict[str, Any]) -> dict[str, Any] | None:
    """The server keeps other people's sender keys from this client (and relays the
    rest, such as proofs of being here)."""
    return None if is_sender_key(message) else message


def test_withheld_keys_show_on_the_tile_not_a_frozen_picture(
    browser: Browser, server: Server
) -> None:
    proxy = TamperingProxy(server.base_url, withhold_sender_keys)
    proxy.start()
    # Only Alice's connection goes through the tampering proxy.
    tampered = Server(base_url=proxy.base_url, media_port=server.media_port,
                      log_path=server.log_path, metrics_url=server.metrics_url)
    alice = Participant(browser, tampered, "Alice")
    alice.expects_alerts = True
    bob = Participant(browser, server, "Bob")
    try:
        link = alice.create_meeting()
        alice.join()
        bob.join(link.replace(proxy.base_url, server.base_url))
        # Bob gets Alice's key and sees her; Alice cannot decrypt Bob and says so.
        assert alice.self_id in bob.wait_for_playing({alice.self_id})
        tile = alice.page.locator(f".tile.undecryptable[data-participant-id='{bob.self_id}']")
        tile.wait_for(timeout=15_000)
        assert "Can't decrypt" in tile.inner_text()
        chip = alice.page.locator("#encryption[data-state='failing']")
        chip.wait_for(timeout=10_000)
        assert "Cannot decrypt Bob" in chip.inner_text()
        # Bob decrypts Alice: his chip gets there once her first frame does (read as a
        # state to wait for, not once: on a busy machine that frame can come later).
        bob.page.locator("#encryption[data-state='e2ee']").wait_for(timeout=15_000)
    finally:
        alice.close()
        bob.close()
        proxy.stop()


def garble_sender_keys(message: dict[str, Any]) -> dict[str, Any]:
    """The server flips a byte in every wrapped sender key it relays."""
    if is_sender_key(message):
        body = json.loads(message["body"])
        sealed = bytearray(base64.b64decode(body["key"]))
        sealed[-1] ^= 1
        body["key"] = base64.b64encode(bytes(sealed)).decode()
        message["body"] = json.dumps(body)
    return message


def test_a_garbled_key_is_reported_as_a_possible_attack(browser: Browser, server: Server) -> None:
    proxy = TamperingProxy(server.base_url, garble_sender_keys)
    proxy.start()
    tampered = Server(base_url=proxy.base_url, media_port=server.media_port,
                      log_path=server.log_path, metrics_url=server.metrics_url)
    alice = Participant(browser, tampered, "Alice")
    alice.expects_alerts = True
    bob = Participant(browser, server, "Bob")
    try:
        link = alice.create_meeting()
        alice.join()
        bob.join(link.replace(proxy.base_url, server.base_url))
        alert = alice.page.locator("#security-alert")
        alert.wait_for(state="visible", timeout=10_000)
        assert "key from a participant failed to decrypt" in alert.inner_text()
        assert "possible attack" in alert.inner_text()
        alice.page.locator("#encryption[data-state='failing']").wait_for(timeout=10_000)
    finally:
        alice.close()
        bob.close()
        proxy.stop()
