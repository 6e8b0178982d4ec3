"""Simulcast under end-to-end encryption, in Chromium: a camera goes out as three VP8
encodings, each through the SFrame transform, and the SFU sends each receiver one of
them as a single stream. That every layer's frames are SFrame under the sender's key,
as the server sees them, is checked in test_e2ee.py."""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import Browser

from .participant import Participant, Server

# Per simulcast encoding of the camera: what the browser's encoder made of it.
CAMERA_LAYERS_JS = """async () => {
  const layers = [];
  (await window.confideClient.peerConnection.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) {
      layers.push({rid: s.rid, frames: s.framesEncoded || 0, width: s.frameWidth || 0,
                   mode: s.scalabilityMode || ''});
    }
  });
  return layers;
}"""

# What the page's frame worker counted: frames encrypted and dropped, and per receive
# slot the frames that decrypted and failed.
WORKER_COUNTS_JS = "() => window.confideClient._lastStats"


def camera_layers(person: Participant) -> dict[str, dict[str, Any]]:
    return {layer["rid"]: layer for layer in person.page.evaluate(CAMERA_LAYERS_JS)}


def wait_for_layers_encoding(person: Participant, timeout: float = 30) -> dict[str, Any]:
    """Until each of the three encodings has encoded more frames than a moment ago."""
    deadline = time.monotonic() + timeout
    before = camera_layers(person)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = camera_layers(person)
        if set(now) == {"q", "h", "f"} and all(
                now[rid]["frames"] > before.get(rid, {}).get("frames", 0) > 0 for rid in now):
            return now
        before = now
    raise AssertionError(f"{person.name}'s camera layers: {camera_layers(person)}")


def test_a_camera_goes_out_as_three_layers_and_each_viewer_gets_the_one_its_tile_needs(
    browser: Browser, server: Server,
) -> None:
    alice = Participant(browser, server, "Alice")
    link = alice.create_meeting()
    alice.join()
    # Three windows, small to large: between them they need all three layers.
    viewers = []
    for name, width, height in (("Bob", 400, 300), ("Carol", 900, 650), ("Dave", 2400, 1600)):
        viewer = Participant(browser, server, name)
        viewer.page.set_viewport_size({"width": width, "height": height})
        viewer.join(link)
        viewers.append(viewer)
    for viewer in viewers:
        viewer.wait_for_playing({alice.self_id})
    # Frames that came before their key count as failed; from here on none may fail.
    before = [viewer.page.evaluate(WORKER_COUNTS_JS)["receiving"] for viewer in viewers]

    layers = wait_for_layers_encoding(alice)
    # A quarter, half and full size of the same camera, each through the frame transform.
    assert 0 < layers["q"]["width"] < layers["h"]["width"] < layers["f"]["width"]
    assert alice.page.evaluate(WORKER_COUNTS_JS)["sending"]["encrypted"] > 0
    for rid, viewer in zip(("q", "h", "f"), viewers, strict=True):
        wait_for_layer(viewer, alice, rid)
    for viewer, counts_before in zip(viewers, before, strict=True):
        counts = viewer.page.evaluate(WORKER_COUNTS_JS)["receiving"]
        assert sum(slot["decrypted"] - counts_before[n]["decrypted"]
                   for n, slot in counts.items()) > 0
        assert all(slot["failed"] == counts_before[n]["failed"]
                   for n, slot in counts.items()), (viewer.name, counts_before, counts)
    for person in (alice, *viewers):
        person.close()


# The camera sender's encodings as the page last set them: which are active.
ACTIVE_LAYERS_JS = """() => window.confideClient.peerConnection.getSenders()
  .find((s) => s.track && s.track.kind === 'video' && s.getParameters().encodings.length === 3)
  ?.getParameters().encodings.map((e) => e.active) ?? null"""


def wait_for_layer(viewer: Participant, publisher: Participant, rid: str,
                   timeout: float = 30) -> None:
    """Until the viewer decodes the publisher's camera at the width the publisher's
    encoder gives that layer now (it can scale a layer down when the CPU is short),
    and more frames of it each moment."""
    deadline = time.monotonic() + timeout
    videos: list[dict[str, Any]] = []
    layers: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        layers = camera_layers(publisher)
        videos = [v for v in viewer.remote_videos() if v["participant"] == publisher.self_id]
        width = layers.get(rid, {}).get("width", 0)
        if width and videos and videos[0]["width"] == width and publisher.self_id in (
                viewer.playing_remote_videos()):
            return
        time.sleep(0.3)
    view = viewer.page.evaluate("() => window.confideClient._view")
    raise AssertionError(f"{viewer.name} shows {videos} of {publisher.name}, whose layers are"
                         f" {layers}; expected layer {rid}; {viewer.name}'s view: {view}")


def wait_for_active(person: Participant, active: list[bool], viewer: Participant,
                    timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    found = None
    while time.monotonic() < deadline:
        found = person.page.evaluate(ACTIVE_LAYERS_JS)
        if found == active:
            return
        time.sleep(0.2)
    view = viewer.page.evaluate("() => window.confideClient._view")
    raise AssertionError(f"{person.name}'s camera layers active: {found}, expected {active};"
                         f" {viewer.name}'s view: {view}")


def test_a_small_tile_gets_the_small_layer_and_layers_nobody_watches_are_paused(
    browser: Browser, server: Server,
) -> None:
    alice = Participant(browser, server, "Alice")
    link = alice.create_meeting()
    alice.join()
    bob = Participant(browser, server, "Bob")
    bob.page.set_viewport_size({"width": 400, "height": 300})
    bob.join(link)
    bob.wait_for_playing({alice.self_id})
    counts_before = bob.page.evaluate(WORKER_COUNTS_JS)["receiving"]

    # Bob's small window: Alice's tile is under 180 lines, so the quarter-size layer,
    # and Alice's encoder sends nothing else.
    wait_for_active(alice, [True, False, False], bob)
    wait_for_layer(bob, alice, "q")

    # A large window: the full-size layer, switched to at a key frame, and the small one
    # paused in its turn.
    bob.page.set_viewport_size({"width": 2400, "height": 1600})
    wait_for_active(alice, [False, False, True], bob)
    wait_for_layer(bob, alice, "f")

    # Not a frame failed to decrypt across the switches.
    counts = bob.page.evaluate(WORKER_COUNTS_JS)["receiving"]
    assert all(slot["failed"] == counts_before[n]["failed"]
               for n, slot in counts.items()), (counts_before, counts)
    alice.close()
    bob.close()
