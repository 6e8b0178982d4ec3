"""VP8 payload descriptor (RFC 7741 section 4.2): parse every extension, refuse bad input,
rewrite PictureID and TL0PICIDX in place."""

from __future__ import annotations

import itertools
import random

import pytest

from confide.sfu.vp8 import (
    MAX_DESCRIPTOR_LENGTH,
    Vp8Descriptor,
    key_frame_size,
    parse_descriptor,
    rewrite_descriptor,
    write_descriptor,
)


def h(text: str) -> bytes:
    """Hex fixture to bytes; spaces separate fields for the reader."""
    return bytes.fromhex(text)


# The payload after the descriptor, as the E2EE transform leaves it: the clear VP8 payload
# header (RFC 7741 section 4.3), then SFrame ciphertext that no one here may read.
KEY_HEADER = h("5003 00 9d012a 8002 e001")  # P bit (0x01 of the first octet) clear; 10 clear
DELTA_HEADER = h("b104 00")  # P bit set; 3 clear
SEALED = h("ffeeddccbbaa")


# --- Fixtures, written out field by field ------------------------------------------------------

# X=0 R=0 N=0 S=1 PID=0: the shortest descriptor, beginning a key frame.
MINIMAL_KEY = h("10") + KEY_HEADER + SEALED
# X=1 S=1; I=1 L=1 T=1 K=1; M=1 PictureID 0x1234; TL0PICIDX 0x56; TID 2 Y=1 KEYIDX 0x0b.
FULL_DELTA = h("90 f0 9234 56 ab") + DELTA_HEADER + SEALED
# X=1 N=1 S=0 PID=3; I=1; M=0 PictureID 0x45: a later packet of a non-reference frame.
SHORT_PICTURE_ID = h("a3 80 45") + h("c0ffee")


def test_minimal_descriptor_is_one_octet() -> None:
    assert parse_descriptor(MINIMAL_KEY) == Vp8Descriptor(
        start_of_partition=True,
        partition_index=0,
        non_reference=False,
        picture_id=None,
        picture_id_bits=0,
        tl0picidx=None,
        temporal_id=None,
        layer_sync=False,
        key_index=None,
        header_length=1,
        key_frame=True,
    )


def test_every_extension_field_is_read() -> None:
    assert parse_descriptor(FULL_DELTA) == Vp8Descriptor(
        start_of_partition=True,
        partition_index=0,
        non_reference=False,
        picture_id=0x1234,
        picture_id_bits=15,
        tl0picidx=0x56,
        temporal_id=2,
        layer_sync=True,
        key_index=0x0B,
        header_length=6,
        key_frame=False,
    )


def test_seven_bit_picture_id_non_reference_and_partition_index() -> None:
    descriptor = parse_descriptor(SHORT_PICTURE_ID)
    assert (descriptor.picture_id, descriptor.picture_id_bits) == (0x45, 7)
    assert descriptor.non_reference
    assert not descriptor.start_of_partition
    assert descriptor.partition_index == 3
    assert not descriptor.frame_start
    assert descriptor.header_length == 3


def build(
    *,
    picture_id: int | None = None,
    long_picture_id: bool = True,
    tl0picidx: int | None = None,
    temporal: tuple[int, bool] | None = None,
    key_index: int | None = None,
    start: bool = True,
    key_frame: bool = False,
) -> bytes:
    """A descriptor with the given optional fields, then a clear header and ciphertext."""
    extension = 0
    fields = b""
    if picture_id is not None:
        extension |= 0x80
        if long_picture_id:
            fields += bytes((0x80 | picture_id >> 8, picture_id & 0xFF))
        else:
            fields += bytes((picture_id,))
    if tl0picidx is not None:
        extension |= 0x40
        fields += bytes((tl0picidx,))
    if temporal is not None or key_index is not None:
        octet = 0
        if temporal is not None:
            extension |= 0x20
            octet |= temporal[0] << 6 | (0x20 if temporal[1] else 0)
        if key_index is not None:
            extension |= 0x10
            octet |= key_index
        fields += bytes((octet,))
    first = 0x10 if start else 0
    descriptor = bytes((first | 0x80, extension)) + fields if extension else bytes((first,))
    return descriptor + (KEY_HEADER if key_frame else DELTA_HEADER) + SEALED


