"""One WebRTC peer on one UDP socket, without codecs: ICE (either role), DTLS
(either role), SRTP, and synthetic RTP whose payload says who sent it, on which
stream, with which number and when.

Payload layout (big-endian): four bytes that read as a VP8 payload descriptor and
an inter-frame header (SFUs that look at VP8 see a well-formed delta frame), then
the send time as a float64 of `time.time()`, the sender's index (uint32), the
kind (uint8: 0 audio, 1 video) and the stream's own packet number (uint32), then
padding. Servers may rewrite SSRCs and sequence numbers (Janus does); the payload
identifies each packet whatever they do.

A peer that only counts (`measure=False`) does not decrypt: it counts SRTP
datagrams, so one generator process can stand in for many receivers.

Arrival times are the kernel's (SO_TIMESTAMPNS, the same clock as `time.time()`),
so the added delay measured is the server's and the network's, not time a
datagram waited for the generator's own event loop.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field

import pylibsrtp
from aioice import stun
from OpenSSL import SSL

from confide.sfu.dtls import certificate_fingerprint, self_signed_certificate
from confide.sfu.sdp import parse_offer

logger = logging.getLogger(__name__)

OPUS_PT = 111
VP8_PT = 96
AUDIO, VIDEO = 0, 1
RTP_HEADER = struct.Struct("!BBHII")
SENDER_REPORT = struct.Struct("!BBHIQIII")
NTP_EPOCH_OFFSET = 2208988800
"""Seconds from 1900 (NTP) to 1970 (Unix)."""
PAYLOAD_HEADER = struct.Struct("!4sdIBI")
VP8_START, VP8_MIDDLE = b"\x10\x01\x00\x00", b"\x00\x01\x00\x00"
"""Descriptor with S=1 (or 0) and partition 0; frame header with P=1: a delta frame."""

# RFC 5764 section 4.1.2 profile names, as OpenSSL spells them: pylibsrtp id, key and salt lengths.
SRTP_PROFILES = {
    b"SRTP_AEAD_AES_128_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12),
    b"SRTP_AES128_CM_SHA1_80": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14),
}


@dataclass(frozen=True)
class Section:
    """One m-section of our offer."""

    mid: str
    kind: str
    """'audio' or 'video'."""
    ssrc: int | None = None
    """Set for a send section; None for a receive section."""


@dataclass(frozen=True)
class Answer:
    """What we need from the server's SDP (its answer, or its offer to us)."""

    ufrag: str
    pwd: str
    fingerprint: str
    address: tuple[str, int] | None
    """Where the server's first candidate says to send media; None if it trickles."""
    ssrcs: dict[str, int]
    """Mid to the SSRC the server sends on it."""
    setup: str = "passive"
    """The server's DTLS role, as its SDP says: 'active' means it sends the ClientHello."""


def parse_answer(sdp: str) -> Answer:
    parsed = parse_offer(sdp)  # an answer parses like an offer
    address = None
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            address = candidate_address(line[2:])
            if address is not None:
                break
    fingerprint = next(fp for alg, fp in parsed.remote_fingerprints if alg == "sha-256")
    ssrcs = {s.mid: s.ssrcs[0] for s in parsed.sections if s.ssrcs}
    setup = next((line.split(":", 1)[1].strip() for line in sdp.splitlines()
                  if line.startswith("a=setup:")), "passive")
    return Answer(parsed.remote_ufrag, parsed.remote_pwd, fingerprint, address, ssrcs, setup)


def candidate_address(candidate: str) -> tuple[str, int] | None:
    """The address of a UDP IPv4 candidate ('candidate:...' attribute value)."""
    parts = candidate.split()
    if len(parts) < 8 or parts[2].lower() != "udp" or ":" in parts[4]:
        return None
    return parts[4], int(parts[5])


