"""Recent RTP packets of one stream, kept by sequence number so NACKs can be answered."""

from __future__ import annotations

DEFAULT_PACKET_CACHE_SIZE = 512


class PacketCache:
    """A fixed-size ring of the latest packets of one RTP stream, indexed by sequence number.

    Slot ``sequence_number % size`` holds the newest packet put with a sequence number that
    maps there; a size that divides 65536 (a power of two) keeps the ring contiguous across
    the sequence number wrap.
    """

    __slots__ = ("_packets", "_sequence_numbers", "_size")

    def __init__(self, size: int = DEFAULT_PACKET_CACHE_SIZE) -> None:
        if size <= 0:
            raise ValueError("packet cache size must be positive")
        self._size = size
        self._packets: list[bytes | None] = [None] * size
        # -1 never equals a 16-bit sequence number, so empty slots never match.
        self._sequence_numbers: list[int] = [-1] * size

    @property
    def size(self) -> int:
        return self._size

    def put(self, sequence_number: int, packet: bytes) -> None:
        """Remember a packet (0 <= sequence_number <= 65535), replacing whatever held its slot."""
        index = sequence_number % self._size
        self._packets[index] = packet
        self._sequence_numbers[index] = sequence_number

    def get(self, sequence_number: int) -> bytes | None:
        """Return the packet with exactly this sequence number, or None if it is gone."""
        index = sequence_number % self._size
        if self._sequence_numbers[index] != sequence_number:
            return None
        return self._packets[index]

    def clear(self) -> None:
        """Forget every packet, e.g. when the stream restarts with a new sequence space."""
        self._packets = [None] * self._size
        self._sequence_numbers = [-1] * self._size
