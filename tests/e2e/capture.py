"""Reading a capture from capturing_server: RTP payloads back into media frames,
so that a test can try to open each frame with SFrame."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from confide.sfu.rtp import RtpHeader, is_rtcp

OPUS_CLEAR_BYTES = 1
VP8_KEY_FRAME_CLEAR_BYTES = 10
VP8_DELTA_FRAME_CLEAR_BYTES = 3


@dataclass(frozen=True)
class Frame:
    sender: str
    """The participant id of the publisher, as the server knows it."""
    kind: str
    """'audio' or 'video'."""
    time: float
    """When the server received its last packet."""
    data: bytes
    ssrc: int = 0
    """The RTP stream it came on: one per simulcast layer."""

    @property
    def clear_length(self) -> int:
        if self.kind == "audio":
            return OPUS_CLEAR_BYTES
        # VP8 payload header: the inverse key frame bit is the lowest bit (RFC 6386 9.1).
        key_frame = not self.data[0] & 1
        return VP8_KEY_FRAME_CLEAR_BYTES if key_frame else VP8_DELTA_FRAME_CLEAR_BYTES

    @property
    def metadata(self) -> bytes:
        return self.data[: self.clear_length]

    @property
    def sframe(self) -> bytes:
        return self.data[self.clear_length :]


def vp8_descriptor_length(payload: bytes) -> int:
    """Length of the VP8 payload descriptor (RFC 7741 section 4.2)."""
    length = 1
    if payload[0] & 0x80:
        extension = payload[1]
        length = 2
        if extension & 0x80:
            length += 2 if payload[length] & 0x80 else 1
        if extension & 0x40:
            length += 1
        if extension & 0x30:
            length += 1
    return length


OPUS_PAYLOAD_TYPES = frozenset({111, 109})
"""Opus as Chromium (111) and Firefox (109) number it in their offers."""


def read_frames(
    capture_dir: Path, audio_payload_types: frozenset[int] = OPUS_PAYLOAD_TYPES
) -> list[Frame]:
    """Every complete audio and video frame the server received, in arrival order."""
    packets: dict[tuple[str, int], dict[int, tuple[float, RtpHeader, bytes]]] = defaultdict(dict)
    for line in (capture_dir / "media.jsonl").read_text().splitlines():
        record = json.loads(line)
        data = bytes.fromhex(record["hex"])
        if record["kind"] != "rtp" or is_rtcp(data):
            continue
        header = RtpHeader.parse(data)
        payload = data[header.header_length : len(data) - header.padding_length]
        if payload:  # padding-only packets probe bandwidth and carry no media
            # Retransmissions repeat a sequence number: keep the first copy.
            packets[(record["from"], header.ssrc)].setdefault(
                header.sequence_number, (record["t"], header, payload)
            )
    frames: list[Frame] = []
    for (sender, ssrc), by_sequence in packets.items():
        ordered = [by_sequence[s] for s in sorted(by_sequence)]
        if ordered and ordered[0][1].payload_type in audio_payload_types:
            frames += [Frame(sender, "audio", t, payload, ssrc) for t, _, payload in ordered]
            continue
        parts: list[bytes] = []
        timestamp = None
        for arrival, header, payload in ordered:
            start = bool(payload[0] & 0x10) and (payload[0] & 0x07) == 0
            if start:
                parts, timestamp = [], header.timestamp
            if timestamp != header.timestamp:
                parts, timestamp = [], None  # lost the start of this frame
                continue
            parts.append(payload[vp8_descriptor_length(payload) :])
            if header.marker:
                frames.append(Frame(sender, "video", arrival, b"".join(parts), ssrc))
                parts, timestamp = [], None
    return sorted(frames, key=lambda frame: frame.time)


def read_signalling(capture_dir: Path) -> list[str]:
    return [json.loads(line)["text"] for line in
            (capture_dir / "signalling.jsonl").read_text().splitlines()]


def read_all_bytes(capture_dir: Path) -> bytes:
    """Everything the server received after SRTP and TLS, as one blob to search."""
    blob = bytearray()
    for line in (capture_dir / "media.jsonl").read_text().splitlines():
        blob += bytes.fromhex(json.loads(line)["hex"])
    blob += (capture_dir / "signalling.jsonl").read_bytes()
    return bytes(blob)
