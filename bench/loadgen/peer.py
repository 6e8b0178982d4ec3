"""One WebRTC peer on one UDP socket, without codecs: ICE (controlling, against an
ICE-lite server), DTLS client, SRTP, and synthetic RTP whose payload carries its
send time.

Payload layout (big-endian): send time as a float64 of `time.monotonic()`, the
sender's index as a uint32, then padding up to the packet size.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
from dataclasses import dataclass, field
from typing import cast

import pylibsrtp
from aioice import stun
from OpenSSL import SSL

from confide.sfu.dtls import certificate_fingerprint, self_signed_certificate
from confide.sfu.sdp import parse_offer

logger = logging.getLogger(__name__)

OPUS_PT = 111
VP8_PT = 96
RTP_HEADER = struct.Struct("!BBHII")
PAYLOAD_HEADER = struct.Struct("!dI")

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
    ufrag: str
    pwd: str
    fingerprint: str
    address: tuple[str, int]
    """Where the server's candidate says to send media."""
    ssrcs: dict[str, int]
    """Receive mid to the SSRC the server forwards on it."""


def parse_answer(sdp: str) -> Answer:
    parsed = parse_offer(sdp)  # an answer parses like an offer
    address: tuple[str, int] | None = None
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            address = (parts[4], int(parts[5]))
            break
    if address is None:
        raise ValueError("answer has no candidate")
    fingerprint = next(fp for alg, fp in parsed.remote_fingerprints if alg == "sha-256")
    ssrcs = {s.mid: s.ssrcs[0] for s in parsed.sections if s.ssrcs}
    return Answer(parsed.remote_ufrag, parsed.remote_pwd, fingerprint, address, ssrcs)


def payload(index: int, size: int, now: float) -> bytes:
    return PAYLOAD_HEADER.pack(now, index) + bytes(max(0, size - PAYLOAD_HEADER.size))


@dataclass
class Received:
    """Decrypted RTP as it arrived: columns, to keep recording cheap."""

    ssrc: list[int] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    arrived_at: list[float] = field(default_factory=list)


