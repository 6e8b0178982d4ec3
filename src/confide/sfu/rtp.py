"""RTP headers and RTCP packets (RFC 3550, 4585, 5104, REMB): parsing and exact serialization.

RTP payloads are end-to-end-encrypted ciphertext: never decoded, copied only to rewrite headers.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

RTP_VERSION = 2
RTP_FIXED_HEADER_LENGTH = 12

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
RTCP_RTPFB = 205
RTCP_PSFB = 206

RTPFB_NACK = 1
PSFB_PLI = 1
PSFB_FIR = 4
PSFB_AFB = 15

REMB_IDENTIFIER = b"REMB"

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_RTP_FIXED_HEADER = struct.Struct("!BBHII")
_RTCP_HEADER = struct.Struct("!BBH")
_SSRC_PAIR = struct.Struct("!II")
_SENDER_INFO = struct.Struct("!IQIII")
_REPORT_BLOCK = struct.Struct("!IIIIII")
_NACK_ITEM = struct.Struct("!HH")
_FIR_ITEM = struct.Struct("!IB3x")
_REMB_FCI = struct.Struct("!4sI")

_RTCP_HEADER_LENGTH = 4
_FEEDBACK_HEADER_LENGTH = 12  # common header, sender SSRC, media SSRC
_MAX_COUNT = 0x1F
_REMB_MAX_MANTISSA = 0x3FFFF
_REMB_MAX_EXPONENT = 0x3F


def is_rtcp(data: bytes | bytearray) -> bool:
    """Tell RTCP from RTP on a rtcp-mux transport (RFC 5761 section 4)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


# --- RTP ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtpHeader:
    """The fixed RTP header of a packet, validated; the payload stays in the caller's buffer."""

    marker: bool
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    header_length: int
    """Offset where the payload begins: after the fixed header, CSRC list and extension."""
    padding: bool
    padding_length: int = 0
    """Padding octets at the end of the packet, the count octet included; 0 without padding."""

    @classmethod
    def parse(cls, data: bytes | bytearray) -> RtpHeader:
        length = len(data)
        if length < RTP_FIXED_HEADER_LENGTH:
            raise ValueError("RTP packet too short")
        first, second, sequence_number, timestamp, ssrc = _RTP_FIXED_HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise ValueError("RTP packet has invalid version")
        header_length = RTP_FIXED_HEADER_LENGTH + 4 * (first & 0x0F)
        if header_length > length:
            raise ValueError("RTP CSRC list exceeds packet")
        if first & 0x10:
            if header_length + 4 > length:
                raise ValueError("RTP header extension exceeds packet")
            extension_words: int = _U16.unpack_from(data, header_length + 2)[0]
            header_length += 4 + 4 * extension_words
            if header_length > length:
                raise ValueError("RTP header extension exceeds packet")
        padding = bool(first & 0x20)
        padding_length = 0
        if padding:
            if header_length == length:
                raise ValueError("RTP padding length is invalid")
            padding_length = data[-1]
            if padding_length == 0 or header_length + padding_length > length:
                raise ValueError("RTP padding length is invalid")
        return cls(
            marker=bool(second & 0x80),
            payload_type=second & 0x7F,
            sequence_number=sequence_number,
            timestamp=timestamp,
            ssrc=ssrc,
            header_length=header_length,
            padding=padding,
            padding_length=padding_length,
        )


def rtp_ssrc(data: bytes | bytearray) -> int:
    """Read the SSRC of an RTP packet without parsing the rest of it."""
    if len(data) < RTP_FIXED_HEADER_LENGTH:
        raise ValueError("RTP packet too short")
    ssrc: int = _U32.unpack_from(data, 8)[0]
    return ssrc


def rtp_sequence_number(data: bytes | bytearray) -> int:
    """Read the sequence number of an RTP packet without parsing the rest of it."""
    if len(data) < RTP_FIXED_HEADER_LENGTH:
        raise ValueError("RTP packet too short")
    sequence_number: int = _U16.unpack_from(data, 2)[0]
    return sequence_number


