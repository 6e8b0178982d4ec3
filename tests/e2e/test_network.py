"""A meeting comes back by itself from what networks do. A relay of ours
(udp_relay.py) stands between the browsers and the SFU's UDP port: the server
tells browsers to send media to 127.0.0.2, where the relay listens, and the relay
blocks or drops one person's media while their signalling stays up.

Recovery times are printed (run with -s) for the note; no test asserts a time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from .impairment import NO_IMPAIRMENT, Impairment
from .participant import Participant, Server
from .server_process import start_server
from .test_states import RECORD_STATUSES, wait_for_code
from .udp_relay import RelayThread, UdpRelay

RELAY_IP = "127.0.0.2"
BLOCKED = Impairment(blocked=True)
MEDIA_TIMEOUT = 8.0
"""The server's default: silent this long, a participant shows as reconnecting."""


@contextmanager
def relayed_server(log_name: str, *extra: str) -> Iterator[tuple[Server, RelayThread]]:
    process, server = start_server(log_name, "--public-ip", RELAY_IP, *extra)
    try:
        with RelayThread(UdpRelay(server.media_port, listen_host=RELAY_IP)) as relay:
            yield server, relay
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def relayed() -> Iterator[tuple[Server, RelayThread]]:
    with relayed_server("network-server.log") as pair:
        yield pair


def join_noting_ports(person: Participant, relay: RelayThread, link: str | None = None,
                      ) -> set[int]:
    """Join, and return the local ports this browser's media came from."""
    before = set(relay.ports())
    person.join(link)
    person.page.locator("#encryption[data-state='e2ee']").wait_for(timeout=20_000)
    return set(relay.ports()) - before


def cut_off_all_but(relay: RelayThread, keep: set[int]) -> None:
    """Block everyone's media, new paths included, except these ports'."""
    relay.set(None, "both", BLOCKED)
    for port in keep:
        relay.set(port, "both", NO_IMPAIRMENT)


def frames_from(person: Participant, participant_id: str) -> int:
    return sum(v["frames"] for v in person.remote_videos()
               if v["participant"] == participant_id and v["kind"] == "camera")


def seconds_until_frames_advance(person: Participant, participant_id: str,
                                 timeout: float = 60) -> float:
    """From now until a new frame from this participant is decoded, polled every 0.1 s."""
    start = time.monotonic()
    before = frames_from(person, participant_id)
    while frames_from(person, participant_id) <= before:
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{person.name}: no new frame from {participant_id}")
        time.sleep(0.1)
    return time.monotonic() - start


@contextmanager
def three_people(browser: Browser, server: Server, relay: RelayThread,
                 ) -> Iterator[tuple[Participant, Participant, Participant, set[int]]]:
    """Alice hosts; Bob and Carol were let in. Returns them and Alice's and Bob's ports."""
    alice, bob, carol = (Participant(browser, server, name) for name in ("Alice", "Bob", "Carol"))
    try:
        link = alice.create_meeting()
        keep = join_noting_ports(alice, relay)
        keep |= join_noting_ports(bob, relay, link)
        carol.join(link)
        carol_id = carol.self_id
        for person in (alice, bob):
            assert carol_id in person.wait_for_playing({carol_id})
        assert alice.self_id in carol.wait_for_playing({alice.self_id})
        carol.evaluate(RECORD_STATUSES)
        yield alice, bob, carol, keep
    finally:
        relay.set(None, "both", NO_IMPAIRMENT)
        for person in (alice, bob, carol):
            person.close()


def wait_for_e2ee(person: Participant, everyone: tuple[Participant, ...]) -> None:
    """Wait for this person's chip to say end-to-end encrypted; if it does not, say
    what every chip says instead."""
    try:
        person.page.locator("#encryption[data-state='e2ee']").wait_for(timeout=20_000)
    except Exception as error:
        chips = {p.name: p.text("#encryption") for p in everyone}
        raise AssertionError(f"{person.name}'s chip is not end-to-end encrypted: {chips}",
                             ) from error


def tile(person: Participant, participant_id: str) -> Any:
    return person.page.locator(f".tile[data-participant-id='{participant_id}']")


