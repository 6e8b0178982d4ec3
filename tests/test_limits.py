"""Token buckets: bursts allowed, floods refused, refill over time, bounded memory."""

from __future__ import annotations

import pytest

from confide import limits
from confide.limits import RateLimiter, TokenBucket


def test_a_burst_up_to_the_limit_is_allowed_then_refused() -> None:
    bucket = TokenBucket(rate=1.0, burst=3.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]


def test_tokens_come_back_at_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=2.0)
    bucket.take(0.0)
    bucket.take(0.0)
    assert not bucket.take(0.1)
    assert bucket.take(0.6)  # 0.5 s at 2 per second is one token
    assert not bucket.take(0.6)


def test_refill_never_exceeds_the_burst() -> None:
    bucket = TokenBucket(rate=100.0, burst=2.0)
    assert [bucket.take(1000.0) for _ in range(3)] == [True, True, False]


def test_keys_are_limited_separately() -> None:
    limiter = RateLimiter(rate=0.1, burst=1.0)
    assert limiter.allow("198.51.100.1", 0.0)
    assert not limiter.allow("198.51.100.1", 0.0)
    assert limiter.allow("198.51.100.2", 0.0)


def test_a_flood_of_distinct_keys_does_not_grow_without_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limits, "MAX_TRACKED_KEYS", 50)
    limiter = RateLimiter(rate=0.001, burst=1.0)
    for index in range(500):
        limiter.allow(f"key {index}", 0.0)
    assert len(limiter.buckets) <= 50
