"""Rate limits that protect meetings and the media path from floods: token buckets,
time passed in.

A bucket holds up to `burst` tokens and refills at `rate` per second; each event
takes one. `RateLimiter` keeps one bucket per key (an address, a meeting id) and
forgets full buckets so that memory stays bounded under a flood of new keys.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

MAX_TRACKED_KEYS = 100_000
_ADDRESS_KEY = secrets.token_bytes(32)
"""Made at startup and never kept: the server cannot turn a key back into an address."""


def address_key(address: str) -> str:
    """What limits are kept under for a client address: a keyed hash, so that memory
    holds no address once its connection is gone (threat model: addresses are seen
    while connected, not kept)."""
    return hashlib.blake2b(address.encode(), key=_ADDRESS_KEY, digest_size=16).hexdigest()


@dataclass
class TokenBucket:
    rate: float
    """Tokens added per second."""
    burst: float
    """Most tokens held at once."""
    tokens: float = -1.0
    updated_at: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take `cost` tokens (one per event, or one per byte) if there are that many;
        False means the event is over the limit."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated_at) * self.rate)
        self.updated_at = now
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True

    def charge(self, now: float, cost: float) -> None:
        """Take `cost` after the fact (time already spent): the bucket may go below
        zero, and `take` refuses until it has refilled."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated_at) * self.rate) - cost
        self.updated_at = now

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.updated_at) * self.rate >= self.burst


@dataclass
class RateLimiter:
    rate: float
    burst: float
    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def allow(self, key: str, now: float, cost: float = 1.0) -> bool:
        return self._bucket(key, now).take(now, cost)

    def charge(self, key: str, now: float, cost: float) -> None:
        self._bucket(key, now).charge(now, cost)

    def _bucket(self, key: str, now: float) -> TokenBucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= MAX_TRACKED_KEYS:
                self.forget_idle(now)
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst, updated_at=now)
        return bucket

    def forget_idle(self, now: float) -> None:
        """Drop buckets that have refilled: they hold nothing a new bucket would not."""
        for key in [k for k, b in self.buckets.items() if b.full(now)]:
            del self.buckets[key]
        if len(self.buckets) >= MAX_TRACKED_KEYS:
            # Still full of busy keys: a flood of distinct keys; start over rather than grow.
            self.buckets.clear()
