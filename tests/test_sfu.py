"""The SFU end to end, without sockets: in-test browsers do ICE, DTLS-SRTP and RTP
against `Sfu.datagram_received` and `Sfu.handle_timer`, and read what `transmit`
sends them.

Each `Browser` is what a WebRTC peer connection does on the wire, in Python: it
answers to an ICE ufrag and password, is the DTLS client (pyOpenSSL on memory
BIOs, offering the SRTP profiles Chrome offers), derives its SRTP keys as RFC
5764 section 4.2 says, and writes a Chrome-like SDP offer for `Sfu.negotiate`.
"""

from __future__ import annotations

import random
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pylibsrtp
import pytest
from aioice import stun
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL

from confide.sfu.dtls import self_signed_certificate
from confide.sfu.endpoint import PACKET_COST, SEND_BURST, SEND_RATE, Endpoint
from confide.sfu.router import RETRANSMIT_BYTES_BURST, RETRANSMIT_BYTES_RATE
from confide.sfu.rtp import (
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtcpPacket,
    SenderReport,
    is_rtcp,
    parse_compound,
    serialize_compound,
)
from confide.sfu.sdp import SessionDescription, parse_offer
from confide.sfu.sfu import Sfu

MEETING = "meeting"
PUBLIC_IP = "203.0.113.1"
MEDIA_PORT = 40000
MEDIA_TIMEOUT = 8.0
MEDIA_GRACE = 30.0

AUDIO_SSRC = 0x0A0A0A0A
CAMERA_SSRC = 0x0C0C0C0C
CAMERA_RTX_SSRC = 0x0D0D0D0D
OPUS_PT = 111
VP8_PT = 96
H264_PT = 108

# RFC 5764 section 4.1.2 profile names, as OpenSSL spells them, to pylibsrtp ids,
# key and salt lengths.
SRTP_PROFILES = {
    b"SRTP_AEAD_AES_128_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12),
    b"SRTP_AES128_CM_SHA1_80": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14),
}


def rtp_packet(
    ssrc: int, payload_type: int, sequence_number: int, timestamp: int, payload: bytes,
    marker: bool = False,
) -> bytes:
    return struct.pack(
        "!BBHII", 0x80, (0x80 if marker else 0) | payload_type, sequence_number, timestamp, ssrc
    ) + payload


def rtp_ssrc(packet: bytes) -> int:
    return int.from_bytes(packet[8:12], "big")


def rtp_sequence(packet: bytes) -> int:
    return int.from_bytes(packet[2:4], "big")


# --- SDP the way Chrome writes it ------------------------------------------------------------


@dataclass
class OfferedSection:
    mid: str
    kind: str
    """'audio' or 'video'."""
    direction: str
    ssrc: int | None = None
    vp8_payload_type: int = VP8_PT
    rids: tuple[str, ...] = ()
    """Simulcast layers by rid, as Chromium offers them: no SSRC named."""


MID_EXTENSION_ID = 4
RID_EXTENSION_ID = 10


def media_lines(section: OfferedSection) -> list[str]:
    if section.kind == "audio":
        return [
            f"m=audio 9 UDP/TLS/RTP/SAVPF {OPUS_PT} 0",
            f"a=rtpmap:{OPUS_PT} opus/48000/2",
            f"a=rtcp-fb:{OPUS_PT} transport-cc",
            f"a=fmtp:{OPUS_PT} minptime=10;useinbandfec=1",
            "a=rtpmap:0 PCMU/8000",
        ]
    vp8, rtx = section.vp8_payload_type, section.vp8_payload_type + 1
    lines = [f"m=video 9 UDP/TLS/RTP/SAVPF {vp8} {rtx} {H264_PT}"]
    for pt, encoding in ((vp8, "VP8"), (H264_PT, "H264")):
        lines.append(f"a=rtpmap:{pt} {encoding}/90000")
        lines += [
            f"a=rtcp-fb:{pt} {fb}"
            for fb in ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli")
        ]
    lines += [
        f"a=fmtp:{H264_PT} level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        f"a=rtpmap:{rtx} rtx/90000",
        f"a=fmtp:{rtx} apt={vp8}",
    ]
    return lines


# --- The browser -----------------------------------------------------------------------------


