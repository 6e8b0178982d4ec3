"""End-to-end encryption, proven from the server's side.

A capturing server records everything it can read: RTP and RTCP after SRTP
decryption, and every signalling message. Three people meet and chat, one
leaves, one arrives. Then, from the capture alone:
- every audio and video frame is an SFrame frame that opens with its sender's
  key and with no one else's;
- no display name or chat text appears in anything the server received or logged;
- the leaver's last keys do not open what was sent after the rekey;
- the newcomer's keys do not open what was sent before they joined.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from confide.e2ee.keys import ratchet
from confide.e2ee.sframe import SFrameReceiver, decode_header

from .capture import Frame, read_all_bytes, read_frames, read_signalling
from .participant import RECORD_KEYS, Participant, Server
from .server_process import start_server

NAMES = ["Anneliese Vandersloot", "Bartholomew Quill", "Cordelia Oyelaran", "Desmond Achterberg"]
CHAT = ["the merger closes on the fourteenth", "ask Priya about the Lagos office"]


@dataclass
class KeyRecord:
    kid: int
    key: bytes
    time: float


def keys_of(person: Participant, which: str) -> list[KeyRecord]:
    raw = person.page.evaluate(f"() => window.__{which}")
    return [KeyRecord(r["kid"], bytes(r["key"]), r["t"]) for r in raw]


def opens(frame: Frame, kid: int, key: bytes) -> bool:
    receiver = SFrameReceiver()
    receiver.add_key(kid, key)
    try:
        receiver.decrypt(frame.sframe, frame.metadata)
    except ValueError:
        return False
    return True


def frame_kid(frame: Frame) -> int:
    return decode_header(frame.sframe)[0]


@dataclass
class Recorded:
    capture: Path
    log: Path
    people: dict[str, Participant]
    ids: dict[str, str]
    send_keys: dict[str, list[KeyRecord]]
    receive_keys: dict[str, list[KeyRecord]]
    left_at: float
    joined_at: float
    keys_read_at: float
    """Frames after this (the server shutting down makes people rekey) are not checked."""

    def frames(self) -> list[Frame]:
        return [f for f in read_frames(self.capture) if f.time < self.keys_read_at]


@pytest.fixture(scope="module")
def recorded(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    capture = tmp_path_factory.mktemp("capture")
    process, server = start_server(
        "capturing-server.log", launcher=("tests.e2e.capturing_server", str(capture))
    )
    people: dict[str, Participant] = {}
    try:
        def arrive(name: str, link: str | None) -> str:
            person = Participant(browser, server, name)
            person.context.add_init_script(RECORD_KEYS)
            people[name] = person
            if link is None:
                link = person.create_meeting()
                person.join()
            else:
                person.join(link)
            return link

        link = arrive(NAMES[0], None)
        arrive(NAMES[1], link)
        arrive(NAMES[2], link)
        ids = {name: p.self_id for name, p in people.items()}
        for name, person in people.items():
            person.wait_for_playing({i for n, i in ids.items() if n != name})
        people[NAMES[0]].send_chat(CHAT[0])
        people[NAMES[1]].page.locator("#toggle-chat").click()
        people[NAMES[1]].page.wait_for_selector(f".chat-message:has-text('{CHAT[0]}')")
        people[NAMES[1]].send_chat(CHAT[1])
        people[NAMES[0]].page.wait_for_selector(f".chat-message:has-text('{CHAT[1]}')")

        leaver = people[NAMES[2]]
        receive_keys = {NAMES[2]: keys_of(leaver, "receiveKeys")}
        left_at = time.time()
        leaver.page.locator("#leave").click()
        for name in (NAMES[0], NAMES[1]):
            # A fresh key in use, then a couple of seconds of frames under it.
            people[name].page.wait_for_function(
                "(since) => window.__sendKeys.some((r) => r.t > since)", arg=left_at)
        time.sleep(2)

        joined_at = time.time()
        arrive(NAMES[3], link)
        ids[NAMES[3]] = people[NAMES[3]].self_id
        people[NAMES[3]].wait_for_playing({ids[NAMES[0]], ids[NAMES[1]]})
        time.sleep(2)

        keys_read_at = time.time()
        send_keys = {name: keys_of(people[name], "sendKeys") for name in (NAMES[0], NAMES[1])}
        receive_keys[NAMES[3]] = keys_of(people[NAMES[3]], "receiveKeys")
    finally:
        process.terminate()
        process.wait(timeout=10)
    yield Recorded(capture, server.log_path, people, ids, send_keys, receive_keys,
                   left_at, joined_at, keys_read_at)
    for person in people.values():
        person.close()


def test_every_frame_the_server_saw_opens_only_with_its_senders_key(recorded: Recorded) -> None:
    frames = [f for f in recorded.frames()
              if f.sender in (recorded.ids[NAMES[0]], recorded.ids[NAMES[1]])]
    assert len([f for f in frames if f.kind == "video"]) > 100
    assert len([f for f in frames if f.kind == "audio"]) > 300
    # Each camera goes out as three simulcast layers, each its own stream: all checked.
    for name in (NAMES[0], NAMES[1]):
        video = [f for f in frames if f.sender == recorded.ids[name] and f.kind == "video"]
        assert len({f.ssrc for f in video}) >= 3, f"{name}'s camera came in fewer than 3 layers"
    by_sender = {recorded.ids[name]: recorded.send_keys[name] for name in recorded.send_keys}
    for frame in frames:
        kid = frame_kid(frame)
        own = [k.key for k in by_sender[frame.sender] if k.kid == kid]
        assert own, f"a frame from {frame.sender} with KID {kid} under no key its sender used"
        assert opens(frame, kid, own[-1]), "a captured frame is not SFrame under its sender's key"
        others = [k.key for s, keys in by_sender.items() if s != frame.sender for k in keys]
        assert not any(opens(frame, kid, other) for other in others[:3])


def test_no_name_or_chat_text_reaches_the_server(recorded: Recorded) -> None:
    seen = read_all_bytes(recorded.capture) + recorded.log.read_bytes()
    # Whole names and texts, and words distinctive enough not to turn up by chance.
    needles = NAMES + CHAT + [name.split()[0] for name in NAMES] + ["merger", "Lagos"]
    for needle in needles:
        assert needle.encode() not in seen, f"{needle!r} reached the server"
    # The search itself works: chat and profiles did pass through, as ciphertext.
    texts = read_signalling(recorded.capture)
    assert sum('"type": "chat"' in t or '"type":"chat"' in t for t in texts) == 2
    assert any('"type":"relay"' in t for t in texts)


def test_the_leavers_keys_do_not_open_what_follows_the_rekey(recorded: Recorded) -> None:
    """Per sender and stream, from the first frame under a key the leaver never had
    (the rekey), every later frame is out of the leaver's reach."""
    leaver_keys = recorded.receive_keys[NAMES[2]]
    assert leaver_keys, "the leaver received keys while in the meeting"
    leaver_kids = {record.kid for record in leaver_keys}
    between = [f for f in recorded.frames() if recorded.left_at < f.time < recorded.joined_at]
    for name in (NAMES[0], NAMES[1]):
        for kind in ("audio", "video"):
            stream = [f for f in between if f.sender == recorded.ids[name] and f.kind == kind]
            rekeyed = next((i for i, f in enumerate(stream) if frame_kid(f) not in leaver_kids),
                           None)
            assert rekeyed is not None, f"{name}'s {kind} never left the leaver's keys"
            after = stream[rekeyed:]
            assert len(after) > 20
            for frame in after[::5]:
                kid = frame_kid(frame)
                assert kid not in leaver_kids, "a sender went back to a key the leaver had"
                for record in leaver_keys:
                    key = record.key
                    for _ in range(4):  # nor does any key the leaver could ratchet to
                        assert not opens(frame, kid, key)
                        key = ratchet(key)