def payload(sender: int, kind: int, number: int, size: int, now: float,
            start: bool = True) -> bytes:
    prefix = VP8_START if start or kind == AUDIO else VP8_MIDDLE
    header = PAYLOAD_HEADER.pack(prefix, now, sender, kind, number)
    return header + bytes(max(0, size - PAYLOAD_HEADER.size))


@dataclass
class Received:
    """Decrypted RTP as it arrived: columns, to keep recording cheap."""

    stream: list[int] = field(default_factory=list)
    """sender * 2 + kind"""
    number: list[int] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    arrived_at: list[float] = field(default_factory=list)


@dataclass
class Feedback:
    """RTCP that arrived (counted in measuring peers only)."""

    nack: int = 0
    pli: int = 0
    fir: int = 0
    remb: int = 0
    sender_reports: int = 0

    def add(self, other: Feedback) -> None:
        for key, value in vars(other).items():
            setattr(self, key, getattr(self, key) + value)


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("=qq")
ANCILLARY_BYTES = socket.CMSG_SPACE(TIMESPEC.size)


class Peer:
    """A WebRTC peer connection as far as the wire is concerned.

    `controlling`: the ICE role (the offerer's, against a full agent; always,
    against an ICE-lite server). The DTLS role follows the server's a=setup."""

    def __init__(self, index: int, controlling: bool = True, measure: bool = True) -> None:
        self.index = index
        self.controlling = controlling
        self.dtls_client = True
        self.measure = measure
        self.ufrag = secrets.token_hex(4)
        self.pwd = secrets.token_hex(12)
        self.tie_breaker = secrets.randbits(63)
        certificate, key, self.fingerprint = self_signed_certificate()
        context = SSL.Context(SSL.DTLS_METHOD)
        context.use_certificate(certificate)
        context.use_privatekey(key)
        # The server's certificate is self-signed: checked against the SDP's fingerprint.
        context.set_verify(SSL.VERIFY_PEER, lambda *args: True)
        context.set_tlsext_use_srtp(b":".join(SRTP_PROFILES))
        self.dtls = SSL.Connection(context, None)
        self.sock: socket.socket | None = None
        self._count_buffer = bytearray(2048)
        self.remote: tuple[str, int] | None = None
        self.answer: Answer | None = None
        self.checked = False
        self.nominated = False
        self.ice_done = asyncio.Event()
        self.dtls_done = asyncio.Event()
        self.srtp_tx: pylibsrtp.Session | None = None
        self.srtp_rx: pylibsrtp.Session | None = None
        self.received = Received()
        self.feedback = Feedback()
        self.counted = 0
        """RTP datagrams that arrived, counted without decrypting (measure=False)."""
        self.errors = 0

    @property
    def address(self) -> tuple[str, int]:
        assert self.sock is not None
        host, port = self.sock.getsockname()[:2]
        return host, port

    @property
    def candidate(self) -> str:
        """Our one host candidate, as an SDP attribute value."""
        host, port = self.address
        return f"candidate:1 1 udp 2130706431 {host} {port} typ host"

    async def open(self, host: str = "127.0.0.1") -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._drain)

    def close(self) -> None:
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _drain(self) -> None:
        """One datagram per wakeup: the loop polls level-triggered and calls again
        while more wait, and reading until EAGAIN would cost a failed system call
        and an exception per wakeup, when most wakeups find one datagram."""
        sock = self.sock
        if sock is None:
            return
        if not self.measure and self.srtp_rx is not None:
            self._count_one(sock)
            return
        try:
            data, ancillary, _, addr = sock.recvmsg(2048, ANCILLARY_BYTES)
        except OSError:  # nothing after all, or an ICMP error for an earlier send
            return
        arrived = None
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = TIMESPEC.unpack_from(value)
                arrived = seconds + nanoseconds * 1e-9
        self.datagram_received(data, addr, arrived if arrived is not None else time.time())

    def _count_one(self, sock: socket.socket) -> None:
        """Counting peers: only whether it is RTP, without a bytes object per datagram."""
        buffer = self._count_buffer
        try:
            size, addr = sock.recvfrom_into(buffer)
        except OSError:
            return
        if size >= 2 and 128 <= buffer[0] < 192 and not 192 <= buffer[1] <= 223:
            self.counted += 1
        elif size:
            self.datagram_received(bytes(buffer[:size]), addr, time.time())

    # SDP

    def _media_lines(self, kind: str, payload_type: int | None = None) -> list[str]:
        if kind == "audio":
            pt = payload_type or OPUS_PT
            return [f"m=audio 9 UDP/TLS/RTP/SAVPF {pt}", f"a=rtpmap:{pt} opus/48000/2"]
        pt = payload_type or VP8_PT
        return [f"m=video 9 UDP/TLS/RTP/SAVPF {pt}", f"a=rtpmap:{pt} VP8/90000",
                f"a=rtcp-fb:{pt} nack", f"a=rtcp-fb:{pt} nack pli", f"a=rtcp-fb:{pt} ccm fir"]

    def _session_lines(self, mids: list[str]) -> list[str]:
        return [
            "v=0",
            f"o=- {secrets.randbits(62)} 2 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            f"a=group:BUNDLE {' '.join(mids)}",
            "a=msid-semantic: WMS loadgen",
        ]

    def _transport_lines(self, setup: str, with_candidate: bool) -> list[str]:
        lines = [
            "c=IN IP4 127.0.0.1",
            f"a=ice-ufrag:{self.ufrag}",
            f"a=ice-pwd:{self.pwd}",
            f"a=fingerprint:sha-256 {self.fingerprint}",
            f"a=setup:{setup}",
        ]
        if with_candidate:
            lines += [f"a={self.candidate}", "a=end-of-candidates"]
        return lines

    def offer(self, sections: list[Section], setup: str = "actpass",
              with_candidate: bool = False) -> str:
        lines = self._session_lines([s.mid for s in sections])
        for section in sections:
            media = self._media_lines(section.kind)
            lines += [
                media[0],
                *self._transport_lines(setup, with_candidate),
                f"a=mid:{section.mid}",
                "a=sendonly" if section.ssrc is not None else "a=recvonly",
                "a=rtcp-mux",
                *media[1:],
            ]
            if section.ssrc is not None:
                lines += [
                    f"a=ssrc:{section.ssrc} cname:loadgen{self.index}",
                    f"a=ssrc:{section.ssrc} msid:loadgen{self.index} {section.mid}",
                ]
        return "\r\n".join(lines) + "\r\n"

    def answer_receiving(self, offer_sdp: str) -> str:
        """A recvonly answer to a server's offer (a subscription), as DTLS client."""
        parsed = parse_offer(offer_sdp)
        lines = self._session_lines([s.mid for s in parsed.sections])
        for section in parsed.sections:
            kind = "audio" if section.kind == "audio" else "video"
            wanted = "opus" if kind == "audio" else "vp8"
            pt = next((c.payload_type for c in section.codecs if c.name.lower() == wanted), None)
            media = self._media_lines(kind, pt)
            lines += [
                media[0],
                *self._transport_lines("active", with_candidate=True),
                f"a=mid:{section.mid}",
                "a=recvonly",
                "a=rtcp-mux",
                *media[1:],
            ]
        return "\r\n".join(lines) + "\r\n"

    # ICE and DTLS

    async def connect(self, answer: Answer, remote: tuple[str, int] | None = None,
                      timeout: float = 30.0) -> None:
        """ICE checks, then the DTLS handshake; `remote` overrides the SDP's
        candidate (e.g. to go through a relay, or one that trickled)."""
        self.answer = answer
        self.remote = remote or answer.address or self.remote
        # Their 'active' makes us the DTLS server; 'passive', or 'actpass' answered
        # by our 'active', makes us the client.
        self.dtls_client = answer.setup != "active"
        if self.dtls_client:
            self.dtls.set_connect_state()
        else:
            self.dtls.set_accept_state()
        if self.remote is None:
            raise ValueError("no candidate to connect to")
        async with asyncio.timeout(timeout):
            while not self.ice_done.is_set():
                self._send(self._binding_request())
                try:
                    await asyncio.wait_for(self.ice_done.wait(), 0.2)
                except TimeoutError:
                    pass
            if self.dtls_client:
                self._advance_dtls()
            loop = asyncio.get_running_loop()
            next_consent = loop.time() + 1.0
            while not self.dtls_done.is_set():
                wait = self.dtls.DTLSv1_get_timeout() or 0.1
                try:
                    await asyncio.wait_for(self.dtls_done.wait(), min(wait, 0.5))
                except TimeoutError:
                    self.dtls.DTLSv1_handle_timeout()
                    self._flush_dtls()
                if loop.time() >= next_consent:
                    # DTLS backs off to many seconds; the server times out silent peers.
                    self.keepalive()
                    next_consent += 1.0

    def _binding_request(self) -> bytes:
        assert self.answer is not None
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        request.attributes["USERNAME"] = f"{self.answer.ufrag}:{self.ufrag}"
        request.attributes["PRIORITY"] = 1853824767
        if self.controlling:
            request.attributes["ICE-CONTROLLING"] = self.tie_breaker
            request.attributes["USE-CANDIDATE"] = None
        else:
            request.attributes["ICE-CONTROLLED"] = self.tie_breaker
        request.add_message_integrity(self.answer.pwd.encode())
        request.add_fingerprint()
        return bytes(request)

    def _binding_response(self, request: stun.Message, addr: tuple[str, int]) -> bytes:
        response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE,
                                transaction_id=request.transaction_id)
        response.attributes["XOR-MAPPED-ADDRESS"] = addr
        response.add_message_integrity(self.pwd.encode())
        response.add_fingerprint()
        return bytes(response)

    def keepalive(self) -> None:
        """A consent check, so a peer that only receives is not timed out."""
        if self.answer is not None and self.remote is not None:
            self._send(self._binding_request())

    def _on_stun(self, data: bytes, addr: tuple[str, int]) -> None:
        message = stun.parse_message(data)
        if message.message_class == stun.Class.REQUEST:
            # A full ICE agent checks us too, and keeps checking for consent.
            if message.attributes.get("USERNAME", "").split(":")[0] != self.ufrag:
                raise ValueError("STUN request for another ufrag")
            if self.sock is not None:
                self.sock.sendto(self._binding_response(message, addr), addr)
            if self.remote is None:
                self.remote = addr
            if "USE-CANDIDATE" in message.attributes:
                self.nominated = True
        elif message.message_class == stun.Class.RESPONSE:
            self.checked = True
        if self.checked and (self.controlling or self.nominated):
            self.ice_done.set()

    def _advance_dtls(self) -> None:
        if self.dtls_done.is_set():
            return
        try:
            self.dtls.do_handshake()
        except SSL.WantReadError:
            self._flush_dtls()
            return
        self._flush_dtls()
        self._start_srtp()
        self.dtls_done.set()

    def _flush_dtls(self) -> None:
        while True:
            try:
                self._send(self.dtls.bio_read(4096))
            except SSL.WantReadError:
                return

    def _start_srtp(self) -> None:
        assert self.answer is not None
        cert = self.dtls.get_peer_certificate(as_cryptography=True)
        if cert is None or certificate_fingerprint(cert) != self.answer.fingerprint.upper():
            raise ValueError("server certificate does not match the SDP's fingerprint")
        profile, key_len, salt_len = SRTP_PROFILES[self.dtls.get_selected_srtp_profile()]
        material = self.dtls.export_keying_material(
            b"EXTRACTOR-dtls_srtp", 2 * (key_len + salt_len))
        # RFC 5764 section 4.2: client key, server key, client salt, server salt.
        client_key, server_key = material[:key_len], material[key_len : 2 * key_len]
        client_salt = material[2 * key_len : 2 * key_len + salt_len]
        server_salt = material[2 * key_len + salt_len :]
        ours, theirs = client_key + client_salt, server_key + server_salt
        if not self.dtls_client:
            ours, theirs = theirs, ours
        self.srtp_tx = pylibsrtp.Session(pylibsrtp.Policy(
            key=ours, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
        self.srtp_rx = pylibsrtp.Session(pylibsrtp.Policy(
            key=theirs, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile))

    # Datagrams

    def _send(self, data: bytes) -> None:
        if self.sock is not None and self.remote is not None:
            try:
                self.sock.sendto(data, self.remote)
            except BlockingIOError:
                self.errors += 1

    def datagram_received(self, data: bytes, addr: tuple[str, int], arrived: float) -> None:
        first = data[0] if data else 0
        if 128 <= first < 192 and self.srtp_rx is not None:
            if 192 <= data[1] <= 223:
                if self.measure:
                    self._on_rtcp(data)
            elif self.measure:
                try:
                    self._record(self.srtp_rx.unprotect(data), arrived)
                except pylibsrtp.Error:
                    self.errors += 1
            else:
                self.counted += 1
            return
        try:
            if first < 4:
                self._on_stun(data, addr)
            elif 20 <= first < 64 and self.answer is not None:
                self.dtls.bio_write(data)
                self._advance_dtls()
        except (ValueError, KeyError, SSL.Error, pylibsrtp.Error) as error:
            self.errors += 1
            logger.debug("dropped datagram: %s", error)

    def _on_rtcp(self, data: bytes) -> None:
        assert self.srtp_rx is not None
        try:
            packet = self.srtp_rx.unprotect_rtcp(data)
        except pylibsrtp.Error:
            self.errors += 1
            return
        offset = 0
        feedback = self.feedback
        while offset + 4 <= len(packet):
            fmt, pt = packet[offset] & 0x1F, packet[offset + 1]
            if pt == 200:
                feedback.sender_reports += 1
            elif pt == 205 and fmt == 1:
                feedback.nack += 1
            elif pt == 206 and fmt == 1:
                feedback.pli += 1
            elif pt == 206 and fmt == 4:
                feedback.fir += 1
            elif pt == 206 and fmt == 15:
                feedback.remb += 1
            offset += 4 + 4 * int.from_bytes(packet[offset + 2 : offset + 4], "big")

    def _record(self, packet: bytes, arrived: float) -> None:
        offset = 12 + 4 * (packet[0] & 0x0F)
        if packet[0] & 0x10:
            offset += 4 + 4 * int.from_bytes(packet[offset + 2 : offset + 4], "big")
        _, sent, sender, kind, number = PAYLOAD_HEADER.unpack_from(packet, offset)
        received = self.received
        received.stream.append(sender * 2 + kind)
        received.number.append(number)
        received.sent_at.append(sent)
        received.arrived_at.append(arrived)

    def send_sender_report(self, ssrc: int, rtp_timestamp: int, packets: int, octets: int,
                           now: float) -> None:
        """An RTCP sender report, as a browser sends about once a second per stream."""
        if self.srtp_tx is None:
            return
        ntp = int((now + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF
        report = SENDER_REPORT.pack(0x80, 200, 6, ssrc, ntp, rtp_timestamp & 0xFFFFFFFF,
                                    packets & 0xFFFFFFFF, octets & 0xFFFFFFFF)
        self._send(self.srtp_tx.protect_rtcp(report))

    def send_rtp(self, ssrc: int, payload_type: int, seq: int, timestamp: int,
                 body: bytes, marker: bool = False) -> None:
        if self.srtp_tx is None:
            return
        header = RTP_HEADER.pack(0x80, (0x80 if marker else 0) | payload_type,
                                 seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
        self._send(self.srtp_tx.protect(header + body))