@dataclass
class Browser:
    address: tuple[str, int]
    ufrag: str = field(default_factory=lambda: secrets.token_hex(4))
    pwd: str = field(default_factory=lambda: secrets.token_hex(12))
    offered_fingerprint: str | None = None
    """What the offer claims; by default the fingerprint of the certificate it uses."""
    rtcp_ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    answer: SessionDescription | None = None
    handshake_done: bool = False
    srtp_tx: pylibsrtp.Session | None = None
    srtp_rx: pylibsrtp.Session | None = None
    stun_responses: list[stun.Message] = field(default_factory=list)
    rtp: list[bytes] = field(default_factory=list)
    """Decrypted RTP packets received."""
    rtcp: list[RtcpPacket] = field(default_factory=list)
    """Decrypted and parsed RTCP packets received."""

    def __post_init__(self) -> None:
        certificate, key, self.fingerprint = self_signed_certificate()
        if self.offered_fingerprint is None:
            self.offered_fingerprint = self.fingerprint
        context = SSL.Context(SSL.DTLS_METHOD)
        context.use_certificate(certificate)
        context.use_privatekey(key)
        # The server's certificate is self-signed: checked against its SDP fingerprint.
        context.set_verify(SSL.VERIFY_PEER, lambda *args: True)
        context.set_tlsext_use_srtp(b"SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80")
        self.dtls = SSL.Connection(context, None)
        self.dtls.set_connect_state()

    def offer(self, sections: list[OfferedSection]) -> str:
        lines = [
            "v=0",
            f"o=- {secrets.randbits(62)} 2 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            f"a=group:BUNDLE {' '.join(s.mid for s in sections)}",
            "a=msid-semantic: WMS stream",
        ]
        for section in sections:
            media = media_lines(section)
            lines += [
                media[0],
                "c=IN IP4 0.0.0.0",
                "a=rtcp:9 IN IP4 0.0.0.0",
                f"a=ice-ufrag:{self.ufrag}",
                f"a=ice-pwd:{self.pwd}",
                "a=ice-options:trickle",
                f"a=fingerprint:sha-256 {self.offered_fingerprint}",
                "a=setup:actpass",
                f"a=mid:{section.mid}",
                f"a={section.direction}",
                "a=rtcp-mux",
                "a=rtcp-rsize",
                *media[1:],
            ]
            if section.rids:
                lines += [
                    f"a=extmap:{MID_EXTENSION_ID} urn:ietf:params:rtp-hdrext:sdes:mid",
                    f"a=extmap:{RID_EXTENSION_ID} urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
                    *(f"a=rid:{rid} send" for rid in section.rids),
                    f"a=simulcast:send {';'.join(section.rids)}",
                ]
            if section.ssrc is not None:
                track = f"track{section.mid}"
                if section.kind == "video":
                    lines.append(f"a=ssrc-group:FID {section.ssrc} {CAMERA_RTX_SSRC}")
                lines += [
                    f"a=ssrc:{section.ssrc} cname:browser",
                    f"a=ssrc:{section.ssrc} msid:stream {track}",
                ]
                if section.kind == "video":
                    lines += [
                        f"a=ssrc:{CAMERA_RTX_SSRC} cname:browser",
                        f"a=ssrc:{CAMERA_RTX_SSRC} msid:stream {track}",
                    ]
        return "\r\n".join(lines) + "\r\n"

    def take_answer(self, answer_sdp: str) -> SessionDescription:
        self.answer = parse_offer(answer_sdp)  # an answer parses like an offer
        return self.answer

    # ICE: the browser is the controlling agent and nominates the first pair.

    def binding_request(self, use_candidate: bool = True) -> bytes:
        assert self.answer is not None
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        request.attributes["USERNAME"] = f"{self.answer.remote_ufrag}:{self.ufrag}"
        request.attributes["PRIORITY"] = 1853824767
        request.attributes["ICE-CONTROLLING"] = 0x0102030405060708
        if use_candidate:
            request.attributes["USE-CANDIDATE"] = None
        request.add_message_integrity(self.answer.remote_pwd.encode("utf8"))
        return bytes(request)

    # DTLS client.

    def _advance_handshake(self) -> None:
        if self.handshake_done:
            return
        try:
            self.dtls.do_handshake()
        except SSL.WantReadError:
            return
        self.handshake_done = True
        self._start_srtp()

    def dtls_flight(self) -> list[bytes]:
        """Advance the handshake; returns the datagrams to send."""
        self._advance_handshake()
        datagrams: list[bytes] = []
        while True:
            try:
                datagrams.append(self.dtls.bio_read(4096))
            except SSL.WantReadError:
                return datagrams

    def _start_srtp(self) -> None:
        assert self.answer is not None
        server_certificate = self.dtls.get_peer_certificate(as_cryptography=True)
        assert server_certificate is not None
        digest = server_certificate.fingerprint(hashes.SHA256())
        server_fingerprint = ":".join(f"{b:02X}" for b in digest)
        assert self.answer.remote_fingerprints[0] == ("sha-256", server_fingerprint)
        profile, key_length, salt_length = SRTP_PROFILES[self.dtls.get_selected_srtp_profile()]
        material = self.dtls.export_keying_material(
            b"EXTRACTOR-dtls_srtp", 2 * (key_length + salt_length)
        )
        # RFC 5764 section 4.2: client key, server key, client salt, server salt.
        client_key = material[:key_length]
        server_key = material[key_length : 2 * key_length]
        client_salt = material[2 * key_length : 2 * key_length + salt_length]
        server_salt = material[2 * key_length + salt_length :]
        self.srtp_tx = pylibsrtp.Session(
            pylibsrtp.Policy(
                key=client_key + client_salt,
                ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                srtp_profile=profile,
            )
        )
        self.srtp_rx = pylibsrtp.Session(
            pylibsrtp.Policy(
                key=server_key + server_salt,
                ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                srtp_profile=profile,
            )
        )

    # Datagrams from the SFU.

    def datagram_received(self, data: bytes) -> None:
        first = data[0]
        if first < 4:
            self.stun_responses.append(stun.parse_message(data))
        elif 20 <= first < 64:
            # At once, as a browser does: SRTCP may follow the server's last flight.
            self.dtls.bio_write(data)
            self._advance_handshake()
        elif 128 <= first < 192:
            assert self.srtp_rx is not None, "SRTP before the DTLS handshake finished"
            if is_rtcp(data):
                self.rtcp += parse_compound(self.srtp_rx.unprotect_rtcp(data))
            else:
                self.rtp.append(self.srtp_rx.unprotect(data))
        else:
            raise AssertionError(f"unexpected datagram from the SFU: {data[:8].hex()}")

    def protect_rtp(self, packet: bytes) -> bytes:
        assert self.srtp_tx is not None
        return self.srtp_tx.protect(packet)

    def protect_rtcp(self, packets: list[RtcpPacket]) -> bytes:
        assert self.srtp_tx is not None
        return self.srtp_tx.protect_rtcp(serialize_compound(packets))

    def take_rtcp(self, kind: type) -> list:  # type: ignore[type-arg]
        found = [packet for packet in self.rtcp if isinstance(packet, kind)]
        self.rtcp = [packet for packet in self.rtcp if not isinstance(packet, kind)]
        return found


class Network:
    """Carries datagrams between the SFU and the browsers; nothing is lost unless asked."""

    def __init__(self, sfu: Sfu) -> None:
        self.sfu = sfu
        self.in_flight: list[tuple[bytes, tuple[str, int]]] = []
        self.browsers: dict[tuple[str, int], Browser] = {}
        sfu.transmit = lambda data, address: self.in_flight.append((data, address))

    def send(self, browser: Browser, data: bytes, now: float) -> None:
        self.sfu.datagram_received(data, browser.address, now)

    def deliver(self) -> None:
        in_flight, self.in_flight = self.in_flight, []
        for data, address in in_flight:
            self.browsers[address].datagram_received(data)

    def discard(self) -> None:
        self.in_flight = []

    def connect(self, browser: Browser, now: float) -> None:
        """ICE check with nomination, then the DTLS handshake, all at time `now`."""
        self.browsers[browser.address] = browser
        self.send(browser, browser.binding_request(), now)
        self.deliver()
        datagrams = browser.dtls_flight()
        for _ in range(10):
            for datagram in datagrams:
                self.send(browser, datagram, now)
            self.deliver()
            datagrams = browser.dtls_flight()
            if browser.handshake_done and not datagrams:
                return


# --- Fixtures --------------------------------------------------------------------------------


@dataclass
class Meeting:
    """Two participants: A publishes audio and camera; B receives both."""

    sfu: Sfu
    network: Network
    a: Browser
    b: Browser
    endpoint_a: Endpoint
    endpoint_b: Endpoint
    lost: list[tuple[Endpoint, str]]

    def publish(self, packet: bytes, now: float) -> None:
        self.network.send(self.a, self.a.protect_rtp(packet), now)

    def feedback_from_b(self, packets: list[RtcpPacket], now: float) -> None:
        self.network.send(self.b, self.b.protect_rtcp(packets), now)


