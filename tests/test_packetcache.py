"""PacketCache: recent packets of one RTP stream by sequence number, for answering NACKs."""

from __future__ import annotations

import pytest

from confide.sfu.packetcache import PacketCache


def packet(sequence_number: int) -> bytes:
    return b"\x80\x60" + sequence_number.to_bytes(2, "big") + bytes(8) + b"payload"


def test_default_size_is_512() -> None:
    assert PacketCache().size == 512


def test_get_returns_the_packet_put_under_that_sequence_number() -> None:
    cache = PacketCache()
    cache.put(1000, packet(1000))
    assert cache.get(1000) == packet(1000)


def test_get_returns_the_same_object_without_copying() -> None:
    cache = PacketCache()
    stored = packet(7)
    cache.put(7, stored)
    assert cache.get(7) is stored


def test_get_on_empty_cache_returns_none() -> None:
    cache = PacketCache()
    assert cache.get(0) is None
    assert cache.get(511) is None


def test_get_returns_none_for_sequence_number_never_put_in_an_occupied_slot() -> None:
    cache = PacketCache(size=512)
    cache.put(5, packet(5))
    assert cache.get(5 + 512) is None


def test_get_after_wrap_returns_none_for_overwritten_sequence_number() -> None:
    cache = PacketCache(size=512)
    for sequence_number in range(1000, 1000 + 513):
        cache.put(sequence_number, packet(sequence_number))
    assert cache.get(1000) is None
    assert cache.get(1001) == packet(1001)
    assert cache.get(1512) == packet(1512)


def test_keeps_packets_across_sequence_number_wrap_at_65535() -> None:
    cache = PacketCache(size=512)
    sequence_numbers = [(65530 + offset) % 65536 for offset in range(12)]
    for sequence_number in sequence_numbers:
        cache.put(sequence_number, packet(sequence_number))
    assert sequence_numbers[5:7] == [65535, 0]
    for sequence_number in sequence_numbers:
        assert cache.get(sequence_number) == packet(sequence_number)


def test_wrap_at_65535_keeps_exactly_the_last_512_packets() -> None:
    cache = PacketCache(size=512)
    sequence_numbers = [(65400 + offset) % 65536 for offset in range(600)]
    for sequence_number in sequence_numbers:
        cache.put(sequence_number, packet(sequence_number))
    overwritten, kept = sequence_numbers[:-512], sequence_numbers[-512:]
    assert kept[0] == 65488 and kept[-1] == 463
    assert all(cache.get(sequence_number) is None for sequence_number in overwritten)
    assert all(cache.get(sequence_number) == packet(sequence_number) for sequence_number in kept)


def test_clear_forgets_every_packet() -> None:
    cache = PacketCache()
    cache.put(1, packet(1))
    cache.clear()
    assert cache.get(1) is None


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="^packet cache size must be positive$"):
        PacketCache(size=0)
