"""Simulcast through the SFU, without sockets: a publisher sends its camera as three
VP8 layers, named by the rid header extension; each receiver gets one of them as a
single stream under the SFU's SSRC, and its feedback goes to the layer it gets."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest
from tests.test_sfu import (
    AUDIO_SSRC,
    MEDIA_PORT,
    MEETING,
    PUBLIC_IP,
    RID_EXTENSION_ID,
    VP8_PT,
    Browser,
    Network,
    OfferedSection,
    rtp_packet,
    rtp_sequence,
    rtp_ssrc,
)
from tests.test_vp8 import build as vp8_payload

from confide.sfu.endpoint import Endpoint
from confide.sfu.router import PublishedStream, Subscription
from confide.sfu.rtp import Nack, Pli, ReceiverReport, Remb, SenderReport
from confide.sfu.sfu import Sfu
from confide.sfu.vp8 import parse_descriptor

RIDS = ("q", "h", "f")
LAYER_SSRCS = (0x51000001, 0x51000002, 0x51000003)


def with_rid(packet: bytes, rid: str) -> bytes:
    """The packet with a one-byte header extension naming its rid (RFC 8285)."""
    value = rid.encode()
    element = bytes(((RID_EXTENSION_ID << 4) | (len(value) - 1),)) + value
    element += bytes(-len(element) % 4)
    extension = struct.pack("!HH", 0xBEDE, len(element) // 4) + element
    return bytes((packet[0] | 0x10,)) + packet[1:12] + extension + packet[12:]


@dataclass
class Layers:
    """A publishes audio and a simulcast camera; B receives both."""

    sfu: Sfu
    network: Network
    a: Browser
    b: Browser
    endpoint_a: Endpoint
    endpoint_b: Endpoint
    sequences: list[int]
    picture_ids: list[int]

    @property
    def source(self) -> PublishedStream:
        return self.endpoint_a.published["camera"]

    @property
    def subscription(self) -> Subscription:
        return self.endpoint_b.subscriptions[self.source.ssrc]

    def send(self, layer: int, now: float, *, key_frame: bool = False, rid: bool = True,
             frames: int = 1) -> None:
        """`frames` one-packet frames of a layer, 1/30 s apart in RTP time."""
        for _ in range(frames):
            self.sequences[layer] += 1
            self.picture_ids[layer] += 1
            payload = vp8_payload(picture_id=self.picture_ids[layer] & 0x7FFF,
                                  key_frame=key_frame)
            packet = rtp_packet(LAYER_SSRCS[layer], VP8_PT, self.sequences[layer],
                                3000 * self.sequences[layer], payload, marker=True)
            self.network.send(self.a, self.a.protect_rtp(with_rid(packet, RIDS[layer])
                                                         if rid else packet), now)
            key_frame = False

    def received(self) -> list[bytes]:
        self.network.deliver()
        packets, self.b.rtp = self.b.rtp, []
        return [p for p in packets if rtp_ssrc(p) != AUDIO_SSRC]

    def pli_to_a(self) -> list[int]:
        self.network.deliver()
        return [p.media_ssrc for p in self.a.take_rtcp(Pli)]


def set_up() -> Layers:
    sfu = Sfu(public_ip=PUBLIC_IP, media_port=MEDIA_PORT)
    network = Network(sfu)
    a, b = Browser(("192.0.2.10", 50010)), Browser(("192.0.2.20", 50020))
    endpoint_a = sfu.add_endpoint("a", MEETING)
    answer_a, changed = sfu.negotiate(endpoint_a, a.offer([
        OfferedSection("0", "audio", "sendonly", AUDIO_SSRC),
        OfferedSection("1", "video", "sendonly", rids=RIDS),
    ]), {"0": ("send", "audio"), "1": ("send", "camera")}, 0.0)
    assert changed
    a.take_answer(answer_a)
    endpoint_b = sfu.add_endpoint("b", MEETING)
    answer_b, _ = sfu.negotiate(endpoint_b, b.offer([
        OfferedSection("0", "audio", "recvonly"), OfferedSection("1", "video", "recvonly"),
    ]), {"0": ("recv", "a:audio"), "1": ("recv", "a:camera")}, 0.0)
    b.take_answer(answer_b)
    network.connect(a, 0.5)
    network.connect(b, 0.5)
    network.deliver()
    a.rtcp.clear()
    return Layers(sfu, network, a, b, endpoint_a, endpoint_b, [1000, 5000, 9000], [10, 200, 3000])


@pytest.fixture
def layers() -> Layers:
    return set_up()


def all_layers_flowing(layers: Layers, now: float, key_frame: bool = True) -> None:
    """One frame of each layer, the largest first (a receiver starts with whatever
    layer flows first that it may have)."""
    for layer in (2, 1, 0):
        layers.send(layer, now, key_frame=key_frame)


def test_the_publishers_answer_takes_three_layers_and_the_receivers_gets_one_ssrc(
    layers: Layers,
) -> None:
    assert layers.a.answer is not None and layers.b.answer is not None
    source = layers.source
    assert source.rids == RIDS and source.ssrc not in LAYER_SSRCS
    assert layers.b.answer.sections[1].ssrcs == [source.ssrc]
    assert [s.id for s in layers.sfu.meeting_streams(MEETING)] == ["a:audio", "a:camera"]


def test_layers_are_learned_from_their_rid_and_the_largest_is_forwarded(layers: Layers) -> None:
    all_layers_flowing(layers, 1.0)
    got = layers.received()
    assert [rtp_ssrc(p) for p in got] == [layers.source.ssrc]
    assert {layer.ssrc: layer.layer for layer in layers.source.layer_streams()} == dict(
        zip(LAYER_SSRCS, range(3), strict=True))
    # The largest layer, renumbered: its picture IDs start where nothing was sent before.
    assert parse_descriptor(got[0][12:]).picture_id == layers.picture_ids[2]
    layers.send(2, 1.1, frames=3)
    following = layers.received()
    assert [rtp_sequence(p) for p in following] == [
        (rtp_sequence(got[0]) + i) & 0xFFFF for i in (1, 2, 3)]


def test_a_packet_naming_no_layer_is_dropped_and_counted(layers: Layers) -> None:
    layers.send(0, 1.0, key_frame=True, rid=False)
    assert layers.received() == []
    assert layers.sfu.counters["dropped_unknown_ssrc"] == 1
    assert layers.source.layer_streams() == []


def test_a_receiver_asking_for_the_small_layer_gets_it_from_its_next_key_frame(
    layers: Layers,
) -> None:
    all_layers_flowing(layers, 1.0)
    first = layers.received()
    layers.sfu.want_layers(layers.endpoint_b, {"a:camera": 0})
    all_layers_flowing(layers, 1.1, key_frame=False)
    # Layer 0 is asked for a key frame; until it comes, the large layer goes on.
    assert layers.pli_to_a() == [LAYER_SSRCS[0]]
    assert len(layers.received()) == 1
    layers.send(0, 1.2, key_frame=True)
    layers.send(2, 1.2)
    switched = layers.received()
    assert len(switched) == 1
    assert parse_descriptor(switched[0][12:]).key_frame
    # One stream for the receiver: numbers carry on across the switch.
    assert rtp_sequence(switched[0]) == (rtp_sequence(first[0]) + 2) & 0xFFFF


def test_when_the_largest_layer_stops_its_receivers_fall_to_the_next(layers: Layers) -> None:
    all_layers_flowing(layers, 1.0)
    layers.received()
    # The publisher's uplink is short: it stops sending its largest layer.
    for now in (1.5, 2.0, 2.5):
        layers.send(0, now)
        layers.send(1, now)
    assert LAYER_SSRCS[1] in layers.pli_to_a()
    layers.send(1, 2.6, key_frame=True)
    got = layers.received()
    assert len(got) == 1 and parse_descriptor(got[0][12:]).key_frame


def test_a_receivers_pli_goes_to_the_layer_it_gets(layers: Layers) -> None:
    all_layers_flowing(layers, 1.0)
    layers.received()
    layers.network.send(layers.b, layers.b.protect_rtcp(
        [Pli(layers.b.rtcp_ssrc, layers.source.ssrc)]), 2.0)
    assert layers.pli_to_a() == [LAYER_SSRCS[2]]


def test_a_receivers_nack_is_answered_with_exactly_what_was_sent(layers: Layers) -> None:
    # After a switch from the small layer, so that the large one's numbers all move.
    layers.sfu.want_layers(layers.endpoint_b, {"a:camera": 0})
    all_layers_flowing(layers, 1.0)
    layers.sfu.want_layers(layers.endpoint_b, {"a:camera": 2})
    layers.send(2, 1.05, key_frame=True)
    first = layers.received()[-1]
    assert parse_descriptor(first[12:]).picture_id != layers.picture_ids[2]
    layers.send(2, 1.1)
    layers.network.discard()  # lost on the way to B
    layers.send(2, 1.2)
    (third,) = layers.received()
    lost = (rtp_sequence(first) + 1) & 0xFFFF
    assert rtp_sequence(third) == (lost + 1) & 0xFFFF
    layers.network.send(layers.b, layers.b.protect_rtcp(
        [Nack(layers.b.rtcp_ssrc, layers.source.ssrc, [lost])]), 1.3)
    (resent,) = layers.received()
    # What the forwarder made of the lost frame: the next numbers on every count.
    picture_id = parse_descriptor(first[12:]).picture_id
    assert picture_id is not None
    timestamp = (int.from_bytes(first[4:8], "big") + 3000) & 0xFFFFFFFF
    assert resent == first[:2] + struct.pack("!HII", lost, timestamp, layers.source.ssrc) + (
        vp8_payload(picture_id=(picture_id + 1) & 0x7FFF))
    assert layers.sfu.counters["nack_answered"] == 1


def test_a_nack_for_what_was_never_sent_is_not_answered(layers: Layers) -> None:
    all_layers_flowing(layers, 1.0)
    got = layers.received()
    layers.network.send(layers.b, layers.b.protect_rtcp([Nack(
        layers.b.rtcp_ssrc, layers.source.ssrc, [(rtp_sequence(got[0]) + 40) & 0xFFFF])]), 1.2)
    assert layers.received() == []
    assert layers.sfu.counters["nack_too_old"] == 1


def test_sender_reports_reach_the_receiver_for_the_layer_it_gets_in_its_numbers(
    layers: Layers,
) -> None:
    # B starts on the small layer and moves to the large one, whose timestamps then
    # carry on from the small one's: the large layer's reports must be translated.
    layers.sfu.want_layers(layers.endpoint_b, {"a:camera": 0})
    all_layers_flowing(layers, 1.0)
    layers.sfu.want_layers(layers.endpoint_b, {"a:camera": 2})
    layers.send(2, 1.1, key_frame=True)
    got = layers.received()
    out_timestamp = int.from_bytes(got[-1][4:8], "big")
    assert out_timestamp != 3000 * layers.sequences[2]
    for layer, ssrc in enumerate(LAYER_SSRCS):
        report = SenderReport(ssrc=ssrc, ntp_timestamp=1 << 40, rtp_timestamp=(
            3000 * layers.sequences[layer] + 900), packet_count=1, octet_count=1, reports=[])
        layers.network.send(layers.a, layers.a.protect_rtcp([report]), 1.2)
    layers.network.deliver()
    reports = layers.b.take_rtcp(SenderReport)
    assert [(r.ssrc, r.rtp_timestamp) for r in reports] == [
        (layers.source.ssrc, (out_timestamp + 900) & 0xFFFFFFFF)]


def test_the_publisher_gets_reports_and_remb_for_each_layer(layers: Layers) -> None:
    all_layers_flowing(layers, 1.0)
    layers.sfu.handle_timer(2.0)
    layers.network.deliver()
    reports = layers.a.take_rtcp(ReceiverReport)
    assert {block.ssrc for r in reports for block in r.reports} == set(LAYER_SSRCS)
    (remb,) = layers.a.take_rtcp(Remb)
    assert set(remb.ssrcs) == set(LAYER_SSRCS)


def test_renegotiating_the_same_layers_keeps_the_source_and_its_layers(layers: Layers) -> None:
    all_layers_flowing(layers, 1.0)
    source = layers.source
    _, changed = layers.sfu.negotiate(layers.endpoint_a, layers.a.offer([
        OfferedSection("0", "audio", "sendonly", AUDIO_SSRC),
        OfferedSection("1", "video", "sendonly", rids=RIDS),
    ]), {"0": ("send", "audio"), "1": ("send", "camera")}, 1.5)
    assert not changed and layers.source is source
    assert len(source.layer_streams()) == 3


def test_a_source_that_goes_away_takes_its_layers_with_it(layers: Layers) -> None:
    all_layers_flowing(layers, 1.0)
    layers.sfu.remove_endpoint(layers.endpoint_a)
    assert not set(LAYER_SSRCS) & set(layers.endpoint_a.published_by_ssrc)
    assert layers.endpoint_b.subscriptions == {}



def test_a_tile_off_screen_gets_no_video_until_it_is_back_and_a_key_frame_comes(
    layers: Layers,
) -> None:
    all_layers_flowing(layers, 1.0)
    (first,) = layers.received()
    layers.sfu.set_view(layers.endpoint_b, {"a:camera": 0})
    layers.send(2, 1.1, frames=3)
    assert layers.received() == []
    assert layers.pli_to_a() == []  # nobody needs a key frame for a hidden tile
    layers.sfu.set_view(layers.endpoint_b, {"a:camera": 1000})
    layers.send(2, 1.2)
    assert layers.received() == [] and layers.pli_to_a() == [LAYER_SSRCS[2]]
    layers.send(2, 1.3, key_frame=True)
    (back,) = layers.received()
    # One stream still: the receiver sees no gap to ask for again.
    assert rtp_sequence(back) == (rtp_sequence(first) + 1) & 0xFFFF


def test_a_view_gets_the_smallest_layer_at_least_as_tall_as_each_tile(layers: Layers) -> None:
    # Before any key frame the layers are taken as 180, 360 and 720 lines tall.
    assert layers.source.layer_heights() == [180, 360, 720]
    for height, layer in ((100, 0), (180, 0), (181, 1), (700, 2), (2160, 2)):
        layers.sfu.set_view(layers.endpoint_b, {"a:camera": height})
        assert layers.subscription.wanted_layer == layer
    # Key frames say how tall each layer really is (the test encoder's are 480 lines).
    all_layers_flowing(layers, 1.0)
    assert layers.source.layer_heights() == [480, 480, 480]
    layers.sfu.set_view(layers.endpoint_b, {"a:camera": 400})
    assert layers.subscription.wanted_layer == 0


def test_a_view_naming_other_streams_changes_nothing(layers: Layers) -> None:
    layers.sfu.set_view(layers.endpoint_b, {"a:audio": 0, "z:camera": 0, "a:screen": 10})
    assert layers.subscription.wanted_layer == 2


def test_the_publisher_is_asked_only_for_the_layers_someone_watches(layers: Layers) -> None:
    assert layers.source.layer_demand() == (False, False, True)
    layers.sfu.set_view(layers.endpoint_b, {"a:camera": 150})
    assert layers.source.layer_demand() == (True, False, False)
    layers.sfu.set_view(layers.endpoint_b, {"a:camera": 0})
    assert layers.source.layer_demand() == (False, False, False)
    layers.sfu.remove_endpoint(layers.endpoint_b)
    assert layers.source.layer_demand() == (False, False, False)


def test_a_view_that_came_before_the_subscription_applies_to_it() -> None:
    layers = set_up()
    layers.sfu.set_view(layers.endpoint_b, {"a:camera": 100, "a:screen": 500})
    # B's page renegotiates: its camera subscription is made afresh, after the view.
    layers.sfu.remove_endpoint(layers.endpoint_b)
    endpoint = layers.sfu.add_endpoint("b2", MEETING)
    layers.sfu.set_view(endpoint, {"a:camera": 100})
    layers.sfu.negotiate(endpoint, layers.b.offer([
        OfferedSection("0", "audio", "recvonly"), OfferedSection("1", "video", "recvonly"),
    ]), {"0": ("recv", "a:audio"), "1": ("recv", "a:camera")}, 2.0)
    assert endpoint.subscriptions[layers.source.ssrc].wanted_layer == 0
    assert layers.source.layer_demand() == (True, False, False)