def set_up_meeting(b_vp8_payload_type: int = VP8_PT, connect: bool = True) -> Meeting:
    sfu = Sfu(public_ip=PUBLIC_IP, media_port=MEDIA_PORT, media_timeout=MEDIA_TIMEOUT)
    network = Network(sfu)
    lost: list[tuple[Endpoint, str]] = []
    sfu.on_endpoint_lost = lambda endpoint, reason: lost.append((endpoint, reason))
    a = Browser(("192.0.2.10", 50010))
    b = Browser(("192.0.2.20", 50020))

    endpoint_a = sfu.add_endpoint("a", MEETING)
    offer_a = a.offer([
        OfferedSection("0", "audio", "sendonly", AUDIO_SSRC),
        OfferedSection("1", "video", "sendonly", CAMERA_SSRC),
    ])
    answer_a, changed = sfu.negotiate(
        endpoint_a, offer_a, {"0": ("send", "audio"), "1": ("send", "camera")}, 0.0
    )
    assert changed
    a.take_answer(answer_a)

    endpoint_b = sfu.add_endpoint("b", MEETING)
    offer_b = b.offer([
        OfferedSection("0", "audio", "recvonly"),
        OfferedSection("1", "video", "recvonly", vp8_payload_type=b_vp8_payload_type),
    ])
    answer_b, changed = sfu.negotiate(
        endpoint_b, offer_b, {"0": ("recv", "a:audio"), "1": ("recv", "a:camera")}, 0.0
    )
    assert not changed
    b.take_answer(answer_b)

    if connect:
        network.connect(a, 0.5)
        network.connect(b, 0.5)
        network.deliver()
        a.rtcp.clear()  # the keyframe requests of joining
    return Meeting(sfu, network, a, b, endpoint_a, endpoint_b, lost)


@pytest.fixture
def meeting() -> Meeting:
    return set_up_meeting()


def camera_packets(first_sequence: int, count: int) -> Iterator[bytes]:
    for i in range(count):
        sequence = first_sequence + i
        yield rtp_packet(CAMERA_SSRC, VP8_PT, sequence, 3000 * i, bytes([sequence & 0xFF]) * 100)


# --- Negotiation -----------------------------------------------------------------------------


def test_publisher_streams_are_announced_by_id(meeting: Meeting) -> None:
    streams = {s.id: (s.kind, s.ssrc) for s in meeting.sfu.meeting_streams(MEETING)}
    assert streams == {"a:audio": ("audio", AUDIO_SSRC), "a:camera": ("camera", CAMERA_SSRC)}


def test_subscriber_answer_names_the_forwarded_ssrcs(meeting: Meeting) -> None:
    assert meeting.b.answer is not None
    sections = meeting.b.answer.sections
    assert [s.direction for s in sections] == ["sendonly", "sendonly"]
    assert [s.ssrcs for s in sections] == [[AUDIO_SSRC], [CAMERA_SSRC]]


def test_publisher_answer_receives_on_one_codec(meeting: Meeting) -> None:
    assert meeting.a.answer is not None
    sections = meeting.a.answer.sections
    assert [s.direction for s in sections] == ["recvonly", "recvonly"]
    assert [[c.payload_type for c in s.codecs] for s in sections] == [[OPUS_PT], [VP8_PT]]


def test_receiving_a_stream_that_does_not_exist_is_answered_inactive() -> None:
    sfu = Sfu(public_ip=PUBLIC_IP, media_port=MEDIA_PORT)
    browser = Browser(("192.0.2.30", 50030))
    endpoint = sfu.add_endpoint("c", MEETING)
    offer = browser.offer([OfferedSection("0", "video", "recvonly")])
    answer, changed = sfu.negotiate(endpoint, offer, {"0": ("recv", "nobody:camera")}, 0.0)
    assert not changed
    assert parse_offer(answer).sections[0].direction == "inactive"
    assert endpoint.subscriptions == {}


# --- Connecting ------------------------------------------------------------------------------


def test_ice_and_dtls_give_both_sides_srtp(meeting: Meeting) -> None:
    assert meeting.a.handshake_done and meeting.b.handshake_done
    assert meeting.endpoint_a.srtp_in is not None
    assert meeting.endpoint_a.address == meeting.a.address
    assert meeting.sfu.counters["stun_answered"] == 2


def test_stun_response_maps_the_browser_address(meeting: Meeting) -> None:
    response = meeting.a.stun_responses[0]
    assert response.message_class == stun.Class.RESPONSE
    assert response.attributes["XOR-MAPPED-ADDRESS"] == meeting.a.address


def test_dtls_client_with_another_certificate_than_offered_gets_no_srtp_keys() -> None:
    sfu = Sfu(public_ip=PUBLIC_IP, media_port=MEDIA_PORT)
    network = Network(sfu)
    lost: list[tuple[Endpoint, str]] = []
    sfu.on_endpoint_lost = lambda endpoint, reason: lost.append((endpoint, reason))
    _, _, someone_elses_fingerprint = self_signed_certificate()
    impostor = Browser(("192.0.2.66", 50066), offered_fingerprint=someone_elses_fingerprint)
    endpoint = sfu.add_endpoint("x", MEETING)
    offer = impostor.offer([OfferedSection("0", "audio", "sendonly", AUDIO_SSRC)])
    answer, _ = sfu.negotiate(endpoint, offer, {"0": ("send", "audio")}, 0.0)
    impostor.take_answer(answer)

    network.connect(impostor, 1.0)

    assert endpoint.dtls is not None and endpoint.dtls.keys is None
    assert endpoint.srtp_in is None and endpoint.srtp_out is None
    assert not impostor.handshake_done
    assert (endpoint, "dtls-failed") in lost


# --- Forwarding ------------------------------------------------------------------------------


def test_rtp_from_the_publisher_reaches_the_subscriber_unchanged(meeting: Meeting) -> None:
    audio = rtp_packet(AUDIO_SSRC, OPUS_PT, 7, 960, b"opaque audio frame", marker=True)
    camera = rtp_packet(CAMERA_SSRC, VP8_PT, 1000, 90000, bytes(range(256)) * 4)
    meeting.publish(audio, 1.0)
    meeting.publish(camera, 1.0)
    meeting.network.deliver()
    assert meeting.b.rtp == [audio, camera]
    assert meeting.sfu.counters["rtp_forwarded"] == 2


def test_rtp_is_not_sent_back_to_its_publisher(meeting: Meeting) -> None:
    meeting.publish(rtp_packet(AUDIO_SSRC, OPUS_PT, 7, 960, b"x"), 1.0)
    meeting.network.deliver()
    assert meeting.a.rtp == []


def test_rtp_with_an_unknown_ssrc_is_dropped_and_counted(meeting: Meeting) -> None:
    meeting.publish(rtp_packet(0x99999999, VP8_PT, 1, 0, b"stray"), 1.0)
    meeting.network.deliver()
    assert meeting.b.rtp == []
    assert meeting.sfu.counters["dropped_unknown_ssrc"] == 1


def test_rtp_of_the_rtx_ssrc_is_not_forwarded(meeting: Meeting) -> None:
    meeting.publish(rtp_packet(CAMERA_RTX_SSRC, VP8_PT + 1, 1, 0, b"rtx"), 1.0)
    meeting.network.deliver()
    assert meeting.b.rtp == []


def test_payload_type_is_rewritten_to_the_subscriber_number() -> None:
    meeting = set_up_meeting(b_vp8_payload_type=100)
    payload = bytes(range(200))
    meeting.publish(rtp_packet(CAMERA_SSRC, VP8_PT, 5, 9000, payload, marker=True), 1.0)
    meeting.network.deliver()
    [received] = meeting.b.rtp
    assert received[1] == 0x80 | 100  # marker kept, VP8 now 100
    assert received[12:] == payload
    assert rtp_ssrc(received) == CAMERA_SSRC
    assert received[2:8] == struct.pack("!HI", 5, 9000)


