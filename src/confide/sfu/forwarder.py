"""VP8 simulcast forwarding for one receiver: one layer of a published source, as one stream.

A publisher sends up to three simulcast layers of a source, each its own RTP stream with
its own SSRC, sequence numbers, timestamps and picture IDs. A receiver gets one of them,
and another when its bandwidth or view changes, but must see a single continuous stream:
`SimulcastForwarder` picks the packets and renumbers them. Pure state; time comes in as
`now`. It reads only the VP8 descriptor and the clear payload-header octet (see vp8.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from .vp8 import Vp8Descriptor, parse_descriptor, write_descriptor

SPATIAL_LAYERS = 3
"""Simulcast layers, by index: 0 is the lowest resolution, 2 the highest."""
TEMPORAL_LAYERS = 4
"""VP8's two-bit TID allows four temporal layers."""

KEY_FRAME_REQUEST_INTERVAL = 0.3
"""Seconds between key frame requests for the same layer (as router.py's for a stream)."""

SEQUENCE_WINDOW = 1024
"""Packets more than this far behind the newest are stale: a receiver has given up on
them (libwebrtc keeps at most 1000 NACKs), and further back they are more likely a
source that restarted its numbering than a late packet."""

_MAX_DROPPED_RUNS = 64
"""Runs of dropped values remembered per counter, to renumber late packets among them."""
_RECENT_FRAMES = 8
"""Frames whose forward-or-drop decision is remembered, so their late packets agree."""

_TIMESTAMP_MASK = 0xFFFFFFFF
_SEQUENCE_BITS = 16
_TL0PICIDX_MASK = 0xFF


@dataclass(frozen=True, slots=True)
class Forwarded:
    """One packet for the receiver: the RTP header fields to write, and the payload."""

    ssrc: int
    sequence_number: int
    timestamp: int
    marker: bool
    payload: bytes
    """The publisher's payload, with PictureID and TL0PICIDX renumbered when they moved."""
    key_frame: bool
    """The packet begins a key frame."""
    picture_id: int | None = None
    tl0picidx: int | None = None
    """The descriptor's fields as sent (None where the packet has none)."""


