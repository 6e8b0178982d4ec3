"""Who receives which stream: published streams and their subscriptions.

A published stream is one participant's audio, camera or screen, known by the
SSRC from its offer. A subscription is one receiver's m-section carrying it,
with the payload-type mapping that receiver negotiated. Pure state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .bwe import LossBasedEstimate
from .packetcache import PacketCache
from .sdp import Codec
from .stats import ReceptionStats

if TYPE_CHECKING:
    from .endpoint import Endpoint

KEYFRAME_REQUEST_INTERVAL = 0.3
"""Seconds between keyframe requests sent to one publisher for one stream."""


@dataclass(eq=False)
class PublishedStream:
    id: str
    """'<participant id>:<kind>', as in docs/protocol.md."""
    kind: str
    """'audio', 'camera' or 'screen'."""
    ssrc: int
    publisher: Endpoint
    codecs: dict[int, Codec]
    """The publisher's payload types in this stream."""
    clock_rate: int
    stats: ReceptionStats = field(init=False)
    cache: PacketCache | None = field(init=False)
    subscriptions: list[Subscription] = field(default_factory=list)
    sender_report: tuple[int, int] | None = None
    """NTP and RTP timestamp of the publisher's last sender report."""
    last_keyframe_request_at: float = -1e9
    fir_sequence: int = 0

    def __post_init__(self) -> None:
        self.stats = ReceptionStats(self.ssrc, self.clock_rate)
        self.cache = PacketCache() if self.kind != "audio" else None

    @property
    def media_kind(self) -> str:
        return "audio" if self.kind == "audio" else "video"

    def should_request_keyframe(self, now: float) -> bool:
        if now - self.last_keyframe_request_at < KEYFRAME_REQUEST_INTERVAL:
            return False
        self.last_keyframe_request_at = now
        return True


@dataclass(eq=False)
class Subscription:
    stream: PublishedStream
    subscriber: Endpoint
    mid: str
    payload_type_map: dict[int, int]
    """Publisher payload type to subscriber payload type; empty when they are equal."""
    packets_sent: int = 0
    octets_sent: int = 0
    estimate: LossBasedEstimate = field(default_factory=LossBasedEstimate)


def payload_type_map(publisher: dict[int, Codec], subscriber: list[Codec]) -> dict[int, int] | None:
    """Map each publisher payload type to the subscriber's for the same codec.

    Returns None if the subscriber can decode none of them, and an empty dict when
    no rewrite is needed.
    """
    by_key = {codec.key: codec.payload_type for codec in subscriber}
    mapping = {pt: by_key[c.key] for pt, c in publisher.items() if c.key in by_key}
    if not mapping:
        return None
    if all(src == dst for src, dst in mapping.items()):
        return {}
    return mapping