def test_subscriber_answer_offers_the_subscriber_payload_types() -> None:
    meeting = set_up_meeting(b_vp8_payload_type=100, connect=False)
    assert meeting.b.answer is not None
    assert [c.payload_type for c in meeting.b.answer.sections[1].codecs] == [100, H264_PT]


# --- Feedback --------------------------------------------------------------------------------


def test_nack_for_a_cached_packet_is_answered_with_that_packet(meeting: Meeting) -> None:
    packets = list(camera_packets(200, 5))
    for packet in packets[:2]:
        meeting.publish(packet, 1.0)
    meeting.network.deliver()
    meeting.publish(packets[2], 1.0)
    meeting.network.discard()  # lost on the way to B
    for packet in packets[3:]:
        meeting.publish(packet, 1.0)
    meeting.network.deliver()
    assert [rtp_sequence(p) for p in meeting.b.rtp] == [200, 201, 203, 204]

    meeting.feedback_from_b([Nack(meeting.b.rtcp_ssrc, CAMERA_SSRC, [202])], 1.1)
    meeting.network.deliver()

    assert meeting.b.rtp[-1] == packets[2]
    assert meeting.sfu.counters["nack_answered"] == 1
    assert meeting.a.take_rtcp(Nack) == []  # the SFU had it; the publisher is not asked


def test_nack_for_a_packet_not_cached_is_passed_to_the_publisher(meeting: Meeting) -> None:
    for packet in camera_packets(200, 2):
        meeting.publish(packet, 1.0)
    meeting.network.deliver()
    meeting.feedback_from_b([Nack(meeting.b.rtcp_ssrc, CAMERA_SSRC, [150, 151])], 1.1)
    meeting.network.deliver()
    [nack] = meeting.a.take_rtcp(Nack)
    assert (nack.sender_ssrc, nack.media_ssrc, nack.lost) == (
        meeting.sfu.rtcp_ssrc, CAMERA_SSRC, [150, 151],
    )


def test_pli_from_the_subscriber_reaches_the_publisher(meeting: Meeting) -> None:
    meeting.feedback_from_b([Pli(meeting.b.rtcp_ssrc, CAMERA_SSRC)], 2.0)
    meeting.network.deliver()
    [pli] = meeting.a.take_rtcp(Pli)
    assert (pli.sender_ssrc, pli.media_ssrc) == (meeting.sfu.rtcp_ssrc, CAMERA_SSRC)


def test_burst_of_plis_is_passed_on_once_per_300_ms(meeting: Meeting) -> None:
    for now in (2.0, 2.05, 2.1, 2.2, 2.29):
        meeting.feedback_from_b([Pli(meeting.b.rtcp_ssrc, CAMERA_SSRC)], now)
    meeting.network.deliver()
    assert len(meeting.a.take_rtcp(Pli)) == 1

    meeting.feedback_from_b([Pli(meeting.b.rtcp_ssrc, CAMERA_SSRC)], 2.31)
    meeting.network.deliver()
    assert len(meeting.a.take_rtcp(Pli)) == 1


def test_pli_for_a_stream_not_received_is_ignored(meeting: Meeting) -> None:
    meeting.feedback_from_b([Pli(meeting.b.rtcp_ssrc, 0x12345678)], 2.0)
    meeting.network.deliver()
    assert meeting.a.take_rtcp(Pli) == []


def test_subscriber_finishing_dtls_asks_the_publisher_for_a_keyframe() -> None:
    meeting = set_up_meeting(connect=False)
    meeting.network.connect(meeting.a, 0.5)
    meeting.network.deliver()
    meeting.a.rtcp.clear()
    meeting.network.connect(meeting.b, 1.0)
    meeting.network.deliver()
    [pli] = meeting.a.take_rtcp(Pli)
    assert pli.media_ssrc == CAMERA_SSRC


# --- Reports ---------------------------------------------------------------------------------


def test_timer_sends_the_publisher_a_receiver_report(meeting: Meeting) -> None:
    for packet in camera_packets(300, 10):
        meeting.publish(packet, 1.0)
    meeting.sfu.handle_timer(1.5)
    meeting.network.deliver()
    [report] = meeting.a.take_rtcp(ReceiverReport)
    assert report.ssrc == meeting.sfu.rtcp_ssrc
    [block] = report.reports  # no audio yet: only the camera has statistics
    assert (block.ssrc, block.highest_sequence, block.packets_lost) == (CAMERA_SSRC, 309, 0)


def test_receiver_report_counts_lost_packets(meeting: Meeting) -> None:
    packets = list(camera_packets(300, 10))
    for packet in packets[:4] + packets[6:]:
        meeting.publish(packet, 1.0)
    meeting.sfu.handle_timer(1.5)
    meeting.network.deliver()
    [report] = meeting.a.take_rtcp(ReceiverReport)
    assert report.reports[0].packets_lost == 2
    assert report.reports[0].fraction_lost == (2 << 8) // 10


def test_timer_sends_the_publisher_a_remb_for_its_video(meeting: Meeting) -> None:
    meeting.sfu.handle_timer(1.5)
    meeting.network.deliver()
    [remb] = meeting.a.take_rtcp(Remb)
    assert remb.ssrcs == [CAMERA_SSRC]
    assert remb.sender_ssrc == meeting.sfu.rtcp_ssrc
    assert 1_000_000 <= remb.bitrate <= 1_500_000  # the start estimate, rounded down


def test_remb_follows_the_loss_the_subscriber_reports(meeting: Meeting) -> None:
    loss = ReportBlock(CAMERA_SSRC, fraction_lost=128, packets_lost=50, highest_sequence=100,
                       jitter=0, last_sr=0, delay_since_last_sr=0)
    meeting.feedback_from_b([ReceiverReport(meeting.b.rtcp_ssrc, [loss])], 1.2)
    meeting.sfu.handle_timer(1.5)
    meeting.network.deliver()
    [remb] = meeting.a.take_rtcp(Remb)
    # Above 10% loss the estimate falls by half the loss: 1.5 Mbit/s x (1 - 0.5 x 0.5).
    assert remb.bitrate <= 1_500_000 * 3 // 4


def test_reports_are_sent_once_per_interval(meeting: Meeting) -> None:
    meeting.sfu.handle_timer(1.5)
    meeting.sfu.handle_timer(1.6)
    meeting.sfu.handle_timer(2.4)
    meeting.network.deliver()
    assert len(meeting.a.take_rtcp(Remb)) == 1
    meeting.sfu.handle_timer(2.6)
    meeting.network.deliver()
    assert len(meeting.a.take_rtcp(Remb)) == 1