class _Renumbering:
    """One layer's counter (sequence number or PictureID) mapped onto the output's.

    Values are unwrapped to plain ints ("extended"). Output = extended input - offset; a
    value dropped on purpose while it is the newest raises the offset by one, so the
    output has no gap there for the receiver to NACK. Runs of dropped values are kept, a
    bounded number, so that a late packet from before a drop still gets the number it
    would have had, and a late copy of a dropped one is never given a number in use.
    """

    __slots__ = ("bits", "highest", "floor", "_modulus", "_window", "_offset", "_base", "_runs")

    def __init__(self, bits: int, first: int, first_out: int) -> None:
        self.bits = bits
        self._modulus = 1 << bits
        # Further back than a quarter of the range, unwrapping could mistake old for new.
        self._window = min(SEQUENCE_WINDOW, self._modulus // 4)
        self.highest = first - 1
        """The newest extended value seen, forwarded or dropped."""
        self.floor = first
        """The oldest extended value that can still be renumbered."""
        self._offset = first - first_out
        self._base = self._offset
        """The offset before the oldest remembered run."""
        self._runs: list[tuple[int, int, int]] = []
        """(first dropped, one past the last dropped, offset after the run), oldest first."""

    def extend(self, value: int) -> int:
        """Unwrap a value on the wire to the extended value nearest the newest one."""
        delta = (value - self.highest) % self._modulus
        if delta >= self._modulus >> 1:
            delta -= self._modulus
        return self.highest + delta

    def stale(self, extended: int) -> bool:
        return extended < self.highest - self._window

    def forward(self, extended: int) -> int | None:
        """The output value for a forwarded value; None for one dropped earlier or too old."""
        if extended > self.highest:
            self.highest = extended
            return extended - self._offset
        if extended < self.floor or self.stale(extended):
            return None
        for first, end, offset in reversed(self._runs):
            if extended >= end:
                return extended - offset
            if extended >= first:
                return None
        return extended - self._base

    def drop(self, extended: int) -> None:
        """Take a value out of the output. Only the newest can be: an older one has had
        its output value given out already, and leaves a hole there."""
        if extended <= self.highest:
            return
        runs = self._runs
        self._offset += 1
        if runs and runs[-1][1] == extended:
            runs[-1] = (runs[-1][0], extended + 1, self._offset)
        else:
            runs.append((extended, extended + 1, self._offset))
            if len(runs) > _MAX_DROPPED_RUNS:
                _, end, offset = runs.pop(0)
                self._base = offset
                self.floor = max(self.floor, end)
        self.highest = extended


class SimulcastForwarder:
    """Forward one published VP8 source to one receiver as a single RTP stream.

    Feed it every packet of every simulcast layer of the source. It forwards one spatial
    layer, switching to the target layer only at the start of a key frame of that layer
    (before one, the receiver could not decode it), and drops frames above the current
    temporal layer. Sequence numbers, timestamps, PictureID and TL0PICIDX continue across
    switches and drops, under one SSRC.
    """

    __slots__ = (
        "ssrc",
        "clock_rate",
        "_target_spatial",
        "_target_temporal",
        "_spatial",
        "_temporal",
        "_sequences",
        "_timestamp_offset",
        "_pictures",
        "_tl0picidx_offset",
        "_newest_timestamp",
        "_frames",
        "_last_sequence",
        "_last_timestamp",
        "_last_picture_id",
        "_last_tl0picidx",
        "_last_forwarded_at",
        "_needs_key_frame",
        "_asked_layer",
        "_asked_at",
    )

    def __init__(
        self,
        ssrc: int,
        *,
        clock_rate: int = 90000,
        spatial: int = SPATIAL_LAYERS - 1,
        temporal: int = TEMPORAL_LAYERS - 1,
    ) -> None:
        self.ssrc = ssrc
        """The receiver's SSRC for this stream, whatever layer it carries."""
        self.clock_rate = clock_rate
        self._target_spatial = 0
        self._target_temporal = 0
        self.set_target(spatial, temporal)
        self._spatial: int | None = None
        self._temporal = 0
        # The current layer's mapping onto the output; set when a layer starts.
        self._sequences: _Renumbering | None = None
        self._timestamp_offset = 0
        self._pictures: _Renumbering | None = None
        self._tl0picidx_offset: int | None = None
        self._newest_timestamp = -1
        """The RTP timestamp of the current layer's newest packet; -1 before one."""
        self._frames: dict[int, bool] = {}
        """Recent frames of the current layer, by RTP timestamp: forwarded or dropped."""
        # What the receiver has seen last, so that the next layer carries on from it.
        # Sequence number and PictureID are extended, so they only grow.
        self._last_sequence: int | None = None
        self._last_timestamp = 0
        self._last_picture_id: int | None = None
        self._last_tl0picidx: int | None = None
        self._last_forwarded_at: float | None = None
        self._needs_key_frame = False
        """The current layer jumped where it cannot be followed; only a key frame helps."""
        self._asked_layer: int | None = None
        self._asked_at = 0.0

    @property
    def target_spatial(self) -> int:
        return self._target_spatial

    @property
    def target_temporal(self) -> int:
        return self._target_temporal

    @property
    def current_spatial(self) -> int | None:
        """The layer being forwarded (where to send the receiver's PLIs); None before one."""
        return self._spatial

    @property
    def current_temporal(self) -> int:
        """The highest temporal layer being forwarded."""
        return self._temporal

    def set_target(self, spatial: int, temporal: int) -> None:
        """Choose the layers to forward; they take effect at the next frame that allows."""
        if not 0 <= spatial < SPATIAL_LAYERS:
            raise ValueError("spatial layer out of range")
        if not 0 <= temporal < TEMPORAL_LAYERS:
            raise ValueError("temporal layer out of range")
        self._target_spatial = spatial
        self._target_temporal = temporal

    def pause(self) -> None:
        """Stop forwarding (the receiver's tile is off screen) until the next key frame
        of the target layer; numbering then carries on from the last packet sent, so
        the receiver sees no gap to ask for again."""
        self._spatial = None
        self._sequences = None
        self._pictures = None
        self._tl0picidx_offset = None
        self._frames.clear()
        self._needs_key_frame = False

    @property
    def paused(self) -> bool:
        return self._spatial is None

    def timestamp_out(self, layer: int, timestamp: int) -> int | None:
        """The receiver's RTP timestamp for a timestamp of `layer` (a sender report's),
        while that layer is the one forwarded; else None."""
        if layer != self._spatial:
            return None
        return (timestamp - self._timestamp_offset) & _TIMESTAMP_MASK

    def wants_key_frame(self, now: float) -> int | None:
        """The layer to send a key frame request (PLI) for now, or None.

        Asks for the target layer while waiting to switch to it, and for the current one
        after it jumped. The same layer is named at most once per
        KEY_FRAME_REQUEST_INTERVAL: each answer other than None counts as a request sent.
        """
        if self._spatial != self._target_spatial:
            layer = self._target_spatial
        elif self._needs_key_frame:
            layer = self._spatial
        else:
            return None
        if layer == self._asked_layer and now - self._asked_at < KEY_FRAME_REQUEST_INTERVAL:
            return None
        self._asked_layer = layer
        self._asked_at = now
        return layer

    def forward(
        self,
        layer: int,
        sequence: int,
        timestamp: int,
        marker: bool,
        payload: bytes,
        now: float,
        descriptor: Vp8Descriptor | None = None,
    ) -> Forwarded | None:
        """Take one packet of simulcast layer `layer`; return what to send, or None to drop.

        `payload` is the RTP payload without padding; an empty one is a padding-only
        packet, which is dropped. Raises ValueError for a malformed VP8 payload, and
        changes nothing then: the caller drops the packet, and the receiver sees a loss.
        `descriptor` is the payload's, parsed once for every receiver's forwarder.
        """
        if not 0 <= layer < SPATIAL_LAYERS:
            raise ValueError("spatial layer out of range")
        if not payload:
            if layer == self._spatial and self._sequences is not None:
                self._sequences.drop(self._sequences.extend(sequence))
            return None
        if descriptor is None:
            descriptor = parse_descriptor(payload)
        if layer != self._spatial:
            if layer != self._target_spatial or not descriptor.key_frame:
                return None
            self._start(layer, sequence, timestamp, now)
        sequences = self._sequences
        assert sequences is not None
        extended = sequences.extend(sequence)
        if sequences.stale(extended):
            if not descriptor.key_frame:
                self._needs_key_frame = True
                return None
            # A key frame this far back is the source starting over; follow it afresh.
            self._start(layer, sequence, timestamp, now)
            sequences = self._sequences
            assert sequences is not None
            extended = sequences.extend(sequence)

        newest = extended > sequences.highest
        new_frame = newest and timestamp != self._newest_timestamp
        if newest:
            self._newest_timestamp = timestamp
        if not self._keep_frame(timestamp, descriptor, newest):
            sequences.drop(extended)
            if descriptor.picture_id is not None and self._pictures is not None:
                if descriptor.picture_id_bits == self._pictures.bits:
                    self._pictures.drop(self._pictures.extend(descriptor.picture_id))
            return None

        picture_id = self._picture_id(descriptor, new_frame)
        if picture_id is None and descriptor.picture_id is not None:
            return None  # A late packet of a frame whose PictureID cannot be placed.
        out_sequence = sequences.forward(extended)
        if out_sequence is None:
            return None  # A late copy of a packet dropped on purpose, or before the start.
        tl0picidx = self._tl0picidx(descriptor)

        if self._last_sequence is None or out_sequence > self._last_sequence:
            self._last_sequence = out_sequence
        out_timestamp = (timestamp - self._timestamp_offset) & _TIMESTAMP_MASK
        if newest:
            self._last_timestamp = out_timestamp
            self._last_forwarded_at = now
            if tl0picidx is not None:
                self._last_tl0picidx = tl0picidx
        if descriptor.key_frame:
            self._needs_key_frame = False

        if picture_id is not None:
            picture_id &= (1 << descriptor.picture_id_bits) - 1
        if picture_id == descriptor.picture_id and tl0picidx == descriptor.tl0picidx:
            out_payload = payload  # Nothing moved: no copy.
        else:
            buffer = bytearray(payload)
            write_descriptor(buffer, descriptor, picture_id, tl0picidx)
            out_payload = bytes(buffer)
        return Forwarded(
            ssrc=self.ssrc,
            sequence_number=out_sequence & 0xFFFF,
            timestamp=out_timestamp,
            marker=marker,
            payload=out_payload,
            key_frame=descriptor.key_frame,
            picture_id=picture_id,
            tl0picidx=tl0picidx,
        )

    def _start(self, layer: int, sequence: int, timestamp: int, now: float) -> None:
        """Make `layer` current from this packet, the first of a key frame, on."""
        self._spatial = layer
        # After a key frame every temporal layer can be decoded.
        self._temporal = self._target_temporal
        first_sequence = sequence if self._last_sequence is None else self._last_sequence + 1
        self._sequences = _Renumbering(_SEQUENCE_BITS, sequence, first_sequence)
        if self._last_forwarded_at is None:
            first_timestamp = timestamp
        else:
            # Layers have unrelated timestamps. Advance by the time since the last packet
            # sent, so the receiver's jitter estimate sees the pace it actually saw; at
            # least one tick, so the new frame is never taken for a part of the last one.
            elapsed = round((now - self._last_forwarded_at) * self.clock_rate)
            first_timestamp = (self._last_timestamp + max(1, elapsed)) & _TIMESTAMP_MASK
        self._timestamp_offset = (timestamp - first_timestamp) & _TIMESTAMP_MASK
        # PictureID and TL0PICIDX are renumbered from the first packet that has them.
        self._pictures = None
        self._tl0picidx_offset = None
        self._newest_timestamp = -1
        self._frames.clear()
        self._needs_key_frame = False

    def _keep_frame(self, timestamp: int, descriptor: Vp8Descriptor, newest: bool) -> bool:
        """Whether the frame this packet belongs to is forwarded; decided once per frame,
        at its first packet to arrive, so that all its packets agree."""
        keep = self._frames.get(timestamp)
        if keep is not None:
            return keep
        temporal_id = descriptor.temporal_id or 0
        if newest:
            # Temporal layers change only between frames, never inside one.
            if descriptor.key_frame or self._target_temporal < self._temporal:
                self._temporal = self._target_temporal
            elif descriptor.layer_sync and temporal_id == self._temporal + 1 <= (
                self._target_temporal
            ):
                # A sync frame references only the base layer, but later frames of the
                # layers in between may reference frames of theirs that were dropped: so
                # climb one layer at a time, at each layer's own sync frame.
                self._temporal = temporal_id
        keep = temporal_id <= self._temporal
        self._frames[timestamp] = keep
        if len(self._frames) > _RECENT_FRAMES:
            del self._frames[next(iter(self._frames))]
        return keep

    def _picture_id(self, descriptor: Vp8Descriptor, new_frame: bool) -> int | None:
        """The output PictureID (extended) of a forwarded packet; None if it has none, or
        if it is a late packet whose PictureID cannot be placed any more."""
        picture_id = descriptor.picture_id
        if picture_id is None:
            return None
        pictures = self._pictures
        if new_frame and (
            pictures is None
            or pictures.bits != descriptor.picture_id_bits
            or pictures.extend(picture_id) <= pictures.highest
        ):
            # A new layer, or a PictureID that does not move forward on a new frame (its
            # width changed, or the encoder started over): carry on from the last one sent.
            last = self._last_picture_id
            first = picture_id if last is None else last + 1
            pictures = self._pictures = _Renumbering(descriptor.picture_id_bits, picture_id, first)
        if pictures is None or pictures.bits != descriptor.picture_id_bits:
            return None
        out = pictures.forward(pictures.extend(picture_id))
        if out is not None and (self._last_picture_id is None or out > self._last_picture_id):
            self._last_picture_id = out
        return out

    def _tl0picidx(self, descriptor: Vp8Descriptor) -> int | None:
        """The output TL0PICIDX. Base-layer frames are never dropped on purpose, so a
        fixed offset per layer keeps it continuous: the layer's first base frame follows
        the last one sent."""
        tl0picidx = descriptor.tl0picidx
        if tl0picidx is None:
            return None
        if self._tl0picidx_offset is None:
            last = self._last_tl0picidx
            first = tl0picidx if last is None else (last + 1) & _TL0PICIDX_MASK
            self._tl0picidx_offset = (tl0picidx - first) & _TL0PICIDX_MASK
        return (tl0picidx - self._tl0picidx_offset) & _TL0PICIDX_MASK
