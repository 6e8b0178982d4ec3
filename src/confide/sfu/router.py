"""Who receives which stream: published streams and their subscriptions.

A published stream is one participant's audio, camera or screen, known by the
SSRC from its offer. A subscription is one receiver's m-section carrying it,
with the payload-type mapping that receiver negotiated. Pure state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..limits import TokenBucket
from .bwe import LossBasedEstimate
from .packetcache import PacketCache
from .sdp import Codec
from .stats import ReceptionStats
from .upstream_loss import UpstreamLoss

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
    losses: UpstreamLoss | None = field(init=False)
    """Video only: gaps from the publisher, asked for again (Opus has its own FEC)."""
    subscriptions: list[Subscription] = field(default_factory=list)
    sender_report: tuple[int, int] | None = None
    """NTP and RTP timestamp of the publisher's last sender report."""
    last_keyframe_request_at: float = -1e9
    fir_sequence: int = 0
    forwarded_packets: int = 0
    forwarded_octets: int = 0
    """Packets (and payload octets) sent on the batched route, to each of its receivers."""
    route: Route | None = None
    """Who gets the next packet; None when that may have changed (a subscription,
    a receiver's address or key), and it is built again on the next packet."""

    def __post_init__(self) -> None:
        self.stats = ReceptionStats(self.ssrc, self.clock_rate)
        self.cache = PacketCache() if self.kind != "audio" else None
        self.losses = UpstreamLoss() if self.kind != "audio" else None

    @property
    def media_kind(self) -> str:
        return "audio" if self.kind == "audio" else "video"

    def should_request_keyframe(self, now: float) -> bool:
        if now - self.last_keyframe_request_at < KEYFRAME_REQUEST_INTERVAL:
            return False
        self.last_keyframe_request_at = now
        return True


RETRANSMIT_BYTES_RATE, RETRANSMIT_BYTES_BURST = 200_000.0, 400_000.0
"""Bytes a second (and at once) one receiver may have re-sent: a fifth of a 1.6 Mbit/s
video, more than a lossy but honest link asks for."""


@dataclass(eq=False)
class Subscription:
    stream: PublishedStream
    subscriber: Endpoint
    mid: str
    payload_type_map: dict[int, int]
    """Publisher payload type to subscriber payload type; empty when they are equal."""
    estimate: LossBasedEstimate = field(default_factory=LossBasedEstimate)
    banked_packets: int = 0
    banked_octets: int = 0
    since: tuple[int, int] | None = None
    """The stream's forwarded counts when this subscription joined its batched route;
    None while it is not on it."""
    retransmit_bytes: TokenBucket = field(default_factory=lambda: TokenBucket(
        RETRANSMIT_BYTES_RATE, RETRANSMIT_BYTES_BURST))
    """What NACKs may make the SFU send this receiver again: a cap, so that one
    receiver's NACKs cost the server a bounded share whatever it asks for."""
    resent_at: dict[int, float] = field(default_factory=dict)
    """Sequence number to when it was last sent again, to answer each once a round trip."""

    @property
    def packets_sent(self) -> int:
        if self.since is None:
            return self.banked_packets
        return self.banked_packets + self.stream.forwarded_packets - self.since[0]

    @property
    def octets_sent(self) -> int:
        if self.since is None:
            return self.banked_octets
        return self.banked_octets + self.stream.forwarded_octets - self.since[1]

    def add_sent(self, octets: int) -> None:
        """One packet sent to this receiver alone (a rewritten copy or a NACK answer)."""
        self.banked_packets += 1
        self.banked_octets += octets

    def leave_route(self) -> None:
        self.banked_packets, self.banked_octets = self.packets_sent, self.octets_sent
        self.since = None

    def join_route(self) -> None:
        self.since = (self.stream.forwarded_packets, self.stream.forwarded_octets)


@dataclass(frozen=True)
class Route:
    """Who gets a stream's next packet: receivers that take it as it is, batched and
    prepared by the transport, and those that need their own rewritten copy."""

    targets: object
    """What the transport's `prepare_targets` made of the (SRTP session, address) list."""
    size: int
    rewritten: tuple[Subscription, ...]


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