def test_subscriber_gets_no_receiver_report(meeting: Meeting) -> None:
    meeting.sfu.handle_timer(1.5)
    meeting.network.deliver()
    assert meeting.b.take_rtcp(ReceiverReport) == []
    assert meeting.b.take_rtcp(Remb) == []


def test_sender_report_reaches_the_subscriber_with_the_publisher_clock(meeting: Meeting) -> None:
    for packet in camera_packets(400, 3):
        meeting.publish(packet, 1.0)
    ntp = 0xE8E1_2345_8000_0000
    report = SenderReport(CAMERA_SSRC, ntp, 123456789, 3, 300, [])
    meeting.network.send(meeting.a, meeting.a.protect_rtcp([report]), 1.1)
    meeting.network.deliver()
    [relayed] = meeting.b.take_rtcp(SenderReport)
    assert (relayed.ssrc, relayed.ntp_timestamp, relayed.rtp_timestamp) == (
        CAMERA_SSRC, ntp, 123456789,
    )
    assert (relayed.packet_count, relayed.octet_count) == (3, 300)


def test_sender_report_counts_survive_a_change_of_route(meeting: Meeting) -> None:
    """Counts are kept per stream on the batched route; a rebuild (someone joins,
    an address changes) must carry each receiver's count over."""
    packets = list(camera_packets(400, 5))
    for packet in packets[:3]:
        meeting.publish(packet, 1.0)
    for streams in meeting.sfu.streams.values():  # as when someone joins or moves
        for stream in streams.values():
            stream.route = None
    for packet in packets[3:]:
        meeting.publish(packet, 1.0)
    report = SenderReport(CAMERA_SSRC, 0xE8E1_2345_8000_0000, 0, 5, 500, [])
    meeting.network.send(meeting.a, meeting.a.protect_rtcp([report]), 1.1)
    meeting.network.deliver()
    [relayed] = meeting.b.take_rtcp(SenderReport)
    assert (relayed.packet_count, relayed.octet_count) == (5, 500)


def test_receiver_report_after_a_sender_report_echoes_its_timestamp(meeting: Meeting) -> None:
    meeting.publish(next(camera_packets(400, 1)), 1.0)
    ntp = 0xE8E1_2345_8000_0000
    report = SenderReport(CAMERA_SSRC, ntp, 0, 1, 100, [])
    meeting.network.send(meeting.a, meeting.a.protect_rtcp([report]), 1.0)
    meeting.sfu.handle_timer(1.5)
    meeting.network.deliver()
    [receiver_report] = meeting.a.take_rtcp(ReceiverReport)
    block = receiver_report.reports[0]
    assert block.last_sr == 0x2345_8000
    assert block.delay_since_last_sr == 65536 // 2  # 0.5 s in 1/65536 s


# --- Where media goes ------------------------------------------------------------------------


def test_a_check_from_port_zero_is_not_answered_and_moves_nothing(meeting: Meeting) -> None:
    """The kernel delivers UDP from port 0; no one can be sent media there, and in a
    batch sendmmsg would stop at it."""
    meeting.sfu.datagram_received(meeting.b.binding_request(), ("192.0.2.77", 0), 2.0)
    assert meeting.endpoint_b.address == meeting.b.address
    assert meeting.sfu.counters["dropped_stun_bad_source"] == 1
    assert meeting.network.in_flight == []


def test_a_participant_cannot_keep_moving_its_media_address(meeting: Meeting) -> None:
    """A few moves while ICE settles, then one a second: each move rebuilds the
    routes of the streams it receives."""
    moved = 0
    for port in range(40000, 40020):
        meeting.sfu.datagram_received(meeting.b.binding_request(), ("192.0.2.77", port), 3.0)
        moved += meeting.endpoint_b.address == ("192.0.2.77", port)
    assert moved < 20
    assert meeting.sfu.counters["address_changes_refused"] >= 20 - 5
    meeting.sfu.datagram_received(meeting.b.binding_request(), ("192.0.2.77", 41000), 5.0)
    assert meeting.endpoint_b.address == ("192.0.2.77", 41000)


def test_a_move_rebuilds_only_the_routes_of_what_that_person_receives(meeting: Meeting) -> None:
    for packet in camera_packets(400, 1):
        meeting.publish(packet, 1.0)
    camera = meeting.endpoint_a.published["camera"]
    assert camera.route is not None
    meeting.network.send(meeting.a, meeting.a.binding_request(), 2.0)  # A moves: A receives nothing
    assert camera.route is not None
    meeting.sfu.datagram_received(meeting.b.binding_request(), ("192.0.2.77", 40000), 2.0)
    assert camera.route is None  # B receives the camera


# --- Garbage ---------------------------------------------------------------------------------


def drops(sfu: Sfu) -> int:
    return sum(count for name, count in sfu.counters.items() if name.startswith("dropped_"))


def assert_a_to_b_still_works(meeting: Meeting, now: float) -> None:
    packet = rtp_packet(CAMERA_SSRC, VP8_PT, 5000, 0, b"still here")
    meeting.network.deliver()
    meeting.b.rtp.clear()
    meeting.publish(packet, now)
    meeting.network.deliver()
    assert meeting.b.rtp == [packet]


def is_dtls(data: bytes) -> bool:
    return 20 <= data[0] < 64


def test_random_datagrams_are_dropped_and_counted(meeting: Meeting) -> None:
    rng = random.Random(7)
    stranger = ("198.51.100.99", 40404)
    sent = 0
    for i in range(600):
        data = rng.randbytes(rng.randrange(1, 300))
        address = meeting.a.address if i % 2 else stranger
        if address == meeting.a.address and is_dtls(data):
            continue  # the DTLS session's to discard: see the next test
        meeting.sfu.datagram_received(data, address, 1.0)
        sent += 1
    assert drops(meeting.sfu) == sent
    assert meeting.sfu.counters["errors"] == 0
    assert meeting.network.in_flight == []
    assert meeting.lost == []
    assert_a_to_b_still_works(meeting, 1.1)


def test_random_dtls_records_do_not_end_a_connected_participant(meeting: Meeting) -> None:
    # RFC 6347 section 4.1.2.7: invalid records are silently discarded. Anyone can
    # spoof a participant's source address, so they must not end its session.
    rng = random.Random(7)
    for _ in range(300):
        data = bytes([rng.randrange(20, 64)]) + rng.randbytes(rng.randrange(0, 300))
        meeting.network.send(meeting.a, data, 1.0)
    assert meeting.lost == []
    assert meeting.sfu.counters["errors"] == 0
    assert meeting.network.in_flight == []
    assert_a_to_b_still_works(meeting, 1.1)


def test_random_dtls_records_before_the_handshake_do_not_prevent_it() -> None:
    meeting = set_up_meeting(connect=False)
    meeting.network.browsers[meeting.a.address] = meeting.a
    meeting.network.send(meeting.a, meeting.a.binding_request(), 0.5)
    meeting.network.deliver()
    rng = random.Random(7)
    for _ in range(300):
        data = bytes([rng.randrange(20, 64)]) + rng.randbytes(rng.randrange(0, 300))
        meeting.network.send(meeting.a, data, 0.5)
    meeting.network.connect(meeting.a, 0.6)
    assert meeting.a.handshake_done
    assert meeting.endpoint_a.srtp_in is not None
    assert meeting.lost == []


