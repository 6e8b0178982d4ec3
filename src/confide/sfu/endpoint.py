"""One participant's media transport state: ICE, DTLS, SRTP, and its streams."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import pylibsrtp

from ..limits import TokenBucket
from .dtls import DtlsServerSession, SrtpKeys
from .ice import IceLiteAgent
from .router import PublishedStream, Subscription

ADDRESS_CHANGE_BURST = 5.0
SEND_RATE, SEND_BURST = 2_500_000.0, 5_000_000.0
"""What one participant may send for the SFU to forward, in bytes a second and at
once, each packet counted PACKET_COST bytes more than its length: about twice
camera (2.5 Mbit/s), screen (4 Mbit/s) and audio together at their highest, with
several 4K keyframes in the burst. Beyond it packets are dropped before they cost
a fan-out."""
PACKET_COST = 500
"""So that a flood of small packets meets the limit too (5,000 a second)."""


@dataclass(eq=False)
class Endpoint:
    participant_id: str
    meeting_id: str
    ice: IceLiteAgent = field(default_factory=IceLiteAgent)
    dtls: DtlsServerSession | None = None
    srtp_in: pylibsrtp.Session | None = None
    srtp_out: pylibsrtp.Session | None = None
    address: tuple[str, int] | None = None
    last_packet_at: float | None = None
    """When the last authenticated packet (STUN or SRTP) arrived."""
    interrupted: bool = False
    """Silent for longer than the SFU's media timeout, and not yet gone."""
    published: dict[str, PublishedStream] = field(default_factory=dict)
    """By kind: 'audio', 'camera', 'screen'."""
    published_by_ssrc: dict[int, PublishedStream] = field(default_factory=dict)
    subscriptions: dict[int, Subscription] = field(default_factory=dict)
    """By forwarded SSRC."""
    closed: bool = False
    blocked: set[str] = field(default_factory=set)
    """Kinds ('audio', 'camera', 'screen') the host stopped: the SFU drops them, so a
    modified client cannot defy the host."""
    refused: set[str] = field(default_factory=set)
    """Kinds the last offer tried to send that the meeting does not allow."""
    address_changes: TokenBucket = field(
        default_factory=lambda: TokenBucket(rate=1.0, burst=ADDRESS_CHANGE_BURST))
    """Moves of the media address: a few while ICE settles, then one a second."""
    sending: TokenBucket = field(
        default_factory=lambda: TokenBucket(rate=SEND_RATE, burst=SEND_BURST))
    """What it sends, for SEND_RATE."""
    over_send_rate: bool = False
    """Over SEND_RATE: its packets go through Python, which drops them, until it is not."""
    view: dict[str, int] = field(default_factory=dict)
    """Its page's last `view`: stream id to tile height, applied to subscriptions made
    after it too (the view can arrive before the answer that subscribes)."""
    next_report_at: float = 0.0
    """When this participant's next receiver reports and REMB are due."""
    sdp_session_id: int = field(default_factory=lambda: secrets.randbits(62))
    sdp_version: int = 0
    """Goes up by one with every answer (RFC 3264 section 8)."""

    def next_sdp_version(self) -> int:
        self.sdp_version += 1
        return self.sdp_version

    def start_srtp(self, keys: SrtpKeys) -> None:
        inbound = pylibsrtp.Policy(
            key=keys.remote_key,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
            srtp_profile=keys.profile,
        )
        outbound = pylibsrtp.Policy(
            key=keys.local_key,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=keys.profile,
        )
        # NACK answers resend a packet already sent under the same index.
        outbound.allow_repeat_tx = True
        self.srtp_in = pylibsrtp.Session(inbound)
        self.srtp_out = pylibsrtp.Session(outbound)
