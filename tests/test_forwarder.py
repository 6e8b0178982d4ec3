"""SimulcastForwarder: one VP8 layer at a time, renumbered into one continuous stream."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise

import pytest

from confide.sfu.forwarder import (
    KEY_FRAME_REQUEST_INTERVAL,
    SEQUENCE_WINDOW,
    Forwarded,
    SimulcastForwarder,
)
from confide.sfu.vp8 import Vp8Descriptor, parse_descriptor
from test_vp8 import build

OUTPUT_SSRC = 0x0C0FFEE0
FRAME_TICKS = 3000  # 30 frames a second at 90 kHz
FRAME_SECONDS = 1 / 30


@dataclass(frozen=True)
class Packet:
    layer: int
    sequence: int
    timestamp: int
    marker: bool
    payload: bytes


def vp8_payload(
    *,
    start: bool,
    key_frame: bool,
    picture_id: int | None,
    picture_id_bits: int,
    tl0picidx: int | None,
    temporal_id: int | None,
    layer_sync: bool,
) -> bytes:
    """A payload as Chrome sends it under E2EE: descriptor, clear header octets, ciphertext."""
    return build(picture_id=picture_id, long_picture_id=picture_id_bits == 15,
                 tl0picidx=tl0picidx, start=start, key_frame=key_frame,
                 temporal=None if temporal_id is None else (temporal_id, layer_sync))


@dataclass
class Layer:
    """One simulcast layer of a publisher: its own SSRC's numbering, all of it arbitrary."""

    index: int
    sequence: int
    timestamp: int
    picture_id: int | None = 100
    tl0picidx: int | None = 10
    picture_id_bits: int = 15
    temporal: bool = True
    """Whether packets carry a TID (the T bit)."""
    frames: int = field(default=0, init=False)

    def frame(
        self,
        *,
        key: bool = False,
        temporal_id: int = 0,
        sync: bool = False,
        packets: int = 1,
    ) -> list[Packet]:
        """The packets of the next frame, in order."""
        if self.frames:
            self.timestamp = (self.timestamp + FRAME_TICKS) & 0xFFFFFFFF
            if self.picture_id is not None:
                self.picture_id = (self.picture_id + 1) % (1 << self.picture_id_bits)
            if self.tl0picidx is not None and temporal_id == 0:
                self.tl0picidx = (self.tl0picidx + 1) & 0xFF
        self.frames += 1
        result = []
        for index in range(packets):
            payload = vp8_payload(
                start=index == 0,
                key_frame=key,
                picture_id=self.picture_id,
                picture_id_bits=self.picture_id_bits,
                tl0picidx=self.tl0picidx,
                temporal_id=temporal_id if self.temporal else None,
                layer_sync=sync,
            )
            marker = index == packets - 1
            result.append(Packet(self.index, self.sequence, self.timestamp, marker, payload))
            self.sequence = (self.sequence + 1) & 0xFFFF
        return result

    def padding(self) -> Packet:
        packet = Packet(self.index, self.sequence, self.timestamp, False, b"")
        self.sequence = (self.sequence + 1) & 0xFFFF
        return packet


class Receiver:
    """Drives a forwarder with `now` advancing a frame interval per frame sent."""

    def __init__(self, forwarder: SimulcastForwarder) -> None:
        self.forwarder = forwarder
        self.now = 100.0
        self.out: list[Forwarded] = []

    def send(self, packets: list[Packet], *, tick: bool = True) -> list[Forwarded]:
        if tick:
            self.now += FRAME_SECONDS
        sent = []
        for packet in packets:
            result = self.forwarder.forward(
                packet.layer,
                packet.sequence,
                packet.timestamp,
                packet.marker,
                packet.payload,
                self.now,
            )
            if result is not None:
                sent.append(result)
        self.out.extend(sent)
        return sent


def layers() -> list[Layer]:
    """Three layers with unrelated numbering, as Chrome's are."""
    return [
        Layer(0, sequence=1000, timestamp=500_000, picture_id=300, tl0picidx=40),
        Layer(1, sequence=30_000, timestamp=9_000_000, picture_id=20_000, tl0picidx=200),
        Layer(2, sequence=60_000, timestamp=3_000_000_000, picture_id=7, tl0picidx=0),
    ]


