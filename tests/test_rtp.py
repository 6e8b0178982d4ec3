"""RTP header and RTCP packets: exact wire bytes, malformed input, fuzzing."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from confide.sfu.rtp import (
    Bye,
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtcpPacket,
    RtpHeader,
    SenderReport,
    UnknownRtcp,
    is_rtcp,
    parse_compound,
    rewrite_payload_type,
    rtp_sequence_number,
    rtp_ssrc,
    serialize_compound,
    strip_header_extension,
)


def h(text: str) -> bytes:
    """Hex fixture to bytes; spaces separate fields for the reader."""
    return bytes.fromhex(text)


# --- Fixtures, written out field by field -----------------------------------------------------

# V=2, PT=96, seq 0x1234, timestamp 90000, SSRC 0x11223344, then a 4-byte payload.
RTP_PLAIN = h("80 60 1234 00015f90 11223344 deadbeef")
RTP_MARKER = h("80 e0 1234 00015f90 11223344 deadbeef")
RTP_TWO_CSRCS = h("82 60 1234 00015f90 11223344 aaaaaaaa bbbbbbbb deadbeef")
# One-byte header extension (0xBEDE), one word long.
RTP_EXTENSION = h("90 60 1234 00015f90 11223344 bede0001 10ff0000 deadbeef")
RTP_CSRC_AND_EXTENSION = h("91 60 1234 00015f90 11223344 aaaaaaaa bede0001 10ff0000 deadbeef")
# Three octets of padding; the last one counts them.
RTP_PADDED = h("a0 60 1234 00015f90 11223344 deadbeef 000003")

REPORT_BLOCK_BYTES = h("55667788 10 fffffd 00010064 00000020 a1b2c3d4 00010000")
REPORT_BLOCK = ReportBlock(
    ssrc=0x55667788,
    fraction_lost=0x10,
    packets_lost=-3,
    highest_sequence=0x00010064,
    jitter=0x20,
    last_sr=0xA1B2C3D4,
    delay_since_last_sr=0x00010000,
)

SR_BYTES = h("81c8000c 11223344 e8f0a1b2c3d4e5f6 00015f90 00000064 0000c350") + REPORT_BLOCK_BYTES
SR = SenderReport(
    ssrc=0x11223344,
    ntp_timestamp=0xE8F0A1B2C3D4E5F6,
    rtp_timestamp=90000,
    packet_count=100,
    octet_count=50000,
    reports=[REPORT_BLOCK],
)
# SDES with one chunk: CNAME "confide-test", end item, one octet of padding to the word.
SDES_BYTES = h("81ca0005 11223344 010c") + b"confide-test" + h("0000")

PLI_BYTES = h("81ce0002 11223344 55667788")
FIR_BYTES = h("84ce0004 11223344 00000000 55667788 2a000000")
# 1_000_000 bit/s = 250000 (0x3D090) << 2: exponent 2, mantissa 0x3D090.
REMB_BYTES = h("8fce0005 11223344 00000000 52454d42 01 0bd090 55667788")
# [100, 101, 105, 117, 200]: PID 100 with BLP bits 0 (101) and 4 (105); 117 is 17 after 100.
NACK_BYTES = h("81cd0005 11223344 55667788 0064 0011 0075 0000 00c8 0000")


# --- is_rtcp ------------------------------------------------------------------------------------


def test_is_rtcp_for_second_byte_192_to_223() -> None:
    # RFC 5761 section 4: RTP payload types 64-95 are not used, so these values mean RTCP.
    assert is_rtcp(h("80c0"))
    assert is_rtcp(h("80df"))
    assert is_rtcp(SR_BYTES)


def test_is_rtcp_false_for_rtp_with_or_without_marker() -> None:
    assert not is_rtcp(RTP_PLAIN)
    assert not is_rtcp(RTP_MARKER)
    assert not is_rtcp(h("80bf"))
    assert not is_rtcp(h("80e0"))


def test_is_rtcp_false_for_one_byte() -> None:
    assert not is_rtcp(b"")
    assert not is_rtcp(h("80"))


# --- RtpHeader ----------------------------------------------------------------------------------


def test_rtp_header_fields() -> None:
    assert RtpHeader.parse(RTP_PLAIN) == RtpHeader(
        marker=False,
        payload_type=96,
        sequence_number=0x1234,
        timestamp=90000,
        ssrc=0x11223344,
        header_length=12,
        padding=False,
    )


def test_rtp_header_marker_bit() -> None:
    header = RtpHeader.parse(RTP_MARKER)
    assert header.marker
    assert header.payload_type == 96


def test_rtp_header_length_skips_csrcs() -> None:
    assert RtpHeader.parse(RTP_TWO_CSRCS).header_length == 20


def test_rtp_header_length_skips_extension() -> None:
    assert RtpHeader.parse(RTP_EXTENSION).header_length == 20


def test_rtp_header_length_skips_csrcs_and_extension() -> None:
    data = RTP_CSRC_AND_EXTENSION
    header_length = RtpHeader.parse(data).header_length
    assert header_length == 24
    assert data[header_length:] == h("deadbeef")


def test_rtp_header_padding() -> None:
    header = RtpHeader.parse(RTP_PADDED)
    assert header.padding
    assert header.padding_length == 3


def test_rtp_header_accepts_empty_payload() -> None:
    assert RtpHeader.parse(RTP_PLAIN[:12]).header_length == 12


def test_rtp_header_parses_bytearray() -> None:
    assert RtpHeader.parse(bytearray(RTP_PLAIN)).ssrc == 0x11223344


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "RTP packet too short"),
        (RTP_PLAIN[:11], "RTP packet too short"),
        (h("40") + RTP_PLAIN[1:], "RTP packet has invalid version"),
        (h("c0") + RTP_PLAIN[1:], "RTP packet has invalid version"),
        (h("83") + RTP_TWO_CSRCS[1:20], "RTP CSRC list exceeds packet"),
        (h("8f") + RTP_PLAIN[1:], "RTP CSRC list exceeds packet"),
        (RTP_EXTENSION[:15], "RTP header extension exceeds packet"),
        (
            h("90 60 1234 00015f90 11223344 bede0002 10ff0000"),
            "RTP header extension exceeds packet",
        ),
        (h("a0") + RTP_PLAIN[1:12], "RTP padding length is invalid"),
        (h("a0 60 1234 00015f90 11223344 deadbe00"), "RTP padding length is invalid"),
        (h("a0 60 1234 00015f90 11223344 dead0005"), "RTP padding length is invalid"),
    ],
    ids=[
        "empty",
        "truncated-fixed-header",
        "version-1",
        "version-3",
        "csrc-count-beyond-end",
        "csrc-count-15",
        "extension-header-beyond-end",
        "extension-length-beyond-end",
        "padding-without-count-octet",
        "padding-count-zero",
        "padding-beyond-payload",
    ],
)
def test_rtp_header_rejects_malformed(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        RtpHeader.parse(data)


# --- Hot-path helpers ---------------------------------------------------------------------------


def test_rtp_ssrc_reads_bytes_8_to_12() -> None:
    assert rtp_ssrc(RTP_PLAIN) == 0x11223344


def test_rtp_sequence_number_reads_bytes_2_to_4() -> None:
    assert rtp_sequence_number(RTP_PLAIN) == 0x1234


@pytest.mark.parametrize("helper", [rtp_ssrc, rtp_sequence_number, strip_header_extension])
def test_helpers_reject_short_packet(helper: Callable[[bytes], object]) -> None:
    with pytest.raises(ValueError, match="^RTP packet too short$"):
        helper(RTP_PLAIN[:11])


def test_rewrite_payload_type_changes_only_payload_type() -> None:
    assert rewrite_payload_type(RTP_PLAIN, 111) == h("80 6f 1234 00015f90 11223344 deadbeef")


def test_rewrite_payload_type_keeps_marker_bit() -> None:
    assert rewrite_payload_type(RTP_MARKER, 111) == h("80 ef 1234 00015f90 11223344 deadbeef")


def test_rewrite_payload_type_returns_bytes_from_bytearray() -> None:
    rewritten = rewrite_payload_type(bytearray(RTP_PLAIN), 97)
    assert type(rewritten) is bytes
    assert rewritten[1] == 97


def test_rewrite_payload_type_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="^RTP payload type out of range$"):
        rewrite_payload_type(RTP_PLAIN, 128)


def test_strip_header_extension_removes_block_and_x_bit() -> None:
    assert strip_header_extension(RTP_EXTENSION) == RTP_PLAIN


def test_strip_header_extension_keeps_csrcs() -> None:
    expected = h("81 60 1234 00015f90 11223344 aaaaaaaa deadbeef")
    assert strip_header_extension(RTP_CSRC_AND_EXTENSION) == expected


def test_strip_header_extension_without_extension_is_identity() -> None:
    assert strip_header_extension(RTP_TWO_CSRCS) == RTP_TWO_CSRCS


def test_strip_header_extension_rejects_extension_beyond_end() -> None:
    with pytest.raises(ValueError, match="^RTP header extension exceeds packet$"):
        strip_header_extension(RTP_EXTENSION[:19])


# --- RTCP round trips against fixtures ----------------------------------------------------------


def test_report_block_round_trip() -> None:
    assert ReportBlock.parse(REPORT_BLOCK_BYTES) == REPORT_BLOCK
    assert bytes(REPORT_BLOCK) == REPORT_BLOCK_BYTES


def test_report_block_packets_lost_is_signed_24_bit() -> None:
    block = ReportBlock.parse(h("00000000 00800000 00000000 00000000 00000000 00000000"))
    assert block.packets_lost == -0x800000


def test_report_block_rejects_packets_lost_beyond_24_bits() -> None:
    with pytest.raises(ValueError, match="^report block packets_lost out of range$"):
        bytes(ReportBlock(1, 0, 0x800000, 0, 0, 0, 0))


def test_sender_report_round_trip() -> None:
    assert SenderReport.parse(SR_BYTES) == SR
    assert bytes(SR) == SR_BYTES


def test_receiver_report_round_trip() -> None:
    data = h("81c90007 11223344") + REPORT_BLOCK_BYTES
    report = ReceiverReport(ssrc=0x11223344, reports=[REPORT_BLOCK])
    assert ReceiverReport.parse(data) == report
    assert bytes(report) == data


def test_receiver_report_without_blocks_round_trip() -> None:
    data = h("80c90001 11223344")
    assert ReceiverReport.parse(data) == ReceiverReport(ssrc=0x11223344, reports=[])
    assert bytes(ReceiverReport(0x11223344, [])) == data


def test_bye_round_trip() -> None:
    data = h("82cb0002 11223344 55667788")
    assert Bye.parse(data) == Bye(sources=[0x11223344, 0x55667788])
    assert bytes(Bye([0x11223344, 0x55667788])) == data


def test_bye_with_reason_is_padded_to_a_word() -> None:
    data = h("81cb0003 11223344 04") + b"ciao" + h("000000")
    assert Bye.parse(data) == Bye(sources=[0x11223344], reason=b"ciao")
    assert bytes(Bye([0x11223344], b"ciao")) == data


def test_nack_packs_lost_sequence_numbers_into_pid_and_blp() -> None:
    nack = Nack(sender_ssrc=0x11223344, media_ssrc=0x55667788, lost=[100, 101, 105, 117, 200])
    assert bytes(nack) == NACK_BYTES


def test_nack_parse_expands_pid_and_blp() -> None:
    assert Nack.parse(NACK_BYTES).lost == [100, 101, 105, 117, 200]


def test_nack_blp_all_bits_means_seventeen_packets() -> None:
    nack = Nack.parse(h("81cd0003 11223344 55667788 0064 ffff"))
    assert nack.lost == list(range(100, 117))


def test_nack_packs_across_sequence_number_wrap() -> None:
    nack = Nack(0x11223344, 0x55667788, lost=[65534, 65535, 0, 1])
    data = h("81cd0003 11223344 55667788 fffe 0007")
    assert bytes(nack) == data
    assert Nack.parse(data).lost == [65534, 65535, 0, 1]


def test_nack_without_lost_packets_cannot_be_serialized() -> None:
    with pytest.raises(ValueError, match="^NACK needs at least one lost sequence number$"):
        bytes(Nack(1, 2, []))


def test_pli_round_trip() -> None:
    pli = Pli(sender_ssrc=0x11223344, media_ssrc=0x55667788)
    assert Pli.parse(PLI_BYTES) == pli
    assert bytes(pli) == PLI_BYTES


def test_fir_round_trip() -> None:
    fir = Fir(sender_ssrc=0x11223344, entries=[(0x55667788, 42)])
    assert Fir.parse(FIR_BYTES) == fir
    assert bytes(fir) == FIR_BYTES


def test_remb_round_trip() -> None:
    remb = Remb(sender_ssrc=0x11223344, bitrate=1_000_000, ssrcs=[0x55667788])
    assert Remb.parse(REMB_BYTES) == remb
    assert bytes(remb) == REMB_BYTES


def test_remb_encoding_rounds_bitrate_down() -> None:
    # 1_000_003 >> 2 = 250000 remainder 3: the remainder is dropped.
    assert bytes(Remb(0x11223344, 1_000_003, [0x55667788])) == REMB_BYTES


def test_remb_small_bitrate_has_exponent_zero() -> None:
    data = bytes(Remb(1, 0x3FFFF, []))
    assert data[16:20] == h("00 03ffff")
    assert Remb.parse(data).bitrate == 0x3FFFF


def test_remb_rejects_bitrate_beyond_exponent_63() -> None:
    with pytest.raises(ValueError, match="^REMB bitrate too large$"):
        bytes(Remb(1, 1 << 81, []))


def test_unknown_rtcp_passes_sdes_through_exactly() -> None:
    sdes = UnknownRtcp.parse(SDES_BYTES)
    assert sdes == UnknownRtcp(packet_type=202, fmt=1, body=SDES_BYTES[4:])
    assert bytes(sdes) == SDES_BYTES


def test_unknown_rtcp_keeps_padding() -> None:
    data = h("a1cc0003 11223344 6e616d65 00000004")
    app = UnknownRtcp.parse(data)
    assert app.padding
    assert bytes(app) == data


# --- Compound packets ---------------------------------------------------------------------------


def test_parse_compound_splits_sender_report_and_sdes() -> None:
    packets = parse_compound(SR_BYTES + SDES_BYTES)
    assert packets == [SR, UnknownRtcp(packet_type=202, fmt=1, body=SDES_BYTES[4:])]


def test_serialize_compound_reproduces_sender_report_and_sdes() -> None:
    data = SR_BYTES + SDES_BYTES
    assert serialize_compound(parse_compound(data)) == data


def test_parse_compound_recognises_each_feedback_type() -> None:
    packets = parse_compound(NACK_BYTES + PLI_BYTES + FIR_BYTES + REMB_BYTES)
    assert [type(packet) for packet in packets] == [Nack, Pli, Fir, Remb]


def test_parse_compound_leaves_other_feedback_unknown() -> None:
    # Transport-wide congestion control (RTPFB FMT 15) and an AFB that is not REMB.
    twcc = h("8fcd0003 11223344 55667788 00010002")
    other_afb = h("8fce0003 11223344 00000000 474f4f47")
    packets = parse_compound(twcc + other_afb)
    assert packets == [
        UnknownRtcp(packet_type=205, fmt=15, body=twcc[4:]),
        UnknownRtcp(packet_type=206, fmt=15, body=other_afb[4:]),
    ]


def test_parse_compound_reduced_size_single_feedback() -> None:
    # RFC 5506 allows a feedback packet alone, without a report first.
    assert parse_compound(PLI_BYTES) == [Pli(0x11223344, 0x55667788)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "RTCP compound packet is empty"),
        (h("81c8"), "RTCP packet too short"),
        (SR_BYTES + h("81ca00"), "RTCP packet too short"),
        (h("41ce0002 11223344 55667788"), "RTCP packet has invalid version"),
        (SR_BYTES + h("01ca0000"), "RTCP packet has invalid version"),
        (h("81ce0003 11223344 55667788"), "RTCP length field exceeds packet"),
        (SR_BYTES[:-4], "RTCP length field exceeds packet"),
        (h("a1ce0002 11223344 55667700"), "RTCP padding length is invalid"),
        (h("a1ce0002 11223344 556677ff"), "RTCP padding length is invalid"),
        (h("81c80006") + SR_BYTES[4:28], "RTCP sender report length is invalid"),
        (h("82c90007 11223344") + REPORT_BLOCK_BYTES, "RTCP receiver report length is invalid"),
        (h("83cb0002 11223344 55667788"), "RTCP BYE source list exceeds packet"),
        (h("81cb0002 11223344 08000000"), "RTCP BYE reason exceeds packet"),
        (h("81cd0002 11223344 55667788"), "RTCP NACK length is invalid"),
        (h("81ce0003 11223344 55667788 00000000"), "RTCP PLI length is invalid"),
        (h("84ce0003 11223344 00000000 55667788"), "RTCP FIR length is invalid"),
        (
            h("8fce0005 11223344 00000000 52454d42 02 0bd090 55667788"),
            "RTCP REMB length is invalid",
        ),
        (h("8fce0003 11223344 00000000 52454d42"), "RTCP REMB length is invalid"),
    ],
    ids=[
        "empty",
        "truncated-header",
        "truncated-second-header",
        "bad-version",
        "bad-version-in-second-packet",
        "length-beyond-end",
        "truncated-last-packet",
        "padding-count-zero",
        "padding-beyond-packet",
        "sr-without-its-report-block",
        "rr-count-beyond-blocks",
        "bye-count-beyond-end",
        "bye-reason-beyond-end",
        "nack-without-fci",
        "pli-with-fci",
        "fir-half-entry",
        "remb-ssrc-count-beyond-end",
        "remb-without-bitrate",
    ],
)
def test_parse_compound_rejects_malformed(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        parse_compound(data)


def test_single_packet_parse_rejects_trailing_data() -> None:
    with pytest.raises(ValueError, match="^RTCP packet has trailing data$"):
        Pli.parse(PLI_BYTES + PLI_BYTES)


def test_single_packet_parse_rejects_other_type() -> None:
    with pytest.raises(ValueError, match="^RTCP packet is not a PLI$"):
        Pli.parse(FIR_BYTES)


def test_remb_parse_rejects_other_application_feedback() -> None:
    with pytest.raises(ValueError, match="^RTCP application layer feedback is not REMB$"):
        Remb.parse(h("8fce0004 11223344 00000000 474f4f47 00000000"))


# --- Fuzzing: any input parses or raises ValueError, nothing else ------------------------------

VALID_RTP = [
    RTP_PLAIN,
    RTP_MARKER,
    RTP_TWO_CSRCS,
    RTP_EXTENSION,
    RTP_CSRC_AND_EXTENSION,
    RTP_PADDED,
]
VALID_RTCP = [
    SR_BYTES + SDES_BYTES,
    NACK_BYTES + PLI_BYTES,
    FIR_BYTES + REMB_BYTES,
    h("82cb0003 11223344 55667788 03627965"),
    h("a1cc0003 11223344 6e616d65 00000004"),
]


def fuzz_inputs(seeds: list[bytes], count: int) -> list[bytes]:
    """Random byte strings and mutations (flips, truncations, extensions) of valid packets."""
    rng = random.Random(1)
    inputs = []
    for _ in range(count):
        choice = rng.random()
        if choice < 0.3:
            inputs.append(rng.randbytes(rng.randrange(0, 64)))
            continue
        data = bytearray(rng.choice(seeds))
        if choice < 0.5:
            # Keep a plausible first byte so parsing goes past the version check.
            data = bytearray([0x80 | rng.randrange(0x40)]) + rng.randbytes(rng.randrange(3, 60))
        for _ in range(rng.randrange(1, 5)):
            if not data:
                break
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            del data[rng.randrange(len(data) + 1) :]
        if rng.random() < 0.2:
            data += rng.randbytes(rng.randrange(1, 9))
        inputs.append(bytes(data))
    return inputs


def test_fuzz_rtp_header_parse_raises_only_value_error() -> None:
    parsed = 0
    for data in fuzz_inputs(VALID_RTP, 5000):
        try:
            header = RtpHeader.parse(data)
        except ValueError:
            continue
        parsed += 1
        assert header.header_length + header.padding_length <= len(data)
    assert parsed > 0


def test_fuzz_parse_compound_raises_only_value_error() -> None:
    parsed = 0
    for data in fuzz_inputs(VALID_RTCP, 5000):
        try:
            packets = parse_compound(data)
        except ValueError:
            continue
        parsed += 1
        # Whatever parses serializes, and serializing is stable after one normalization.
        normalized = serialize_compound(packets)
        reparsed: list[RtcpPacket] = parse_compound(normalized)
        assert serialize_compound(reparsed) == normalized
    assert parsed > 0