def test_empty_and_oversize_datagrams_are_dropped(meeting: Meeting) -> None:
    meeting.sfu.datagram_received(b"", meeting.a.address, 1.0)
    meeting.sfu.datagram_received(b"\x80" * 2049, meeting.a.address, 1.0)
    assert meeting.sfu.counters["dropped_oversize"] == 2


def test_truncated_stun_is_dropped_and_counted(meeting: Meeting) -> None:
    request = meeting.a.binding_request()
    meeting.network.send(meeting.a, request[:-10], 1.0)
    meeting.network.send(meeting.a, request[:12], 1.0)
    assert meeting.sfu.counters["dropped_malformed"] == 2
    assert meeting.network.in_flight == []
    assert_a_to_b_still_works(meeting, 1.1)


def test_stun_for_an_unknown_ufrag_is_dropped_and_counted(meeting: Meeting) -> None:
    stranger = Browser(("198.51.100.5", 5000))
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = "nosuchufrag:xyz"
    request.add_message_integrity(b"whatever")
    meeting.network.send(stranger, bytes(request), 1.0)
    assert meeting.sfu.counters["dropped_stun_unknown"] == 1
    assert meeting.network.in_flight == []


def test_dtls_from_an_unknown_address_is_dropped_and_counted(meeting: Meeting) -> None:
    stranger = Browser(("198.51.100.7", 7000))
    for datagram in stranger.dtls_flight():
        meeting.network.send(stranger, datagram, 1.0)
    assert meeting.sfu.counters["dropped_dtls_unknown"] >= 1
    assert meeting.network.in_flight == []
    assert_a_to_b_still_works(meeting, 1.1)


def test_srtp_from_an_unknown_address_is_dropped_and_counted(meeting: Meeting) -> None:
    data = meeting.a.protect_rtp(rtp_packet(CAMERA_SSRC, VP8_PT, 1, 0, b"x"))
    meeting.sfu.datagram_received(data, ("198.51.100.8", 8000), 1.0)
    assert meeting.sfu.counters["dropped_srtp_unknown"] == 1
    meeting.network.deliver()
    assert meeting.b.rtp == []


def test_srtp_with_a_bad_tag_is_dropped_and_counted(meeting: Meeting) -> None:
    data = bytearray(meeting.a.protect_rtp(rtp_packet(CAMERA_SSRC, VP8_PT, 1, 0, b"x" * 50)))
    data[-1] ^= 0x01
    meeting.network.send(meeting.a, bytes(data), 1.0)
    meeting.network.deliver()
    assert meeting.sfu.counters["dropped_srtp_auth"] == 1
    assert meeting.b.rtp == []
    assert_a_to_b_still_works(meeting, 1.1)


def test_srtcp_with_a_bad_tag_is_dropped_and_counted(meeting: Meeting) -> None:
    data = bytearray(meeting.b.protect_rtcp([Pli(meeting.b.rtcp_ssrc, CAMERA_SSRC)]))
    data[-5] ^= 0x01  # before the 4-byte SRTCP index
    meeting.network.send(meeting.b, bytes(data), 2.0)
    meeting.network.deliver()
    assert meeting.sfu.counters["dropped_srtp_auth"] == 1
    assert meeting.a.take_rtcp(Pli) == []


def test_replayed_srtp_is_dropped(meeting: Meeting) -> None:
    data = meeting.a.protect_rtp(rtp_packet(CAMERA_SSRC, VP8_PT, 1, 0, b"x"))
    meeting.network.send(meeting.a, data, 1.0)
    meeting.network.send(meeting.a, data, 1.0)
    meeting.network.deliver()
    assert len(meeting.b.rtp) == 1
    assert meeting.sfu.counters["dropped_srtp_auth"] == 1


# --- Participants going away -----------------------------------------------------------------


def test_dtls_close_notify_means_the_participant_disconnected(meeting: Meeting) -> None:
    meeting.a.dtls.shutdown()  # what closing a peer connection sends
    for datagram in meeting.a.dtls_flight():
        meeting.network.send(meeting.a, datagram, 1.0)
    assert meeting.lost == [(meeting.endpoint_a, "disconnected")]


def interruptions(meeting: Meeting) -> list[tuple[str, bool]]:
    seen: list[tuple[str, bool]] = []
    meeting.sfu.on_endpoint_interrupted = lambda endpoint, interrupted: seen.append(
        (endpoint.participant_id, interrupted))
    return seen


def keep_b_fresh(meeting: Meeting, until: float) -> None:
    """B sends its ICE consent checks every 5 s, as a browser does."""
    now = 5.0
    while now <= until:
        meeting.network.send(meeting.b, meeting.b.binding_request(use_candidate=False), now)
        now += 5.0


def test_a_silent_participant_is_interrupted_then_lost_after_the_grace(meeting: Meeting) -> None:
    seen = interruptions(meeting)
    keep_b_fresh(meeting, 0.5 + MEDIA_GRACE)
    meeting.sfu.handle_timer(0.5 + MEDIA_TIMEOUT - 0.1)
    assert seen == [] and meeting.lost == []
    meeting.sfu.handle_timer(0.5 + MEDIA_TIMEOUT + 0.1)
    assert seen == [("a", True)] and meeting.lost == []
    meeting.sfu.handle_timer(0.5 + MEDIA_GRACE - 0.1)
    assert seen == [("a", True)] and meeting.lost == []
    meeting.sfu.handle_timer(0.5 + MEDIA_GRACE + 0.1)
    assert meeting.lost == [(meeting.endpoint_a, "timeout")]


def test_media_back_within_the_grace_ends_the_interruption(meeting: Meeting) -> None:
    seen = interruptions(meeting)
    keep_b_fresh(meeting, 20.0)
    meeting.sfu.handle_timer(0.5 + MEDIA_TIMEOUT + 0.1)
    meeting.publish(rtp_packet(AUDIO_SSRC, OPUS_PT, 1, 0, b"x"), 20.0)
    meeting.sfu.handle_timer(20.1)
    assert seen == [("a", True), ("a", False)]
    assert meeting.lost == []
    assert meeting.sfu.counters["media_back"] == 1


def test_rtp_keeps_a_publisher_from_timing_out(meeting: Meeting) -> None:
    seen = interruptions(meeting)
    meeting.publish(rtp_packet(AUDIO_SSRC, OPUS_PT, 1, 0, b"x"), 8.0)
    meeting.network.send(meeting.b, meeting.b.binding_request(use_candidate=False), 8.0)
    meeting.sfu.handle_timer(0.5 + MEDIA_TIMEOUT + 0.1)
    assert meeting.lost == [] and seen == []