class Peer(asyncio.DatagramProtocol):
    """A WebRTC peer connection as far as the wire is concerned."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.ufrag = secrets.token_hex(4)
        self.pwd = secrets.token_hex(12)
        certificate, key, self.fingerprint = self_signed_certificate()
        context = SSL.Context(SSL.DTLS_METHOD)
        context.use_certificate(certificate)
        context.use_privatekey(key)
        # The server's certificate is self-signed: checked against the answer's fingerprint.
        context.set_verify(SSL.VERIFY_PEER, lambda *args: True)
        context.set_tlsext_use_srtp(b":".join(SRTP_PROFILES))
        self.dtls = SSL.Connection(context, None)
        self.dtls.set_connect_state()
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] | None = None
        self.answer: Answer | None = None
        self.ice_done = asyncio.Event()
        self.dtls_done = asyncio.Event()
        self.srtp_tx: pylibsrtp.Session | None = None
        self.srtp_rx: pylibsrtp.Session | None = None
        self.received = Received()
        self.errors = 0

    async def open(self, host: str = "127.0.0.1") -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # SDP

    def offer(self, sections: list[Section]) -> str:
        lines = [
            "v=0",
            f"o=- {secrets.randbits(62)} 2 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            f"a=group:BUNDLE {' '.join(s.mid for s in sections)}",
            "a=msid-semantic: WMS loadgen",
        ]
        for section in sections:
            if section.kind == "audio":
                media = [f"m=audio 9 UDP/TLS/RTP/SAVPF {OPUS_PT}",
                         f"a=rtpmap:{OPUS_PT} opus/48000/2"]
            else:
                media = [f"m=video 9 UDP/TLS/RTP/SAVPF {VP8_PT}",
                         f"a=rtpmap:{VP8_PT} VP8/90000"]
            lines += [
                media[0],
                "c=IN IP4 0.0.0.0",
                f"a=ice-ufrag:{self.ufrag}",
                f"a=ice-pwd:{self.pwd}",
                f"a=fingerprint:sha-256 {self.fingerprint}",
                "a=setup:actpass",
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

    # ICE and DTLS

    async def connect(self, answer: Answer, remote: tuple[str, int] | None = None,
                      timeout: float = 30.0) -> None:
        """ICE check with nomination, then the DTLS handshake; `remote` overrides
        the answer's candidate (e.g. to go through a relay)."""
        self.answer = answer
        self.remote = remote or answer.address
        async with asyncio.timeout(timeout):
            while not self.ice_done.is_set():
                self._send(self._binding_request())
                try:
                    await asyncio.wait_for(self.ice_done.wait(), 0.2)
                except TimeoutError:
                    pass
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
        request.attributes["ICE-CONTROLLING"] = secrets.randbits(63)
        request.attributes["USE-CANDIDATE"] = None
        request.add_message_integrity(self.answer.pwd.encode())
        return bytes(request)

    def keepalive(self) -> None:
        """A consent check, so a peer that only receives is not timed out."""
        if self.answer is not None:
            self._send(self._binding_request())

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
            raise ValueError("server certificate does not match the answer's fingerprint")
        profile, key_len, salt_len = SRTP_PROFILES[self.dtls.get_selected_srtp_profile()]
        material = self.dtls.export_keying_material(
            b"EXTRACTOR-dtls_srtp", 2 * (key_len + salt_len))
        # RFC 5764 section 4.2: client key, server key, client salt, server salt.
        client_key, server_key = material[:key_len], material[key_len : 2 * key_len]
        client_salt = material[2 * key_len : 2 * key_len + salt_len]
        server_salt = material[2 * key_len + salt_len :]
        self.srtp_tx = pylibsrtp.Session(pylibsrtp.Policy(
            key=client_key + client_salt, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=profile))
        self.srtp_rx = pylibsrtp.Session(pylibsrtp.Policy(
            key=server_key + server_salt, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
            srtp_profile=profile))

    # Datagrams

    def _send(self, data: bytes) -> None:
        if self.transport is not None and self.remote is not None:
            self.transport.sendto(data, self.remote)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        first = data[0] if data else 0
        try:
            if first < 4:
                message = stun.parse_message(data)
                if message.message_class == stun.Class.RESPONSE:
                    self.ice_done.set()
            elif 20 <= first < 64:
                self.dtls.bio_write(data)
                self._advance_dtls()
            elif 128 <= first < 192 and self.srtp_rx is not None:
                if 192 <= data[1] <= 223:
                    return  # RTCP: keyframe requests and reports, not measured
                self._record(self.srtp_rx.unprotect(data))
        except (ValueError, SSL.Error, pylibsrtp.Error) as error:
            self.errors += 1
            logger.debug("dropped datagram: %s", error)

    def _record(self, packet: bytes) -> None:
        arrived = time.monotonic()
        _, _, seq, _, ssrc = RTP_HEADER.unpack_from(packet)
        offset = 12 + 4 * (packet[0] & 0x0F)
        if packet[0] & 0x10:
            offset += 4 + 4 * int.from_bytes(packet[offset + 2 : offset + 4], "big")
        sent, _ = PAYLOAD_HEADER.unpack_from(packet, offset)
        received = self.received
        received.ssrc.append(ssrc)
        received.seq.append(seq)
        received.sent_at.append(sent)
        received.arrived_at.append(arrived)

    def send_rtp(self, ssrc: int, payload_type: int, seq: int, timestamp: int,
                 body: bytes, marker: bool = False) -> None:
        if self.srtp_tx is None:
            return
        header = RTP_HEADER.pack(0x80, (0x80 if marker else 0) | payload_type,
                                 seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
        self._send(self.srtp_tx.protect(header + body))
