"""The VP8 payload descriptor (RFC 7741 section 4.2): parse, and rewrite its picture indices.

Chrome's packetiser writes the descriptor in the clear in front of each SFrame-encrypted
payload, and the E2EE transform leaves the first bytes of each frame clear (10 on a key
frame, 3 on a delta frame), so the SFU can read layers and key frames without the keys.
Nothing after the first payload-header byte is read: it need not be a valid VP8 frame.
"""

from __future__ import annotations

from dataclasses import dataclass

# First octet: |X|R|N|S|R| PID |
_X = 0x80
_N = 0x20
_S = 0x10
_PID = 0x07
# Extension octet: |I|L|T|K| RSV |
_I = 0x80
_L = 0x40
_T = 0x20
_K = 0x10
# PictureID octet: |M| PictureID |; M set means a 15-bit PictureID over two octets.
_M = 0x80
# T/K octet: |TID|Y| KEYIDX |
_Y = 0x20
_KEYIDX = 0x1F
# VP8 payload header (RFC 7741 section 4.3), first octet: |Size0|H| VER |P|
_P = 0x01

MAX_DESCRIPTOR_LENGTH = 6
"""Required octet, extension octet, two PictureID octets, TL0PICIDX, T/K."""


@dataclass(frozen=True, slots=True)
class Vp8Descriptor:
    """The VP8 payload descriptor at the start of one RTP payload, validated."""

    start_of_partition: bool
    """S: the packet begins a VP8 partition."""
    partition_index: int
    """PID, 0 to 7; a frame begins with S set and PID 0."""
    non_reference: bool
    """N: no other frame references this one, so it can be dropped alone."""
    picture_id: int | None
    picture_id_bits: int
    """7 or 15 when a PictureID is present (its width on the wire), else 0."""
    tl0picidx: int | None
    """Running index of base-layer (TID 0) frames, modulo 256."""
    temporal_id: int | None
    """TID, 0 to 3, when the T bit is set."""
    layer_sync: bool
    """Y: the frame references only base-layer frames, so a receiver can switch up here.
    False when the T bit is clear."""
    key_index: int | None
    """KEYIDX, 0 to 31, when the K bit is set."""
    header_length: int
    """Octets of descriptor; the VP8 payload (here: clear header, then SFrame) follows."""
    key_frame: bool
    """The packet begins a key frame: S set, PID 0, and the payload header's P bit clear.
    Always False on other packets, even those of a key frame."""

    @property
    def frame_start(self) -> bool:
        """The packet carries the first octets of a frame."""
        return self.start_of_partition and self.partition_index == 0


def parse_descriptor(payload: bytes | bytearray) -> Vp8Descriptor:
    """Parse the descriptor of one VP8 RTP payload (RTP padding already removed).

    Reads at most seven octets whatever the input. Raises ValueError when the payload is
    empty, the descriptor is cut short, or no payload octet follows it.
    """
    length = len(payload)
    if not length:
        raise ValueError("VP8 payload is empty")
    first = payload[0]
    offset = 1
    picture_id: int | None = None
    picture_id_bits = 0
    tl0picidx: int | None = None
    temporal_id: int | None = None
    layer_sync = False
    key_index: int | None = None
    if first & _X:
        if length < 2:
            raise ValueError("VP8 descriptor truncated")
        extension = payload[1]
        offset = 2
        if extension & _I:
            if offset >= length:
                raise ValueError("VP8 descriptor truncated")
            high = payload[offset]
            if high & _M:
                if offset + 2 > length:
                    raise ValueError("VP8 descriptor truncated")
                picture_id = ((high & 0x7F) << 8) | payload[offset + 1]
                picture_id_bits = 15
                offset += 2
            else:
                picture_id = high
                picture_id_bits = 7
                offset += 1
        if extension & _L:
            if offset >= length:
                raise ValueError("VP8 descriptor truncated")
            tl0picidx = payload[offset]
            offset += 1
        if extension & (_T | _K):
            # One octet carries both; each half means something only when its bit is set.
            if offset >= length:
                raise ValueError("VP8 descriptor truncated")
            octet = payload[offset]
            offset += 1
            if extension & _T:
                temporal_id = octet >> 6
                layer_sync = bool(octet & _Y)
            if extension & _K:
                key_index = octet & _KEYIDX
    if offset >= length:
        raise ValueError("VP8 payload has no data after the descriptor")
    start_of_partition = bool(first & _S)
    partition_index = first & _PID
    key_frame = start_of_partition and partition_index == 0 and not payload[offset] & _P
    return Vp8Descriptor(
        start_of_partition=start_of_partition,
        partition_index=partition_index,
        non_reference=bool(first & _N),
        picture_id=picture_id,
        picture_id_bits=picture_id_bits,
        tl0picidx=tl0picidx,
        temporal_id=temporal_id,
        layer_sync=layer_sync,
        key_index=key_index,
        header_length=offset,
        key_frame=key_frame,
    )


KEY_FRAME_START_CODE = b"\x9d\x01\x2a"


def key_frame_size(payload: bytes | bytearray, descriptor: Vp8Descriptor) -> tuple[int, int] | None:
    """Width and height of a key frame, from its first ten octets, which E2EE leaves
    clear (RFC 6386 section 9.1: the frame tag, the start code, then 14-bit width and
    height, little-endian); None for a packet that does not begin a key frame."""
    if not descriptor.key_frame:
        return None
    header = payload[descriptor.header_length:descriptor.header_length + 10]
    if len(header) < 10 or header[3:6] != KEY_FRAME_START_CODE:
        return None
    width = int.from_bytes(header[6:8], "little") & 0x3FFF
    height = int.from_bytes(header[8:10], "little") & 0x3FFF
    return width, height


def write_descriptor(
    buffer: bytearray,
    descriptor: Vp8Descriptor,
    picture_id: int | None,
    tl0picidx: int | None,
) -> None:
    """Overwrite PictureID and TL0PICIDX in place; None leaves a field as it is.

    `descriptor` must be what `parse_descriptor` returned for this buffer: the offsets come
    from it, unchecked. This is the variant for a caller that has parsed already (the
    forwarder), and saves a second parse. The descriptor keeps its length: a PictureID is
    written modulo 2**7 or 2**15, in the width it had, and TL0PICIDX modulo 256.
    """
    offset = 2  # Both fields follow the required and extension octets.
    if descriptor.picture_id is not None:
        if picture_id is not None:
            if descriptor.picture_id_bits == 15:
                buffer[offset] = _M | ((picture_id >> 8) & 0x7F)
                buffer[offset + 1] = picture_id & 0xFF
            else:
                buffer[offset] = picture_id & 0x7F
        offset += descriptor.picture_id_bits // 8 + 1
    elif picture_id is not None:
        raise ValueError("VP8 descriptor has no PictureID to rewrite")
    if descriptor.tl0picidx is not None:
        if tl0picidx is not None:
            buffer[offset] = tl0picidx & 0xFF
    elif tl0picidx is not None:
        raise ValueError("VP8 descriptor has no TL0PICIDX to rewrite")


def rewrite_descriptor(
    payload: bytes | bytearray, picture_id: int | None, tl0picidx: int | None
) -> bytes:
    """Return a copy of a VP8 payload with PictureID and TL0PICIDX replaced.

    None leaves a field as it is; a value for a field the descriptor lacks raises
    ValueError, as does a malformed payload. See `write_descriptor` for the widths.
    """
    descriptor = parse_descriptor(payload)
    buffer = bytearray(payload)
    write_descriptor(buffer, descriptor, picture_id, tl0picidx)
    return bytes(buffer)