@pytest.mark.parametrize(
    "has_picture_id, long_picture_id, has_tl0picidx, has_temporal, has_key_index",
    list(itertools.product([False, True], repeat=5)),
)
def test_all_extension_combinations_parse_to_their_fields(
    has_picture_id: bool,
    long_picture_id: bool,
    has_tl0picidx: bool,
    has_temporal: bool,
    has_key_index: bool,
) -> None:
    picture_id = (0x7ABC if long_picture_id else 0x6D) if has_picture_id else None
    payload = build(
        picture_id=picture_id,
        long_picture_id=long_picture_id,
        tl0picidx=0xC3 if has_tl0picidx else None,
        temporal=(1, True) if has_temporal else None,
        key_index=0x15 if has_key_index else None,
    )
    descriptor = parse_descriptor(payload)
    assert descriptor.picture_id == picture_id
    assert descriptor.picture_id_bits == ((15 if long_picture_id else 7) if has_picture_id else 0)
    assert descriptor.tl0picidx == (0xC3 if has_tl0picidx else None)
    assert descriptor.temporal_id == (1 if has_temporal else None)
    assert descriptor.layer_sync == has_temporal
    assert descriptor.key_index == (0x15 if has_key_index else None)
    assert payload[descriptor.header_length :] == DELTA_HEADER + SEALED


def test_key_index_alone_does_not_make_a_temporal_id() -> None:
    # T=0 K=1: the TID and Y bits of the shared octet are set, but mean nothing.
    descriptor = parse_descriptor(h("90 10 ff") + DELTA_HEADER)
    assert descriptor.key_index == 0x1F
    assert descriptor.temporal_id is None
    assert not descriptor.layer_sync


def test_reserved_bits_are_ignored() -> None:
    # R bits of the first octet and RSV bits of the extension octet set.
    descriptor = parse_descriptor(h("d8 8f 12") + DELTA_HEADER)
    assert descriptor.picture_id == 0x12
    assert descriptor.frame_start


# --- Key frames --------------------------------------------------------------------------------


def test_key_frame_is_p_bit_clear_at_frame_start() -> None:
    assert parse_descriptor(build(picture_id=1, key_frame=True)).key_frame
    assert not parse_descriptor(build(picture_id=1, key_frame=False)).key_frame


def test_key_frame_only_at_start_of_partition() -> None:
    assert not parse_descriptor(build(start=False, key_frame=True)).key_frame


def test_key_frame_only_in_partition_zero() -> None:
    # S=1 PID=1: the start of the second partition, whose first octet is not a frame tag.
    assert not parse_descriptor(h("11") + KEY_HEADER).key_frame


def test_key_frame_reads_only_the_first_clear_octet() -> None:
    # The transform may leave anything after the clear header; one octet decides.
    assert parse_descriptor(h("10 00")).key_frame
    assert not parse_descriptor(h("10 01")).key_frame