def rewrite_payload_type(data: bytes | bytearray, payload_type: int) -> bytes:
    """Return a copy of an RTP packet with another payload type; the marker bit is kept."""
    if not 0 <= payload_type <= 0x7F:
        raise ValueError("RTP payload type out of range")
    if len(data) < RTP_FIXED_HEADER_LENGTH:
        raise ValueError("RTP packet too short")
    # One bytearray copy and one bytes copy measured faster than joining slices.
    packet = bytearray(data)
    packet[1] = (data[1] & 0x80) | payload_type
    return bytes(packet)


def strip_header_extension(data: bytes | bytearray) -> bytes:
    """Return an RTP packet without its header extension (X bit cleared); payload untouched."""
    length = len(data)
    if length < RTP_FIXED_HEADER_LENGTH:
        raise ValueError("RTP packet too short")
    first = data[0]
    if not first & 0x10:
        return bytes(data)
    csrc_end = RTP_FIXED_HEADER_LENGTH + 4 * (first & 0x0F)
    if csrc_end + 4 > length:
        raise ValueError("RTP header extension exceeds packet")
    extension_words: int = _U16.unpack_from(data, csrc_end + 2)[0]
    extension_end = csrc_end + 4 + 4 * extension_words
    if extension_end > length:
        raise ValueError("RTP header extension exceeds packet")
    view = memoryview(data)
    return b"".join((bytes((first & ~0x10,)), view[1:csrc_end], view[extension_end:]))


def header_extension(data: bytes | bytearray, extension_id: int) -> bytes | None:
    """The value of one header extension element (RFC 8285: one-byte or two-byte form),
    or None if the packet has none with that id. Raises ValueError if malformed."""
    length = len(data)
    if length < RTP_FIXED_HEADER_LENGTH:
        raise ValueError("RTP packet too short")
    first = data[0]
    if not first & 0x10:
        return None
    start = RTP_FIXED_HEADER_LENGTH + 4 * (first & 0x0F)
    if start + 4 > length:
        raise ValueError("RTP header extension exceeds packet")
    profile, words = _U16.unpack_from(data, start)[0], _U16.unpack_from(data, start + 2)[0]
    position, end = start + 4, start + 4 + 4 * words
    if end > length:
        raise ValueError("RTP header extension exceeds packet")
    one_byte = profile == 0xBEDE
    if not one_byte and profile & 0xFFF0 != 0x1000:
        return None  # a profile of some other kind: no elements to read
    while position < end:
        if data[position] == 0:  # padding between elements
            position += 1
            continue
        if one_byte:
            element_id, size = data[position] >> 4, (data[position] & 0x0F) + 1
            if element_id == 15:
                return None  # reserved: stop reading (RFC 8285 section 4.2)
            position += 1
        else:
            if position + 2 > end:
                raise ValueError("RTP header extension element exceeds the extension")
            element_id, size = data[position], data[position + 1]
            position += 2
        if position + size > end:
            raise ValueError("RTP header extension element exceeds the extension")
        if element_id == extension_id:
            return bytes(data[position:position + size])
        position += size
    return None


def rtp_packet(
    *, payload_type: int, sequence_number: int, timestamp: int, ssrc: int, marker: bool,
    payload: bytes | bytearray,
) -> bytes:
    """An RTP packet with the fixed header only: no CSRC, no extension, no padding."""
    return _RTP_FIXED_HEADER.pack(
        RTP_VERSION << 6, (0x80 if marker else 0) | payload_type, sequence_number,
        timestamp, ssrc) + bytes(payload)


# --- RTCP common parts -------------------------------------------------------------------------


def _check_rtcp_header(data: bytes) -> tuple[int, int, int]:
    """Validate the common header of exactly one RTCP packet.

    Returns the five-bit count/format field, the packet type and the offset where the
    packet's content ends (before any padding).
    """
    length = len(data)
    if length < _RTCP_HEADER_LENGTH:
        raise ValueError("RTCP packet too short")
    first, packet_type, words = _RTCP_HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise ValueError("RTCP packet has invalid version")
    packet_length = 4 * (words + 1)
    if packet_length > length:
        raise ValueError("RTCP length field exceeds packet")
    if packet_length < length:
        raise ValueError("RTCP packet has trailing data")
    end = packet_length
    if first & 0x20:
        padding_length = data[end - 1]
        if padding_length == 0 or padding_length > end - _RTCP_HEADER_LENGTH:
            raise ValueError("RTCP padding length is invalid")
        end -= padding_length
    return first & _MAX_COUNT, packet_type, end


