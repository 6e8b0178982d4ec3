"""Who receives which stream: published streams and their subscriptions.

A published stream is one participant's audio, camera or screen, known by the
SSRC from its offer. A subscription is one receiver's m-section carrying it,
with the payload-type mapping that receiver negotiated. Pure state.

A simulcast source (a camera sent as several encodings, RFC 8853) is a published
stream too, under an SSRC the SFU chose, which is what its receivers see. Each of
its layers is a published stream of its own, for the publisher's side (reports,
losses, key frames), known once the first packet names its rid. Each receiver's
subscription forwards one layer at a time through a SimulcastForwarder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..limits import TokenBucket
from .bwe import LossBasedEstimate
from .forwarder import Forwarded, SimulcastForwarder
from .packetcache import PacketCache
from .sdp import Codec
from .stats import ReceptionStats
from .upstream_loss import UpstreamLoss

if TYPE_CHECKING:
    from .endpoint import Endpoint

KEYFRAME_REQUEST_INTERVAL = 0.3
"""Seconds between keyframe requests sent to one publisher for one stream."""
DEFAULT_HEIGHT = 720
LAYER_IDLE = 1.0
"""Seconds without a packet after which a simulcast layer counts as stopped."""
SENT_LOG_SIZE = 128
"""What a simulcast receiver was sent, remembered to answer its NACKs: as far back as
SRTP can still protect (sfu.py's SRTP_REPLAY_WINDOW)."""


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
    rids: tuple[str, ...] = ()
    """A simulcast source's layers, by rid, from the smallest (layer 0) up."""
    rid_extension: int = 0
    """The id of the rid header extension in the publisher's packets."""
    layers: list[PublishedStream | None] = field(default_factory=list)
    """A simulcast source's layer streams, by layer; None until one is seen."""
    source: PublishedStream | None = None
    """For a simulcast layer: the source it is a layer of."""
    layer: int = 0
    """For a simulcast layer: which one."""
    last_packet_at: float = -1e9
    height: int = 0
    """For a simulcast layer: its height in pixels, from its last key frame; 0 before."""
    demand_sent: tuple[bool, ...] | None = None
    """For a simulcast source: which layers the publisher was last told to send."""

    def __post_init__(self) -> None:
        self.stats = ReceptionStats(self.ssrc, self.clock_rate)
        carries_video = self.kind != "audio" and not self.rids
        self.cache = PacketCache() if carries_video else None
        self.losses = UpstreamLoss() if carries_video else None
        self.layers = [None] * len(self.rids)

    def layer_streams(self) -> list[PublishedStream]:
        """The layers seen so far (a simulcast source), or the stream itself."""
        if not self.rids:
            return [self]
        return [layer for layer in self.layers if layer is not None]

    def layer_heights(self) -> list[int]:
        """A simulcast source's layer heights, lowest first: from key frames where seen,
        else what the client's encodings make of a 720-line camera."""
        return [layer.height if layer is not None and layer.height else DEFAULT_HEIGHT >> (
            len(self.layers) - 1 - index) for index, layer in enumerate(self.layers)]

    def layer_demand(self) -> tuple[bool, ...]:
        """Which of a simulcast source's layers some receiver wants: the publisher can
        pause the rest."""
        wanted = {subscription.wanted_layer for subscription in self.subscriptions}
        return tuple(index in wanted for index in range(len(self.rids)))

    def available_layer(self, wanted: int, now: float) -> int:
        """The layer to forward to someone who wants `wanted`: the largest at most that
        which is flowing, else the smallest flowing; `wanted` when none is. A publisher
        whose uplink is short stops its largest layers, and a receiver waiting for a
        key frame of one would see nothing."""
        flowing = [layer.layer for layer in self.layer_streams()
                   if now - layer.last_packet_at < LAYER_IDLE]
        if not flowing:
            return wanted
        below = [layer for layer in flowing if layer <= wanted]
        return max(below) if below else min(flowing)

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
    forwarder: SimulcastForwarder | None = None
    """For a simulcast source: picks and renumbers the layer this receiver gets."""
    wanted_layer: int | None = 2
    """The layer this receiver's view asks for (the forwarder gets what is flowing);
    None while its tile is off screen: no video. The largest until it says."""
    sent_log: list[SentPacket | None] = field(default_factory=list)
    """For a simulcast source, by output sequence number modulo SENT_LOG_SIZE."""

    def __post_init__(self) -> None:
        if self.stream.rids:
            self.wanted_layer = len(self.stream.rids) - 1
            self.forwarder = SimulcastForwarder(
                self.stream.ssrc, clock_rate=self.stream.clock_rate,
                spatial=len(self.stream.rids) - 1)
            self.sent_log = [None] * SENT_LOG_SIZE

    def log_sent(self, layer: int, sequence_number: int, sent: Forwarded) -> None:
        self.sent_log[sent.sequence_number % SENT_LOG_SIZE] = SentPacket(
            sent.sequence_number, layer, sequence_number, sent.timestamp, sent.marker,
            sent.picture_id, sent.tl0picidx)

    def logged(self, sequence_number: int) -> SentPacket | None:
        """What was sent under an output sequence number, if it is still remembered."""
        entry = self.sent_log[sequence_number % SENT_LOG_SIZE] if self.sent_log else None
        if entry is None or entry.sequence_number != sequence_number:
            return None
        return entry


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


@dataclass(frozen=True, slots=True)
class SentPacket:
    """One packet a simulcast receiver was sent: its numbers, and where its payload is
    (the layer's packet cache), to send it again as it was without keeping a copy."""

    sequence_number: int
    layer: int
    layer_sequence_number: int
    timestamp: int
    marker: bool
    picture_id: int | None
    tl0picidx: int | None

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