# --- Malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "VP8 payload is empty"),
        (h("90"), "VP8 descriptor truncated"),  # X set, no extension octet
        (h("90 80"), "VP8 descriptor truncated"),  # I set, no PictureID
        (h("90 80 81"), "VP8 descriptor truncated"),  # M set, one PictureID octet
        (h("90 c0 81 02"), "VP8 descriptor truncated"),  # L set, no TL0PICIDX
        (h("90 20"), "VP8 descriptor truncated"),  # T set, no T/K octet
        (h("90 10"), "VP8 descriptor truncated"),  # K set, no T/K octet
        (h("10"), "VP8 payload has no data after the descriptor"),
        (h("90 f0 9234 56 ab"), "VP8 payload has no data after the descriptor"),
    ],
)
def test_malformed_payload_raises(payload: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        parse_descriptor(payload)


def test_any_input_parses_or_raises_value_error() -> None:
    generator = random.Random(7741)
    for _ in range(5000):
        payload = bytes(generator.randrange(256) for _ in range(generator.randrange(9)))
        try:
            descriptor = parse_descriptor(payload)
        except ValueError:
            continue
        assert 1 <= descriptor.header_length <= MAX_DESCRIPTOR_LENGTH
        assert descriptor.header_length < len(payload)


def test_parse_reads_a_bounded_prefix() -> None:
    # Only the descriptor and one octet after it matter, however long the payload.
    head = h("90 f0 9234 56 ab 00")
    assert parse_descriptor(head + bytes(100_000)) == parse_descriptor(head)


# --- Rewrite -----------------------------------------------------------------------------------


def test_rewrite_replaces_both_fields_and_nothing_else() -> None:
    rewritten = rewrite_descriptor(FULL_DELTA, 0x0102, 0xFE)
    assert rewritten == h("90 f0 8102 fe ab") + DELTA_HEADER + SEALED


def test_rewrite_round_trips_through_parse() -> None:
    for picture_id, tl0picidx in [(0, 0), (1, 255), (0x7FFF, 0x80), (12345, 7)]:
        descriptor = parse_descriptor(rewrite_descriptor(FULL_DELTA, picture_id, tl0picidx))
        assert (descriptor.picture_id, descriptor.tl0picidx) == (picture_id, tl0picidx)
        assert descriptor.header_length == 6
        assert (descriptor.temporal_id, descriptor.layer_sync, descriptor.key_index) == (
            2,
            True,
            0x0B,
        )


def test_rewrite_keeps_a_fifteen_bit_picture_id_modulo_32768() -> None:
    descriptor = parse_descriptor(rewrite_descriptor(FULL_DELTA, 0x8000 + 5, None))
    assert (descriptor.picture_id, descriptor.picture_id_bits) == (5, 15)


def test_rewrite_keeps_a_seven_bit_picture_id_seven_bits_modulo_128() -> None:
    rewritten = rewrite_descriptor(SHORT_PICTURE_ID, 200, None)
    assert len(rewritten) == len(SHORT_PICTURE_ID)
    descriptor = parse_descriptor(rewritten)
    assert (descriptor.picture_id, descriptor.picture_id_bits) == (200 % 128, 7)
    assert rewritten[3:] == SHORT_PICTURE_ID[3:]


def test_rewrite_tl0picidx_modulo_256() -> None:
    payload = build(tl0picidx=3, temporal=(0, False))
    assert parse_descriptor(rewrite_descriptor(payload, None, 256 + 9)).tl0picidx == 9


def test_rewrite_with_none_leaves_fields_as_they_were() -> None:
    assert rewrite_descriptor(FULL_DELTA, None, None) == FULL_DELTA
    assert rewrite_descriptor(FULL_DELTA, None, 1) == h("90 f0 9234 01 ab") + DELTA_HEADER + SEALED
    assert rewrite_descriptor(FULL_DELTA, 1, None) == h("90 f0 8001 56 ab") + DELTA_HEADER + SEALED


def test_rewrite_finds_tl0picidx_after_a_short_picture_id_and_without_one() -> None:
    short = build(picture_id=0x11, long_picture_id=False, tl0picidx=0x22)
    assert parse_descriptor(rewrite_descriptor(short, None, 0x33)).tl0picidx == 0x33
    alone = build(tl0picidx=0x22)
    assert parse_descriptor(rewrite_descriptor(alone, None, 0x44)).tl0picidx == 0x44


def test_rewrite_of_an_absent_field_raises() -> None:
    with pytest.raises(ValueError, match="^VP8 descriptor has no PictureID to rewrite$"):
        rewrite_descriptor(MINIMAL_KEY, 1, None)
    with pytest.raises(ValueError, match="^VP8 descriptor has no TL0PICIDX to rewrite$"):
        rewrite_descriptor(SHORT_PICTURE_ID, None, 1)


def test_rewrite_of_malformed_payload_raises() -> None:
    with pytest.raises(ValueError):
        rewrite_descriptor(h("90 80"), 1, None)


def test_write_descriptor_rewrites_in_place() -> None:
    buffer = bytearray(FULL_DELTA)
    write_descriptor(buffer, parse_descriptor(buffer), 0x7FFF, 0)
    assert bytes(buffer) == h("90 f0 ffff 00 ab") + DELTA_HEADER + SEALED


def test_a_key_frame_gives_its_size_from_the_clear_octets() -> None:
    payload = build(picture_id=5, key_frame=True)
    assert key_frame_size(payload, parse_descriptor(payload)) == (640, 480)
    # The two top bits of each are the scaling mode, not the size.
    scaled = payload.replace(bytes.fromhex("8002e001"), bytes.fromhex("80c2e041"))
    assert key_frame_size(scaled, parse_descriptor(scaled)) == (640, 480)


def test_a_delta_frame_or_a_key_frame_without_a_start_code_gives_no_size() -> None:
    delta = build(picture_id=5)
    assert key_frame_size(delta, parse_descriptor(delta)) is None
    broken = build(picture_id=5, key_frame=True).replace(bytes.fromhex("9d012a"), b"\0\0\0")
    assert key_frame_size(broken, parse_descriptor(broken)) is None