def _rtcp_packet(count: int, packet_type: int, body: bytes) -> bytes:
    """Prefix a body whose length is a multiple of four with an RTCP common header."""
    return _RTCP_HEADER.pack(0x80 | count, packet_type, len(body) // 4) + body


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """Reception statistics for one source, carried in sender and receiver reports."""

    ssrc: int
    fraction_lost: int
    """Fraction of packets lost since the previous report, in 1/256 units."""
    packets_lost: int
    """Cumulative number of packets lost; signed 24-bit (duplicates can make it negative)."""
    highest_sequence: int
    """Extended highest sequence number received (cycles in the upper 16 bits)."""
    jitter: int
    last_sr: int
    """Middle 32 bits of the NTP timestamp of the last sender report received."""
    delay_since_last_sr: int
    """Delay since that sender report, in 1/65536 seconds."""

    @classmethod
    def parse(cls, data: bytes) -> ReportBlock:
        if len(data) != _REPORT_BLOCK.size:
            raise ValueError("RTCP report block length is invalid")
        return cls._unpack(data, 0)

    @classmethod
    def _unpack(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, loss, highest, jitter, last_sr, delay = _REPORT_BLOCK.unpack_from(data, offset)
        packets_lost = loss & 0xFFFFFF
        if packets_lost & 0x800000:
            packets_lost -= 0x1000000
        return cls(ssrc, loss >> 24, packets_lost, highest, jitter, last_sr, delay)

    def __bytes__(self) -> bytes:
        if not 0 <= self.fraction_lost <= 0xFF:
            raise ValueError("report block fraction_lost out of range")
        if not -0x800000 <= self.packets_lost <= 0x7FFFFF:
            raise ValueError("report block packets_lost out of range")
        return _REPORT_BLOCK.pack(
            self.ssrc,
            (self.fraction_lost << 24) | (self.packets_lost & 0xFFFFFF),
            self.highest_sequence,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        )


def _parse_report_blocks(data: bytes, offset: int, count: int) -> list[ReportBlock]:
    size = _REPORT_BLOCK.size
    return [ReportBlock._unpack(data, offset + size * index) for index in range(count)]


def _pack_report_blocks(reports: list[ReportBlock]) -> bytes:
    if len(reports) > _MAX_COUNT:
        raise ValueError("too many report blocks")
    return b"".join(bytes(report) for report in reports)


# --- RTCP packets ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SenderReport:
    """RTCP SR (RFC 3550 section 6.4.1)."""

    ssrc: int
    ntp_timestamp: int
    """64-bit NTP timestamp: seconds in the upper 32 bits, fraction in the lower."""
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock]

    @classmethod
    def parse(cls, data: bytes) -> SenderReport:
        count, packet_type, end = _check_rtcp_header(data)
        if packet_type != RTCP_SR:
            raise ValueError("RTCP packet is not a sender report")
        return cls._parse_body(data, count, end)

    @classmethod
    def _parse_body(cls, data: bytes, count: int, end: int) -> SenderReport:
        blocks_offset = _RTCP_HEADER_LENGTH + _SENDER_INFO.size
        if end != blocks_offset + _REPORT_BLOCK.size * count:
            raise ValueError("RTCP sender report length is invalid")
        ssrc, ntp, rtp, packets, octets = _SENDER_INFO.unpack_from(data, _RTCP_HEADER_LENGTH)
        reports = _parse_report_blocks(data, blocks_offset, count)
        return cls(ssrc, ntp, rtp, packets, octets, reports)

    def __bytes__(self) -> bytes:
        sender_info = _SENDER_INFO.pack(
            self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        )
        body = sender_info + _pack_report_blocks(self.reports)
        return _rtcp_packet(len(self.reports), RTCP_SR, body)


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RTCP RR (RFC 3550 section 6.4.2)."""

    ssrc: int
    reports: list[ReportBlock]

    @classmethod
    def parse(cls, data: bytes) -> ReceiverReport:
        count, packet_type, end = _check_rtcp_header(data)
        if packet_type != RTCP_RR:
            raise ValueError("RTCP packet is not a receiver report")
        return cls._parse_body(data, count, end)

    @classmethod
    def _parse_body(cls, data: bytes, count: int, end: int) -> ReceiverReport:
        blocks_offset = _RTCP_HEADER_LENGTH + 4
        if end != blocks_offset + _REPORT_BLOCK.size * count:
            raise ValueError("RTCP receiver report length is invalid")
        ssrc: int = _U32.unpack_from(data, _RTCP_HEADER_LENGTH)[0]
        return cls(ssrc, _parse_report_blocks(data, blocks_offset, count))

    def __bytes__(self) -> bytes:
        body = _U32.pack(self.ssrc) + _pack_report_blocks(self.reports)
        return _rtcp_packet(len(self.reports), RTCP_RR, body)


@dataclass(frozen=True, slots=True)
class Bye:
    """RTCP BYE (RFC 3550 section 6.6)."""

    sources: list[int]
    reason: bytes = b""
    """Optional reason for leaving, UTF-8 text kept as bytes; at most 255 octets."""

    @classmethod
    def parse(cls, data: bytes) -> Bye:
        count, packet_type, end = _check_rtcp_header(data)
        if packet_type != RTCP_BYE:
            raise ValueError("RTCP packet is not a BYE")
        return cls._parse_body(data, count, end)

    @classmethod
    def _parse_body(cls, data: bytes, count: int, end: int) -> Bye:
        reason_offset = _RTCP_HEADER_LENGTH + 4 * count
        if reason_offset > end:
            raise ValueError("RTCP BYE source list exceeds packet")
        sources = list(struct.unpack_from(f"!{count}I", data, _RTCP_HEADER_LENGTH))
        reason = b""
        if reason_offset < end:
            reason_end = reason_offset + 1 + data[reason_offset]
            if reason_end > end:
                raise ValueError("RTCP BYE reason exceeds packet")
            reason = bytes(data[reason_offset + 1 : reason_end])
        return cls(sources, reason)

    def __bytes__(self) -> bytes:
        if len(self.sources) > _MAX_COUNT:
            raise ValueError("too many BYE sources")
        if len(self.reason) > 0xFF:
            raise ValueError("BYE reason too long")
        body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        if self.reason:
            reason = bytes((len(self.reason),)) + self.reason
            body += reason + bytes(-len(reason) % 4)
        return _rtcp_packet(len(self.sources), RTCP_BYE, body)


@dataclass(frozen=True, slots=True)
class Nack:
    """Generic NACK, a transport-layer feedback message (RFC 4585 section 6.2.1)."""

    sender_ssrc: int
    media_ssrc: int
    lost: list[int]
    """Lost sequence numbers; each one up to 16 after the previous item's PID shares its BLP."""

    @classmethod
    def parse(cls, data: bytes) -> Nack:
        fmt, packet_type, end = _check_rtcp_header(data)
        if (packet_type, fmt) != (RTCP_RTPFB, RTPFB_NACK):
            raise ValueError("RTCP packet is not a NACK")
        return cls._parse_body(data, fmt, end)

    @classmethod
    def _parse_body(cls, data: bytes, fmt: int, end: int) -> Nack:
        fci_length = end - _FEEDBACK_HEADER_LENGTH
        if fci_length < _NACK_ITEM.size or fci_length % _NACK_ITEM.size:
            raise ValueError("RTCP NACK length is invalid")
        sender_ssrc, media_ssrc = _SSRC_PAIR.unpack_from(data, _RTCP_HEADER_LENGTH)
        lost: list[int] = []
        for pid, blp in _NACK_ITEM.iter_unpack(data[_FEEDBACK_HEADER_LENGTH:end]):
            lost.append(pid)
            for bit in range(16):
                if blp & (1 << bit):
                    lost.append((pid + bit + 1) & 0xFFFF)
        return cls(sender_ssrc, media_ssrc, lost)

    def __bytes__(self) -> bytes:
        if not self.lost:
            raise ValueError("NACK needs at least one lost sequence number")
        items: list[list[int]] = []
        for sequence_number in self.lost:
            if items:
                distance = (sequence_number - items[-1][0]) & 0xFFFF
                if distance == 0:
                    continue
                if distance <= 16:
                    items[-1][1] |= 1 << (distance - 1)
                    continue
            items.append([sequence_number, 0])
        body = _SSRC_PAIR.pack(self.sender_ssrc, self.media_ssrc) + b"".join(
            _NACK_ITEM.pack(pid, blp) for pid, blp in items
        )
        return _rtcp_packet(RTPFB_NACK, RTCP_RTPFB, body)


@dataclass(frozen=True, slots=True)
class Pli:
    """Picture Loss Indication (RFC 4585 section 6.3.1)."""

    sender_ssrc: int
    media_ssrc: int

    @classmethod
    def parse(cls, data: bytes) -> Pli:
        fmt, packet_type, end = _check_rtcp_header(data)
        if (packet_type, fmt) != (RTCP_PSFB, PSFB_PLI):
            raise ValueError("RTCP packet is not a PLI")
        return cls._parse_body(data, fmt, end)

    @classmethod
    def _parse_body(cls, data: bytes, fmt: int, end: int) -> Pli:
        if end != _FEEDBACK_HEADER_LENGTH:
            raise ValueError("RTCP PLI length is invalid")
        sender_ssrc, media_ssrc = _SSRC_PAIR.unpack_from(data, _RTCP_HEADER_LENGTH)
        return cls(sender_ssrc, media_ssrc)

    def __bytes__(self) -> bytes:
        body = _SSRC_PAIR.pack(self.sender_ssrc, self.media_ssrc)
        return _rtcp_packet(PSFB_PLI, RTCP_PSFB, body)


@dataclass(frozen=True, slots=True)
class Fir:
    """Full Intra Request (RFC 5104 section 4.3.1); the media SSRC field is always 0."""

    sender_ssrc: int
    entries: list[tuple[int, int]]
    """(media SSRC, command sequence number) for each source asked for a key frame."""

    @classmethod
    def parse(cls, data: bytes) -> Fir:
        fmt, packet_type, end = _check_rtcp_header(data)
        if (packet_type, fmt) != (RTCP_PSFB, PSFB_FIR):
            raise ValueError("RTCP packet is not a FIR")
        return cls._parse_body(data, fmt, end)

    @classmethod
    def _parse_body(cls, data: bytes, fmt: int, end: int) -> Fir:
        fci_length = end - _FEEDBACK_HEADER_LENGTH
        if fci_length < _FIR_ITEM.size or fci_length % _FIR_ITEM.size:
            raise ValueError("RTCP FIR length is invalid")
        sender_ssrc: int = _U32.unpack_from(data, _RTCP_HEADER_LENGTH)[0]
        entries = [
            (ssrc, sequence_number)
            for ssrc, sequence_number in _FIR_ITEM.iter_unpack(data[_FEEDBACK_HEADER_LENGTH:end])
        ]
        return cls(sender_ssrc, entries)

    def __bytes__(self) -> bytes:
        if not self.entries:
            raise ValueError("FIR needs at least one entry")
        body = _SSRC_PAIR.pack(self.sender_ssrc, 0) + b"".join(
            _FIR_ITEM.pack(ssrc, sequence_number) for ssrc, sequence_number in self.entries
        )
        return _rtcp_packet(PSFB_FIR, RTCP_PSFB, body)


@dataclass(frozen=True, slots=True)
class Remb:
    """Receiver Estimated Maximum Bitrate (draft-alvestrand-rmcat-remb section 2.2)."""

    sender_ssrc: int
    bitrate: int
    """Bits per second; encoded as an 18-bit mantissa and 6-bit exponent, rounding down."""
    ssrcs: list[int]

    @classmethod
    def parse(cls, data: bytes) -> Remb:
        fmt, packet_type, end = _check_rtcp_header(data)
        if (packet_type, fmt) != (RTCP_PSFB, PSFB_AFB):
            raise ValueError("RTCP packet is not application layer feedback")
        return cls._parse_body(data, fmt, end)

    @classmethod
    def _parse_body(cls, data: bytes, fmt: int, end: int) -> Remb:
        ssrcs_offset = _FEEDBACK_HEADER_LENGTH + _REMB_FCI.size
        if end < ssrcs_offset:
            raise ValueError("RTCP REMB length is invalid")
        identifier, word = _REMB_FCI.unpack_from(data, _FEEDBACK_HEADER_LENGTH)
        if identifier != REMB_IDENTIFIER:
            raise ValueError("RTCP application layer feedback is not REMB")
        count = word >> 24
        if end != ssrcs_offset + 4 * count:
            raise ValueError("RTCP REMB length is invalid")
        sender_ssrc: int = _U32.unpack_from(data, _RTCP_HEADER_LENGTH)[0]
        bitrate = (word & _REMB_MAX_MANTISSA) << ((word >> 18) & _REMB_MAX_EXPONENT)
        ssrcs = list(struct.unpack_from(f"!{count}I", data, ssrcs_offset))
        return cls(sender_ssrc, bitrate, ssrcs)

    def __bytes__(self) -> bytes:
        if self.bitrate < 0:
            raise ValueError("REMB bitrate is negative")
        if len(self.ssrcs) > 0xFF:
            raise ValueError("too many REMB SSRCs")
        mantissa = self.bitrate
        exponent = 0
        while mantissa > _REMB_MAX_MANTISSA:
            mantissa >>= 1
            exponent += 1
        if exponent > _REMB_MAX_EXPONENT:
            raise ValueError("REMB bitrate too large")
        word = (len(self.ssrcs) << 24) | (exponent << 18) | mantissa
        body = (
            _SSRC_PAIR.pack(self.sender_ssrc, 0)
            + _REMB_FCI.pack(REMB_IDENTIFIER, word)
            + struct.pack(f"!{len(self.ssrcs)}I", *self.ssrcs)
        )
        return _rtcp_packet(PSFB_AFB, RTCP_PSFB, body)


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    """Any other RTCP packet (SDES, APP, XR, other feedback), kept verbatim for pass-through."""

    packet_type: int
    fmt: int
    """The five-bit count or feedback message type field."""
    body: bytes
    """Everything after the four-octet common header, padding included."""
    padding: bool = False

    @classmethod
    def parse(cls, data: bytes) -> UnknownRtcp:
        fmt, packet_type, _ = _check_rtcp_header(data)
        return cls._parse_body(data, fmt, packet_type)

    @classmethod
    def _parse_body(cls, data: bytes, fmt: int, packet_type: int) -> UnknownRtcp:
        return cls(packet_type, fmt, bytes(data[_RTCP_HEADER_LENGTH:]), bool(data[0] & 0x20))

    def __bytes__(self) -> bytes:
        if len(self.body) % 4:
            raise ValueError("RTCP body length is not a multiple of four")
        first = 0x80 | (0x20 if self.padding else 0) | self.fmt
        return _RTCP_HEADER.pack(first, self.packet_type, len(self.body) // 4) + self.body


RtcpPacket: TypeAlias = SenderReport | ReceiverReport | Bye | Nack | Pli | Fir | Remb | UnknownRtcp


def _parse_rtcp_packet(data: bytes) -> RtcpPacket:
    fmt, packet_type, end = _check_rtcp_header(data)
    if packet_type == RTCP_SR:
        return SenderReport._parse_body(data, fmt, end)
    if packet_type == RTCP_RR:
        return ReceiverReport._parse_body(data, fmt, end)
    if packet_type == RTCP_BYE:
        return Bye._parse_body(data, fmt, end)
    if packet_type == RTCP_RTPFB and fmt == RTPFB_NACK:
        return Nack._parse_body(data, fmt, end)
    if packet_type == RTCP_PSFB:
        if fmt == PSFB_PLI:
            return Pli._parse_body(data, fmt, end)
        if fmt == PSFB_FIR:
            return Fir._parse_body(data, fmt, end)
        remb_identifier = slice(_FEEDBACK_HEADER_LENGTH, _FEEDBACK_HEADER_LENGTH + 4)
        if fmt == PSFB_AFB and data[remb_identifier] == REMB_IDENTIFIER:
            return Remb._parse_body(data, fmt, end)
    return UnknownRtcp._parse_body(data, fmt, packet_type)


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Split a compound RTCP packet (after SRTCP decryption) and parse every part."""
    length = len(data)
    if not length:
        raise ValueError("RTCP compound packet is empty")
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < length:
        if length - offset < _RTCP_HEADER_LENGTH:
            raise ValueError("RTCP packet too short")
        words: int = _U16.unpack_from(data, offset + 2)[0]
        packet_end = offset + 4 * (words + 1)
        if packet_end > length:
            raise ValueError("RTCP length field exceeds packet")
        packets.append(_parse_rtcp_packet(data[offset:packet_end]))
        offset = packet_end
    return packets


def serialize_compound(packets: Iterable[RtcpPacket]) -> bytes:
    """Concatenate RTCP packets into one compound packet."""
    return b"".join(bytes(packet) for packet in packets)