def test_an_ice_restart_moves_the_media_on_the_same_session(meeting: Meeting) -> None:
    """The browser restarts ICE (new ufrag and password) and comes back from a new
    address, as after a change of network: same DTLS and SRTP, media flows there."""
    old_address, old_ufrag = meeting.b.address, meeting.endpoint_b.ice.local_ufrag
    meeting.b.ufrag, meeting.b.pwd = "newufrag", "newpasswordnewpassword12"
    offer = meeting.b.offer([
        OfferedSection("0", "audio", "recvonly"), OfferedSection("1", "video", "recvonly")])
    answer, _ = meeting.sfu.negotiate(
        meeting.endpoint_b, offer, {"0": ("recv", "a:audio"), "1": ("recv", "a:camera")}, 10.0)
    meeting.b.take_answer(answer)
    assert meeting.endpoint_b.ice.local_ufrag != old_ufrag
    assert meeting.b.answer is not None and meeting.b.answer.remote_ufrag != old_ufrag
    assert meeting.sfu.counters["ice_restarts"] == 1
    meeting.b.address = ("198.51.100.7", 40000)
    meeting.network.browsers[meeting.b.address] = meeting.b
    meeting.network.send(meeting.b, meeting.b.binding_request(), 10.5)
    meeting.network.deliver()
    assert meeting.endpoint_b.address == meeting.b.address != old_address
    meeting.b.rtp.clear()
    meeting.publish(rtp_packet(AUDIO_SSRC, OPUS_PT, 7, 0, b"after"), 11.0)
    meeting.network.deliver()
    assert [packet[12:] for packet in meeting.b.rtp] == [b"after"]


def test_participant_that_never_connected_does_not_time_out() -> None:
    meeting = set_up_meeting(connect=False)
    meeting.sfu.handle_timer(100.0)
    assert meeting.lost == []


def test_removing_a_publisher_unsubscribes_everyone(meeting: Meeting) -> None:
    assert meeting.sfu.remove_endpoint(meeting.endpoint_a) is True
    assert meeting.endpoint_b.subscriptions == {}
    assert meeting.sfu.meeting_streams(MEETING) == []
    assert meeting.endpoint_a.closed


def test_removed_publisher_media_is_no_longer_forwarded(meeting: Meeting) -> None:
    meeting.sfu.remove_endpoint(meeting.endpoint_a)
    meeting.publish(rtp_packet(AUDIO_SSRC, OPUS_PT, 1, 0, b"x"), 1.0)
    meeting.network.deliver()
    assert meeting.b.rtp == []
    assert meeting.sfu.counters["dropped_srtp_unknown"] == 1


def test_removed_participant_stun_is_no_longer_answered(meeting: Meeting) -> None:
    meeting.sfu.remove_endpoint(meeting.endpoint_a)
    meeting.network.send(meeting.a, meeting.a.binding_request(), 1.0)
    assert meeting.network.in_flight == []
    assert meeting.sfu.counters["dropped_stun_unknown"] == 1


def test_removing_a_subscriber_only_returns_false(meeting: Meeting) -> None:
    assert meeting.sfu.remove_endpoint(meeting.endpoint_b) is False
    streams = meeting.sfu.meeting_streams(MEETING)
    assert all(stream.subscriptions == [] for stream in streams)
    assert len(streams) == 2


# --- What the host stops ---------------------------------------------------------------------


def test_a_kind_the_host_blocked_is_dropped_and_the_rest_still_flows(meeting: Meeting) -> None:
    """A host's mute holds in the SFU, whatever the muted client sends."""
    meeting.endpoint_a.blocked.add("audio")
    audio = rtp_packet(AUDIO_SSRC, OPUS_PT, 7, 960, b"still talking")
    camera = rtp_packet(CAMERA_SSRC, VP8_PT, 1000, 90000, b"still visible")
    meeting.publish(audio, 1.0)
    meeting.publish(camera, 1.0)
    meeting.network.deliver()
    assert meeting.b.rtp == [camera]
    assert meeting.sfu.counters["dropped_blocked_by_host"] == 1
    meeting.endpoint_a.blocked.clear()  # the host allows it again
    meeting.publish(rtp_packet(AUDIO_SSRC, OPUS_PT, 8, 1920, b"back"), 2.0)
    meeting.network.deliver()
    assert len(meeting.b.rtp) == 2


def test_a_publication_the_meeting_does_not_allow_is_answered_inactive() -> None:
    sfu = Sfu(public_ip=PUBLIC_IP, media_port=MEDIA_PORT)
    browser = Browser(("192.0.2.40", 50040))
    endpoint = sfu.add_endpoint("d", MEETING)
    offer = browser.offer([
        OfferedSection("0", "video", "sendonly", CAMERA_SSRC),
        OfferedSection("1", "video", "sendonly", CAMERA_SSRC + 2),
    ])
    answer, changed = sfu.negotiate(
        endpoint, offer, {"0": ("send", "camera"), "1": ("send", "screen")}, 0.0,
        may_publish=lambda kind: kind != "screen",
    )
    directions = [section.direction for section in parse_offer(answer).sections]
    assert directions == ["recvonly", "inactive"]
    assert endpoint.refused == {"screen"}
    assert [s.kind for s in sfu.meeting_streams(MEETING)] == ["camera"]
    assert changed


# --- Firefox ---------------------------------------------------------------------------------


def test_firefox_first_offer_publishes_its_camera_and_accepts_every_section() -> None:
    """Firefox's first offer has port 0 and bundle-only on all but the first section."""
    sfu = Sfu(public_ip=PUBLIC_IP, media_port=MEDIA_PORT, media_timeout=MEDIA_TIMEOUT)
    offer = (Path(__file__).parent / "vectors" / "firefox_offer.sdp").read_bytes().decode()
    endpoint = sfu.add_endpoint("f", MEETING)
    roles: dict[str, tuple[str, str | None]] = {
        "0": ("send", "audio"), "1": ("send", "camera"), "2": ("recv", None), "3": ("recv", None),
    }
    answer, changed = sfu.negotiate(endpoint, offer, roles, 0.0)
    assert changed
    assert sorted(endpoint.published) == ["audio", "camera"]
    assert endpoint.published["camera"].ssrc == 3561257181
    parsed = parse_offer(answer)
    assert [s.port for s in parsed.sections] == [9, 9, 9, 9]
    assert parsed.bundle == ["0", "1", "2", "3"]


# A fatal handshake_failure alert in epoch 0, as anyone who can send from a
# participant's address could forge it, and records framed wrong in three ways.
FORGED_ALERT = bytes.fromhex("15fefd" "0000" "000000000009" "0002" "0228")
BROKEN_RECORDS = [
    bytes.fromhex("16fefd" "0000" "00000000000a" "00ff") + b"\x01" * 10,  # longer than sent
    bytes.fromhex("17fefd" "0000" "00000000000b" "0004") + b"abcd",  # app data in epoch 0
    bytes.fromhex("16fefd" "0007" "00000000000c" "0004") + b"abcd",  # an epoch never reached
]