@pytest.mark.parametrize("seconds", [3, 10, 25])
def test_a_blocked_network_comes_back_on_the_same_session(
    browser: Browser, relayed: tuple[Server, RelayThread], artifacts: Path, seconds: int,
) -> None:
    """Carol's UDP is blocked, both ways, while her signalling stays up. Before, at
    8 s the server dropped her, her tile vanished for the others, and her page
    rejoined from scratch into the lobby. Now the others see her tile marked
    "Reconnecting…" once she is silent past the media timeout, and she is back on
    the same session (same id, same security code) without the lobby."""
    server, relay = relayed
    with three_people(browser, server, relay) as (alice, bob, carol, keep):
        carol_id, code = carol.self_id, alice.security_code
        cut_off_all_but(relay, keep)
        blocked_at = time.monotonic()
        if seconds > MEDIA_TIMEOUT:
            tile(alice, carol_id).and_(alice.page.locator(".reconnecting")).wait_for(
                timeout=(MEDIA_TIMEOUT + 10) * 1000)
            alice.page.screenshot(path=str(artifacts / f"network-reconnecting-{seconds}s.png"))
        time.sleep(max(0.0, blocked_at + seconds - time.monotonic()))  # the outage itself
        assert tile(alice, carol_id).count() == 1, "Carol's tile went away during the outage"
        relay.set(None, "both", NO_IMPAIRMENT)
        back_at_alice = seconds_until_frames_advance(alice, carol_id)
        back_at_carol = seconds_until_frames_advance(carol, alice.self_id)
        print(f"\nblocked {seconds} s: Carol's video back at Alice {back_at_alice:.1f} s and"
              f" Alice's at Carol {back_at_carol:.1f} s after the network came back;"
              f" ICE restarts by Carol: {carol.evaluate('() => window.confideClient.iceRestarts')}")
        assert carol.self_id == carol_id, "Carol rejoined instead of coming back"
        tile(alice, carol_id).and_(alice.page.locator(".reconnecting")).wait_for(state="detached")
        for person in (alice, bob, carol):
            wait_for_e2ee(person, (alice, bob, carol))
            wait_for_code(person, code)
        assert "lobby" not in carol.evaluate("() => window.statusesSeen")


def test_past_the_grace_period_it_is_a_leave_and_a_rejoin_without_the_lobby(
    browser: Browser, artifacts: Path,
) -> None:
    """Blocked for longer than the server keeps a silent participant's place (here
    6 s, against 30 by default): the others see a clean leave and rekey; Carol's
    page rejoins by itself, on her admission pass, not into the lobby."""
    with relayed_server("network-grace-server.log", "--media-grace", "6") as (server, relay):
        with three_people(browser, server, relay) as (alice, bob, carol, keep):
            carol_id, code = carol.self_id, alice.security_code
            cut_off_all_but(relay, keep)
            tile(alice, carol_id).wait_for(state="detached", timeout=30_000)
            relay.set(None, "both", NO_IMPAIRMENT)
            carol.wait_for_status("connected", timeout=30)
            new_id = carol.self_id
            assert new_id != carol_id
            assert new_id in alice.wait_for_playing({new_id})
            assert alice.self_id in carol.wait_for_playing({alice.self_id})
            for person in (alice, bob, carol):
                wait_for_e2ee(person, (alice, bob, carol))
                wait_for_code(person, code)
            assert "lobby" not in carol.evaluate("() => window.statusesSeen")
            carol.page.screenshot(path=str(artifacts / "network-rejoined-after-grace.png"))


def frozen_share(person: Participant, participant_id: str, seconds: float) -> tuple[float, int]:
    """The share of `seconds` in which this participant's video showed no new frame
    for longer than 200 ms (a 30 fps picture stands still), polled every 0.1 s; and
    the frames decoded meanwhile."""
    start = last_advance = time.monotonic()
    first = last = frames_from(person, participant_id)
    frozen = 0.0
    previous = start
    while (now := time.monotonic()) - start < seconds:
        frames = frames_from(person, participant_id)
        if frames > last:
            last, last_advance = frames, now
        elif now - last_advance > 0.2:
            frozen += now - max(previous, last_advance + 0.2)
        previous = now
        time.sleep(0.1)
    return frozen / seconds, last - first


@pytest.mark.parametrize("percent", [5, 10, 20])
def test_video_keeps_decoding_through_loss_on_every_leg(
    browser: Browser, relayed: tuple[Server, RelayThread], percent: int,
) -> None:
    """Every packet, each way and for everyone, is lost with this probability. The
    SFU repairs what it receives (its own NACKs upstream) and what it sends (from its
    cache); Opus has in-band FEC. Before, 10 % loss on both legs left video frozen
    41 % of the time."""
    server, relay = relayed
    with three_people(browser, server, relay) as (alice, _bob, carol, _keep):
        def totals() -> tuple[int, int]:
            counts = [c for port in relay.ports() for c in relay.counters(port).values()]
            return sum(c.lost for c in counts), sum(c.passed for c in counts)

        lost_before, passed_before = totals()
        relay.set(None, "both", Impairment(loss=percent / 100))
        share, frames = frozen_share(alice, carol.self_id, 15.0)
        lost_after, passed_after = totals()
        lost, passed = lost_after - lost_before, passed_after - passed_before
        print(f"\n{percent} % loss on every leg ({lost / (lost + passed):.1%} of {lost + passed}"
              f" packets dropped by the relay): Carol's video at Alice frozen {share:.1%}"
              f" of 15 s, {frames / 15:.1f} frames a second decoded")
        assert lost > 0
        assert frames > 0, "no frame decoded under loss"
        # And still decoding at the end, not stalled for good.
        seconds_until_frames_advance(alice, carol.self_id, timeout=10)