def descriptor(forwarded: Forwarded) -> Vp8Descriptor:
    return parse_descriptor(forwarded.payload)


def sequence_steps(out: list[Forwarded]) -> list[int]:
    return [(b.sequence_number - a.sequence_number) & 0xFFFF for a, b in pairwise(out)]


def frame_starts(out: list[Forwarded]) -> list[Forwarded]:
    return [packet for packet in out if descriptor(packet).frame_start]


def timestamp_steps(out: list[Forwarded]) -> list[int]:
    starts = frame_starts(out)
    return [(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in pairwise(starts)]


def picture_id_steps(out: list[Forwarded]) -> list[int]:
    starts = [descriptor(packet) for packet in frame_starts(out)]
    return [(b.picture_id - a.picture_id) % (1 << b.picture_id_bits) for a, b in pairwise(starts)]


def tl0picidx_steps(out: list[Forwarded]) -> list[int]:
    bases = [descriptor(packet) for packet in frame_starts(out)]
    bases = [d for d in bases if d.temporal_id in (0, None)]
    return [(b.tl0picidx - a.tl0picidx) & 0xFF for a, b in pairwise(bases)]


def started_on(layer_index: int, *, temporal: int = 3) -> tuple[Receiver, list[Layer]]:
    """A receiver already forwarding `layer_index`, from one key frame."""
    receiver = Receiver(SimulcastForwarder(OUTPUT_SSRC, spatial=layer_index, temporal=temporal))
    source = layers()
    assert receiver.send(source[layer_index].frame(key=True, packets=2))
    return receiver, source


# --- Starting ----------------------------------------------------------------------------------


def test_nothing_is_forwarded_before_a_key_frame_of_the_target() -> None:
    receiver = Receiver(SimulcastForwarder(OUTPUT_SSRC, spatial=1))
    source = layers()
    assert receiver.send(source[1].frame()) == []
    assert receiver.send(source[0].frame(key=True)) == []
    assert receiver.send(source[2].frame(key=True)) == []
    assert receiver.forwarder.current_spatial is None
    assert len(receiver.send(source[1].frame(key=True, packets=3))) == 3
    assert receiver.forwarder.current_spatial == 1


def test_first_layer_passes_through_with_its_own_numbering_and_payload() -> None:
    receiver = Receiver(SimulcastForwarder(OUTPUT_SSRC, spatial=0))
    layer = layers()[0]
    packets = layer.frame(key=True, packets=2) + layer.frame(packets=2)
    out = receiver.send(packets)
    assert [p.sequence_number for p in out] == [p.sequence for p in packets]
    assert [p.timestamp for p in out] == [p.timestamp for p in packets]
    assert [p.marker for p in out] == [p.marker for p in packets]
    assert all(o.payload is p.payload for o, p in zip(out, packets, strict=True))  # not even copied
    assert {p.ssrc for p in out} == {OUTPUT_SSRC}
    assert [p.key_frame for p in out] == [True, False, False, False]


def test_other_layers_are_dropped_while_one_is_forwarded() -> None:
    receiver, source = started_on(1)
    assert receiver.send(source[0].frame(key=True)) == []
    assert receiver.send(source[2].frame(key=True)) == []
    assert len(receiver.send(source[1].frame())) == 1


# --- Switching spatial layers -------------------------------------------------------------------


def test_switch_up_waits_for_a_key_frame_of_the_target() -> None:
    receiver, source = started_on(0)
    receiver.forwarder.set_target(2, 3)
    for _ in range(5):
        out = receiver.send(source[0].frame() + source[2].frame(packets=2))
        assert [p.sequence_number for p in out] == [source[0].sequence - 1]
    assert receiver.forwarder.current_spatial == 0
    out = receiver.send(source[0].frame() + source[2].frame(key=True, packets=2))
    assert len(out) == 3  # the low frame before the key frame, then the key frame
    assert out[1].key_frame
    assert receiver.forwarder.current_spatial == 2
    assert receiver.send(source[0].frame()) == []


def test_switch_down_also_waits_for_a_key_frame() -> None:
    receiver, source = started_on(2)
    receiver.forwarder.set_target(0, 3)
    assert len(receiver.send(source[2].frame() + source[0].frame())) == 1
    assert receiver.forwarder.current_spatial == 2
    receiver.send(source[0].frame(key=True))
    assert receiver.forwarder.current_spatial == 0


def test_a_key_frame_of_a_layer_that_is_not_the_target_does_not_switch() -> None:
    receiver, source = started_on(0)
    receiver.forwarder.set_target(2, 3)
    assert receiver.send(source[1].frame(key=True)) == []
    assert receiver.forwarder.current_spatial == 0


def test_only_the_first_packet_of_a_key_frame_switches() -> None:
    receiver, source = started_on(0)
    receiver.forwarder.set_target(1, 3)
    later_packets = source[1].frame(key=True, packets=3)[1:]
    assert receiver.send(later_packets) == []
    assert receiver.forwarder.current_spatial == 0


def test_sequence_numbers_continue_across_switches() -> None:
    receiver, source = started_on(0)
    for target in (2, 1, 0, 2):
        receiver.forwarder.set_target(target, 3)
        for layer in source:
            receiver.send(layer.frame(packets=2))
        receiver.send(source[target].frame(key=True, packets=3))
        for layer in source:
            receiver.send(layer.frame(packets=2))
        assert receiver.forwarder.current_spatial == target
    assert sequence_steps(receiver.out) == [1] * (len(receiver.out) - 1)


def test_timestamps_continue_by_the_time_elapsed_at_a_switch() -> None:
    receiver, source = started_on(0)
    receiver.forwarder.set_target(2, 3)
    last = receiver.send(source[0].frame())[-1]
    receiver.now += 0.5  # the key frame comes half a second later
    first = receiver.send(source[2].frame(key=True), tick=False)[0]
    assert first.timestamp == (last.timestamp + 45_000) & 0xFFFFFFFF
    # From there on, the new layer's own spacing.
    following = receiver.send(source[2].frame())[0]
    assert following.timestamp == (first.timestamp + FRAME_TICKS) & 0xFFFFFFFF


def test_timestamp_advances_at_least_one_tick_at_a_switch_in_the_same_instant() -> None:
    receiver, source = started_on(0)
    receiver.forwarder.set_target(1, 3)
    out = receiver.send(source[0].frame() + source[1].frame(key=True))
    assert out[1].timestamp == (out[0].timestamp + 1) & 0xFFFFFFFF


def test_picture_id_and_tl0picidx_continue_across_switches() -> None:
    receiver, source = started_on(0)
    for target in (2, 1, 0):
        receiver.forwarder.set_target(target, 3)
        receiver.send(source[0].frame() + source[1].frame() + source[2].frame())
        receiver.send(source[target].frame(key=True, packets=2))
        receiver.send(source[target].frame(packets=2))
    assert set(picture_id_steps(receiver.out)) == {1}
    assert set(tl0picidx_steps(receiver.out)) == {1}
    # Every packet of a frame carries the frame's renumbered PictureID.
    for packet in receiver.out:
        if not descriptor(packet).frame_start:
            assert (
                descriptor(packet).picture_id
                == descriptor(previous_start(receiver, packet)).picture_id
            )


def previous_start(receiver: Receiver, packet: Forwarded) -> Forwarded:
    index = receiver.out.index(packet)
    return next(p for p in reversed(receiver.out[:index]) if descriptor(p).frame_start)


def test_rewritten_payload_keeps_everything_but_the_renumbered_fields() -> None:
    receiver, source = started_on(0)
    receiver.forwarder.set_target(1, 3)
    key = source[1].frame(key=True)[0]
    out = receiver.send([key])[0]
    assert out.payload != key.payload
    assert len(out.payload) == len(key.payload)
    original, rewritten = parse_descriptor(key.payload), descriptor(out)
    assert rewritten.header_length == original.header_length
    assert out.payload[rewritten.header_length :] == key.payload[original.header_length :]
    assert (rewritten.temporal_id, rewritten.key_frame) == (0, True)


def test_old_layer_packets_after_a_switch_are_dropped() -> None:
    receiver, source = started_on(0)
    receiver.forwarder.set_target(1, 3)
    late_low = source[0].frame(packets=2)
    receiver.send(late_low[:1] + source[1].frame(key=True))
    assert receiver.send(late_low[1:]) == []


# --- Key frame requests -------------------------------------------------------------------------


def test_asks_for_a_key_frame_of_the_target_until_it_switches() -> None:
    receiver, source = started_on(0)
    forwarder = receiver.forwarder
    assert forwarder.wants_key_frame(receiver.now) is None
    forwarder.set_target(2, 3)
    assert forwarder.wants_key_frame(receiver.now) == 2
    receiver.send(source[2].frame(key=True))
    assert forwarder.wants_key_frame(receiver.now + 10) is None


def test_key_frame_requests_are_rate_limited_per_layer() -> None:
    receiver, _ = started_on(0)
    forwarder = receiver.forwarder
    forwarder.set_target(2, 3)
    now = 0.0  # intervals add up exactly from here
    assert forwarder.wants_key_frame(now) == 2
    assert forwarder.wants_key_frame(now + KEY_FRAME_REQUEST_INTERVAL / 2) is None
    assert forwarder.wants_key_frame(now + KEY_FRAME_REQUEST_INTERVAL) == 2
    # A new target is asked for at once.
    forwarder.set_target(1, 3)
    assert forwarder.wants_key_frame(now + KEY_FRAME_REQUEST_INTERVAL) == 1


def test_asks_for_the_target_before_anything_is_forwarded() -> None:
    forwarder = SimulcastForwarder(OUTPUT_SSRC, spatial=1)
    assert forwarder.wants_key_frame(0.0) == 1


def test_keeps_waiting_for_the_target_when_the_current_layer_stops() -> None:
    receiver, source = started_on(2)
    receiver.forwarder.set_target(1, 3)
    # Layer 2 is paused by the publisher: nothing arrives on it any more.
    for step in range(10):
        assert receiver.send(source[0].frame(key=True) + source[1].frame()) == []
        now = receiver.now + step * KEY_FRAME_REQUEST_INTERVAL
        assert receiver.forwarder.wants_key_frame(now) == 1
    assert receiver.forwarder.current_spatial == 2
    out = receiver.send(source[1].frame(key=True))
    assert len(out) == 1 and receiver.forwarder.current_spatial == 1
    assert sequence_steps(receiver.out) == [1] * (len(receiver.out) - 1)


# --- Temporal layers ----------------------------------------------------------------------------

# libwebrtc's three-layer pattern: TID 0, 2, 1, 2, then again.
PATTERN = (0, 2, 1, 2)


def pattern_frames(layer: Layer, count: int, *, sync: bool = False) -> Iterator[list[Packet]]:
    """Frames made one at a time, so that packets made between them come in between."""
    for index in range(count):
        temporal_id = PATTERN[index % 4]
        yield layer.frame(temporal_id=temporal_id, sync=sync and temporal_id > 0, packets=2)


def test_frames_above_the_target_temporal_layer_are_dropped() -> None:
    receiver, source = started_on(0, temporal=1)
    for frame in pattern_frames(source[0], 8):
        out = receiver.send(frame)
        temporal_id = parse_descriptor(frame[0].payload).temporal_id
        assert len(out) == (2 if temporal_id is not None and temporal_id <= 1 else 0)


def test_dropped_temporal_layers_leave_no_sequence_gap() -> None:
    receiver, source = started_on(0, temporal=0)
    for frame in pattern_frames(source[0], 12):
        receiver.send(frame)
        receiver.send([source[0].padding()])
    assert len(receiver.out) == 2 + 3 * 2
    assert sequence_steps(receiver.out) == [1] * (len(receiver.out) - 1)


def test_dropped_temporal_layers_leave_no_picture_id_gap() -> None:
    receiver, source = started_on(0, temporal=1)
    for frame in pattern_frames(source[0], 12):
        receiver.send(frame)
    assert set(picture_id_steps(receiver.out)) == {1}
    assert set(tl0picidx_steps(receiver.out)) == {1}
    assert set(timestamp_steps(receiver.out)) == {FRAME_TICKS, 2 * FRAME_TICKS}


def test_going_up_a_temporal_layer_waits_for_a_layer_sync_frame() -> None:
    receiver, source = started_on(0, temporal=0)
    layer = source[0]
    receiver.forwarder.set_target(0, 1)
    assert receiver.send(layer.frame(temporal_id=1)) == []
    assert receiver.forwarder.current_temporal == 0
    assert len(receiver.send(layer.frame(temporal_id=1, sync=True))) == 1
    assert receiver.forwarder.current_temporal == 1
    assert len(receiver.send(layer.frame(temporal_id=1))) == 1


def test_going_up_climbs_one_temporal_layer_per_sync_frame() -> None:
    receiver, source = started_on(0, temporal=0)
    layer = source[0]
    receiver.forwarder.set_target(0, 2)
    # A TID 2 sync frame cannot lift TID 0 to 2: TID 1 frames may reference dropped ones.
    assert receiver.send(layer.frame(temporal_id=2, sync=True)) == []
    assert receiver.forwarder.current_temporal == 0
    assert receiver.send(layer.frame(temporal_id=1, sync=True))
    assert receiver.send(layer.frame(temporal_id=2, sync=True))
    assert receiver.forwarder.current_temporal == 2


def test_going_up_to_every_temporal_layer_at_a_key_frame() -> None:
    receiver, source = started_on(0, temporal=0)
    receiver.forwarder.set_target(0, 2)
    receiver.send(source[0].frame(key=True))
    assert receiver.forwarder.current_temporal == 2
    assert receiver.send(source[0].frame(temporal_id=2))


def test_going_down_a_temporal_layer_waits_for_the_end_of_the_frame() -> None:
    receiver, source = started_on(0, temporal=2)
    frame = source[0].frame(temporal_id=2, packets=3)
    assert len(receiver.send(frame[:1])) == 1
    receiver.forwarder.set_target(0, 0)
    assert len(receiver.send(frame[1:])) == 2  # the rest of the frame already begun
    assert receiver.send(source[0].frame(temporal_id=2)) == []
    assert receiver.forwarder.current_temporal == 0


def test_packets_without_temporal_id_are_always_forwarded() -> None:
    receiver = Receiver(SimulcastForwarder(OUTPUT_SSRC, spatial=0, temporal=0))
    layer = Layer(0, sequence=5, timestamp=5, temporal=False, tl0picidx=None)
    receiver.send(layer.frame(key=True))
    assert all(receiver.send(layer.frame()) for _ in range(3))


def test_padding_only_packets_are_dropped_without_a_gap() -> None:
    receiver, source = started_on(1)
    for _ in range(3):
        assert receiver.send([source[1].padding(), source[1].padding()]) == []
        receiver.send(source[1].frame())
    assert sequence_steps(receiver.out) == [1] * (len(receiver.out) - 1)


# --- Wrap-around --------------------------------------------------------------------------------


def test_sequence_numbers_wrap_at_16_bits() -> None:
    receiver = Receiver(SimulcastForwarder(OUTPUT_SSRC, spatial=0))
    source = layers()
    source[0].sequence = 65530
    source[1].sequence = 65533
    receiver.send(source[0].frame(key=True, packets=4))
    receiver.send(source[0].frame(temporal_id=1, packets=4))
    receiver.forwarder.set_target(1, 0)
    receiver.send(source[1].frame(key=True, packets=4))
    receiver.send(source[1].frame(temporal_id=1, packets=2))  # dropped across the wrap
    receiver.send(source[1].frame(packets=4))
    assert len(receiver.out) == 16
    assert receiver.out[0].sequence_number == 65530
    assert all(0 <= p.sequence_number <= 0xFFFF for p in receiver.out)
    assert sequence_steps(receiver.out) == [1] * 15


def test_timestamps_wrap_at_32_bits() -> None:
    receiver = Receiver(SimulcastForwarder(OUTPUT_SSRC, spatial=0))
    source = layers()
    source[0].timestamp = 0xFFFFFFFF - 2 * FRAME_TICKS
    source[1].timestamp = 0xFFFFFFFF - 100
    receiver.send(source[0].frame(key=True))
    for _ in range(3):
        receiver.send(source[0].frame())  # the input wraps
    receiver.forwarder.set_target(1, 3)
    receiver.send(source[1].frame(key=True))
    receiver.send(source[1].frame())
    assert all(0 < step <= 2 * FRAME_TICKS for step in timestamp_steps(receiver.out))
    assert all(0 <= p.timestamp <= 0xFFFFFFFF for p in receiver.out)
    assert receiver.out[-1].timestamp < receiver.out[0].timestamp  # it did wrap


@pytest.mark.parametrize("bits", [15, 7])
def test_picture_ids_wrap_in_their_width(bits: int) -> None:
    modulus = 1 << bits
    receiver = Receiver(SimulcastForwarder(OUTPUT_SSRC, spatial=0, temporal=0))
    source = layers()
    source[0].picture_id_bits = source[1].picture_id_bits = bits
    source[0].picture_id = modulus - 3
    source[1].picture_id = modulus - 1
    receiver.send(source[0].frame(key=True))
    for frame in pattern_frames(source[0], 6):
        receiver.send(frame)
    receiver.forwarder.set_target(1, 0)
    receiver.send(source[1].frame(key=True))
    for frame in pattern_frames(source[1], 6):
        receiver.send(frame)
    ids = [descriptor(p).picture_id for p in frame_starts(receiver.out)]
    assert ids == [(modulus - 3 + step) % modulus for step in range(len(ids))]
    assert {descriptor(p).picture_id_bits for p in receiver.out} == {bits}


# --- Reordering and late packets ---------------------------------------------------------------


def test_reordered_packets_get_the_numbers_they_would_have_had_in_order() -> None:
    in_order, source = started_on(0)
    packets = [p for _ in range(4) for p in source[0].frame(packets=3)]
    expected = {p.sequence: f for p, f in zip(packets, in_order.send(packets), strict=True)}

    shuffled, source = started_on(0)
    packets = [p for _ in range(4) for p in source[0].frame(packets=3)]
    order = [0, 2, 1, 3, 5, 4, 7, 6, 9, 11, 10, 8]
    for index in order:
        (out,) = shuffled.send([packets[index]])
        assert out == expected[packets[index].sequence]


def test_late_packet_before_a_temporal_drop_keeps_its_place() -> None:
    receiver, source = started_on(0, temporal=0)
    base = source[0].frame(packets=2)
    dropped = source[0].frame(temporal_id=1, packets=2)
    after = source[0].frame(packets=2)
    first = receiver.send(base[:1] + dropped + after)
    (late,) = receiver.send(base[1:])
    numbers = sorted(p.sequence_number for p in first + [late])
    assert numbers == list(range(numbers[0], numbers[0] + 4))
    assert late.sequence_number == first[0].sequence_number + 1


def test_late_copy_of_a_dropped_packet_is_not_given_a_used_number() -> None:
    receiver, source = started_on(0, temporal=0)
    dropped = source[0].frame(temporal_id=1, packets=2)
    receiver.send(dropped + source[0].frame(packets=2))
    receiver.forwarder.set_target(0, 1)
    receiver.send(source[0].frame(key=True))  # TID 1 would be forwarded now
    assert receiver.send(dropped) == []
    numbers = [p.sequence_number for p in receiver.out]
    assert len(numbers) == len(set(numbers))


def test_late_copy_of_a_padding_packet_is_not_given_a_used_number() -> None:
    receiver, source = started_on(0)
    padding = source[0].padding()
    receiver.send([padding] + source[0].frame())
    late = Packet(0, padding.sequence, padding.timestamp, False, source[0].frame()[0].payload)
    assert receiver.send([late]) == []


def test_duplicates_get_the_same_number_again() -> None:
    receiver, source = started_on(0)
    frame = source[0].frame(packets=2)
    first = receiver.send(frame)
    receiver.send(source[0].frame())
    assert receiver.send(frame) == first


def test_late_packets_from_before_a_switch_are_dropped() -> None:
    receiver, source = started_on(0)
    receiver.forwarder.set_target(1, 3)
    early = source[1].frame(packets=2)
    receiver.send(source[1].frame(key=True, packets=2))
    receiver.send(source[1].frame())
    assert receiver.send(early) == []
    assert sequence_steps(receiver.out) == [1] * (len(receiver.out) - 1)


def test_reordered_frames_keep_their_forward_or_drop_decision() -> None:
    receiver, source = started_on(0, temporal=2)
    high = source[0].frame(temporal_id=2, packets=2)
    next_frame = source[0].frame(packets=1)
    receiver.send(high[:1] + next_frame)
    # The target drops while the TID 2 frame is half delivered: its late half still goes.
    receiver.forwarder.set_target(0, 0)
    receiver.send(source[0].frame())
    assert len(receiver.send(high[1:])) == 1


# --- Restarts and bad input --------------------------------------------------------------------


def test_a_key_frame_far_behind_restarts_the_layer_without_breaking_the_output() -> None:
    receiver, source = started_on(0)
    receiver.send(source[0].frame())
    source[0].sequence = (source[0].sequence - 20 * SEQUENCE_WINDOW) & 0xFFFF
    assert receiver.send(source[0].frame()) == []
    assert receiver.forwarder.wants_key_frame(receiver.now) == 0
    receiver.send(source[0].frame(key=True))
    receiver.send(source[0].frame())
    assert len(receiver.out) == 5
    assert sequence_steps(receiver.out) == [1] * 4
    assert receiver.forwarder.wants_key_frame(receiver.now + 10) is None


def test_a_picture_id_that_goes_back_is_renumbered_forward() -> None:
    receiver, source = started_on(0)
    receiver.send(source[0].frame())
    source[0].picture_id = 5  # the encoder started over
    assert receiver.send(source[0].frame(key=True))
    assert receiver.send(source[0].frame())
    assert set(picture_id_steps(receiver.out)) == {1}


def test_malformed_payload_raises_and_changes_nothing() -> None:
    receiver, source = started_on(0)
    bad = source[0].frame()[0]
    with pytest.raises(ValueError):
        receiver.forwarder.forward(0, bad.sequence, bad.timestamp, True, b"\x90", receiver.now)
    receiver.send(source[0].frame())
    # The malformed packet's number is a loss the receiver may NACK, not renumbered away.
    assert sequence_steps(receiver.out) == [1, 2]


def test_layers_out_of_range_are_refused() -> None:
    forwarder = SimulcastForwarder(OUTPUT_SSRC)
    with pytest.raises(ValueError):
        forwarder.set_target(3, 0)
    with pytest.raises(ValueError):
        forwarder.set_target(0, 4)
    with pytest.raises(ValueError):
        forwarder.forward(3, 0, 0, False, b"\x10\x00", 0.0)


# --- Everything at once ------------------------------------------------------------------------


def test_random_targets_keep_the_output_continuous() -> None:
    generator = random.Random(15)
    receiver = Receiver(SimulcastForwarder(OUTPUT_SSRC, spatial=0))
    source = layers()
    for layer in source:
        layer.sequence = generator.randrange(65536)
        layer.timestamp = generator.randrange(1 << 32)
        layer.picture_id = generator.randrange(1 << 15)
    for step in range(600):
        if generator.random() < 0.05:
            receiver.forwarder.set_target(generator.randrange(3), generator.randrange(3))
        packets: list[Packet] = []
        for layer in source:
            tid = PATTERN[step % 4]
            key = generator.random() < 0.03
            sync = generator.random() < 0.3
            packets += layer.frame(
                key=key, temporal_id=0 if key else tid, sync=sync, packets=generator.randrange(1, 4)
            )
            if generator.random() < 0.1:
                packets.append(layer.padding())
        receiver.send(interleave(generator, packets))
    out = receiver.out
    assert len(out) > 300
    assert set(sequence_steps(out)) == {1}
    assert set(picture_id_steps(out)) == {1}
    assert set(tl0picidx_steps(out)) == {1}
    assert all(0 < step < 1 << 31 for step in timestamp_steps(out))


def interleave(generator: random.Random, packets: list[Packet]) -> list[Packet]:
    """Layers' packets mixed at random, each layer's kept in order."""
    queues = [[p for p in packets if p.layer == index] for index in range(3)]
    mixed = []
    while any(queues):
        queue = generator.choice([q for q in queues if q])
        mixed.append(queue.pop(0))
    return mixed


def test_after_a_pause_nothing_is_forwarded_until_a_key_frame_and_numbers_carry_on() -> None:
    q, h, f = layers()
    receiver = Receiver(SimulcastForwarder(OUTPUT_SSRC, spatial=1))
    receiver.send(h.frame(key=True, packets=2))
    receiver.send(h.frame())
    last = receiver.out[-1]
    receiver.forwarder.pause()
    assert receiver.forwarder.paused
    assert receiver.send(h.frame()) == []
    assert receiver.forwarder.wants_key_frame(receiver.now) == 1
    (resumed,) = receiver.send(h.frame(key=True))
    assert not receiver.forwarder.paused
    assert resumed.key_frame
    assert resumed.sequence_number == (last.sequence_number + 1) & 0xFFFF
    assert resumed.picture_id == (last.picture_id or 0) + 1
    assert resumed.timestamp != last.timestamp