@pytest.mark.parametrize("forged", [FORGED_ALERT, *BROKEN_RECORDS])
def test_a_forged_record_in_the_middle_of_the_handshake_does_not_end_it(forged: bytes) -> None:
    meeting = set_up_meeting(connect=False)
    network, a = meeting.network, meeting.a
    network.browsers[a.address] = a
    network.send(a, a.binding_request(), 0.5)
    network.deliver()
    for datagram in a.dtls_flight():  # the ClientHello: the server now waits for more
        network.send(a, datagram, 0.5)
    network.send(a, forged, 0.5)
    network.deliver()
    network.connect(a, 0.6)
    network.connect(meeting.b, 0.6)
    assert a.handshake_done
    assert meeting.endpoint_a.srtp_in is not None
    assert meeting.lost == []
    assert meeting.sfu.counters["dropped_dtls_bad_record"] == 1
    assert_a_to_b_still_works(meeting, 1.0)


# --- NACK: bounded, and never at the cost of the rest of the RTCP ----------------------------


def test_a_nack_far_behind_is_declined_and_the_rest_of_the_rtcp_still_counts(
    meeting: Meeting,
) -> None:
    packets = list(camera_packets(1000, 300))
    for packet in packets[:290]:
        meeting.publish(packet, 1.0)
    meeting.network.deliver()
    meeting.publish(packets[290], 1.0)
    meeting.network.discard()  # 1290 is lost on the way to B
    for packet in packets[291:]:
        meeting.publish(packet, 1.0)
    meeting.network.deliver()
    meeting.b.rtp.clear()
    # 250 behind: still in the 512-packet cache, but beyond what SRTP can protect again.
    too_old = Nack(meeting.b.rtcp_ssrc, CAMERA_SSRC, [1049])
    recent = Nack(meeting.b.rtcp_ssrc, CAMERA_SSRC, [1290])
    meeting.feedback_from_b([too_old, Pli(meeting.b.rtcp_ssrc, CAMERA_SSRC), recent], 2.0)
    meeting.network.deliver()
    assert [rtp_sequence(p) for p in meeting.b.rtp] == [1290]
    assert meeting.sfu.counters["nack_too_old"] == 1
    assert meeting.sfu.counters["errors"] == 0
    assert len(meeting.a.take_rtcp(Pli)) == 1  # the PLI after it was not lost


def test_a_packet_asked_for_twice_within_a_round_trip_is_sent_once(meeting: Meeting) -> None:
    for packet in camera_packets(200, 10):
        meeting.publish(packet, 1.0)
    meeting.network.discard()  # B lost them all
    for now in (1.50, 1.52, 1.54, 1.70):
        meeting.feedback_from_b([Nack(meeting.b.rtcp_ssrc, CAMERA_SSRC, [205])], now)
    to_b = [d for d, address in meeting.network.in_flight if address == meeting.b.address]
    assert len(to_b) == 2  # at 1.50, and again at 1.70 once a round trip had passed
    assert meeting.sfu.counters["nack_repeated"] == 2


def test_a_flood_of_nacks_costs_at_most_the_receivers_retransmission_budget(
    meeting: Meeting,
) -> None:
    for sequence in range(128):  # full-size video packets
        meeting.publish(rtp_packet(CAMERA_SSRC, VP8_PT, sequence, 0, bytes(1100)), 1.0)
    meeting.network.discard()
    # What the review sent: 48 NACKs of 64 sequence numbers in one datagram, many times.
    flood = [Nack(meeting.b.rtcp_ssrc, CAMERA_SSRC, list(range(64)))] * 24 + [
        Nack(meeting.b.rtcp_ssrc, CAMERA_SSRC, list(range(64, 128)))] * 24
    for i in range(20):
        meeting.feedback_from_b(flood, 2.0 + i * 0.05)
    to_b = [d for d, address in meeting.network.in_flight if address == meeting.b.address]
    # Within a second of budget, where unbounded it would have been 61,440 packets.
    assert sum(len(d) for d in to_b) <= RETRANSMIT_BYTES_BURST + RETRANSMIT_BYTES_RATE * 1.0
    assert len(to_b) < 61_440 / 20
    assert meeting.sfu.counters["nack_over_budget"] > 0
    assert meeting.sfu.counters["nack_repeated"] > 0
    # Of each datagram's 3,072 sequence numbers, only the first 256 are looked at.
    assert meeting.sfu.counters["nack_ignored"] == 20 * (48 * 64 - 256)


# --- What one participant may send --------------------------------------------------------------


def test_a_publisher_sending_far_more_than_anyone_would_is_cut_to_its_rate(
    meeting: Meeting,
) -> None:
    """8,000 packets of 1,200 bytes a second (77 Mbit/s) for two seconds: what passes
    is the burst and the rate, and the rest is dropped before it costs a fan-out."""
    payload = bytes(1200 - 12)
    sent = 16_000
    for i in range(sent):
        meeting.publish(rtp_packet(CAMERA_SSRC, VP8_PT, i & 0xFFFF, 90 * i, payload),
                        1.0 + i / 8000)
    meeting.network.deliver()
    forwarded = len(meeting.b.rtp)
    allowed = (SEND_BURST + SEND_RATE * 2.0) / (1200 + PACKET_COST)
    assert allowed * 0.95 <= forwarded <= allowed * 1.05, (forwarded, allowed)
    assert meeting.sfu.counters["dropped_over_send_rate"] == sent - forwarded
    # Back within its rate, it is forwarded in full again.
    meeting.b.rtp.clear()
    for i in range(100):
        meeting.publish(rtp_packet(CAMERA_SSRC, VP8_PT, (sent + i) & 0xFFFF, 90 * i, payload),
                        10.0 + i / 100)
    meeting.network.deliver()
    assert len(meeting.b.rtp) == 100


def test_loss_from_the_publisher_is_asked_for_by_the_sfu_and_repaired(meeting: Meeting) -> None:
    """Before, a packet lost on the way in was asked for only after a receiver's NACK
    found the SFU's cache without it. Now the SFU asks at once, and forwards the
    packet when it comes."""
    packets = list(camera_packets(2000, 10))
    for packet in packets:
        if packet is not packets[4]:  # 2004 is lost between the publisher and the SFU
            meeting.publish(packet, 1.0)
    meeting.network.deliver()
    [nack] = meeting.a.take_rtcp(Nack)
    assert (nack.media_ssrc, nack.lost) == (CAMERA_SSRC, [2004])
    assert meeting.sfu.counters["nack_sent_upstream"] == 1
    # Still missing at the next tick: asked again.
    meeting.sfu.handle_timer(1.06)
    meeting.network.deliver()
    assert [n.lost for n in meeting.a.take_rtcp(Nack)] == [[2004]]
    meeting.publish(packets[4], 1.08)  # the publisher sends it again
    meeting.network.deliver()
    assert rtp_sequence(meeting.b.rtp[-1]) == 2004
    meeting.sfu.handle_timer(1.2)
    meeting.network.deliver()
    assert meeting.a.take_rtcp(Nack) == []