def test_the_newcomers_keys_do_not_open_what_came_before(recorded: Recorded) -> None:
    newcomer_keys = recorded.receive_keys[NAMES[3]]
    assert newcomer_keys, "the newcomer received keys"
    before = [f for f in recorded.frames() if f.time < recorded.joined_at]
    assert len(before) > 100
    for frame in before[::10]:
        kid = frame_kid(frame)
        for record in newcomer_keys:
            assert not opens(frame, kid, record.key)


def test_senders_rotate_their_keys_on_a_timer_without_losing_a_frame(browser: Browser,
                                                                     server: Server) -> None:
    """Every sender takes a fresh key every few minutes, joins or not (here every
    1.5 s): the receiver follows each new epoch, and no frame fails to decrypt."""
    alice = Participant(browser, server, "Alice")
    bob = Participant(browser, server, "Bob")
    try:
        link = alice.create_meeting()
        alice.join()
        bob.join(link)
        assert bob.self_id in alice.wait_for_playing({bob.self_id})
        read = """(peer) => {
          const client = window.confideClient;
          const slots = client._receiving.filter((s) => s.shown?.participant === peer);
          return slots.map((s) => client._lastStats?.receiving[s.slot]).filter(Boolean);
        }"""
        before = alice.evaluate(read, bob.self_id)
        bob.evaluate("() => window.confideClient._startKeyRotation(1500)")
        epoch = lambda stats: max(  # noqa: E731 - the last decrypted frame's, -1 before any
            (s["kid"] % 256 for s in stats if s["kid"] >= 0), default=0)
        deadline = time.monotonic() + 30
        while epoch(alice.evaluate(read, bob.self_id)) < epoch(before) + 4:
            assert time.monotonic() < deadline, "Bob's key did not rotate at Alice's"
            time.sleep(0.5)
        after = alice.evaluate(read, bob.self_id)
        assert sum(s["failed"] for s in after) == sum(s["failed"] for s in before)
        assert sum(s["decrypted"] for s in after) > sum(s["decrypted"] for s in before)
        assert bob.self_id in alice.wait_for_playing({bob.self_id})
    finally:
        alice.close()
        bob.close()
