"""What an impaired network does to each packet: block, random loss, delay with jitter,
and a rate-limited bottleneck queue. Pure: no sockets, no clock; `now` is in seconds."""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, replace
from typing import Generic, Literal, TypeVar

Direction = Literal["up", "down"]
""""up" is browser to server, "down" is server to browser."""

DIRECTIONS: tuple[Direction, ...] = ("up", "down")

T = TypeVar("T")


@dataclass(frozen=True)
class Impairment:
    """What one direction of a link does to the packets it carries. The default
    passes every packet at once."""

    blocked: bool = False
    """Drop every packet, as a firewall would."""
    loss: float = 0.0
    """Probability, 0 to 1, that each packet is lost."""
    delay_ms: float = 0.0
    """Propagation delay added to every packet."""
    jitter_ms: float = 0.0
    """Each packet waits a further uniformly random 0 to jitter_ms, so packets close
    together may overtake each other."""
    rate_bps: float | None = None
    """Bottleneck rate in bits per second; None for no limit."""
    queue_bytes: int = 64_000
    """Bytes the bottleneck holds (the packet on the wire included); a packet that
    does not fit is dropped. Only with rate_bps."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss must be from 0 to 1, not {self.loss}")
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise ValueError(f"delay and jitter must not be negative, not "
                             f"{self.delay_ms} and {self.jitter_ms}")
        if self.rate_bps is not None and self.rate_bps <= 0:
            raise ValueError(f"rate_bps must be positive or None, not {self.rate_bps}")
        if self.queue_bytes <= 0:
            raise ValueError(f"queue_bytes must be positive, not {self.queue_bytes}")


NO_IMPAIRMENT = Impairment()


@dataclass
class LinkCounters:
    """Packets one direction has let through, and those it dropped, by cause."""

    passed: int = 0
    blocked: int = 0
    lost: int = 0
    queue_full: int = 0


class LinkModel:
    """One direction of a link: decides for each packet whether it arrives, and when."""

    def __init__(self, impairment: Impairment = NO_IMPAIRMENT,
                 rng: random.Random | None = None) -> None:
        self.impairment = impairment
        """May be replaced at any time; the bottleneck keeps what it already holds."""
        self.rng = rng or random.Random(0)
        self.counters = LinkCounters()
        self._line_free_at = 0.0
        """When the bottleneck will have sent everything it holds."""

    def backlog_bytes(self, now: float) -> float:
        """Bytes the bottleneck still has to send at `now`."""
        rate = self.impairment.rate_bps
        if rate is None:
            return 0.0
        return max(0.0, self._line_free_at - now) * rate / 8

    def admit(self, now: float, size: int) -> float | None:
        """The time a packet of `size` bytes sent at `now` arrives, or None if it is dropped."""
        impairment = self.impairment
        if impairment.blocked:
            self.counters.blocked += 1
            return None
        # Lost on the way to the bottleneck, so a lost packet takes no room in its queue.
        if impairment.loss and self.rng.random() < impairment.loss:
            self.counters.lost += 1
            return None
        departure = now
        if impairment.rate_bps is not None:
            if self.backlog_bytes(now) + size > impairment.queue_bytes:
                self.counters.queue_full += 1
                return None
            departure = max(now, self._line_free_at) + size * 8 / impairment.rate_bps
            self._line_free_at = departure
        jitter_ms = self.rng.uniform(0, impairment.jitter_ms) if impairment.jitter_ms else 0.0
        self.counters.passed += 1
        return departure + (impairment.delay_ms + jitter_ms) / 1000


class DuplexLink:
    """Both directions of one flow. Each has its own model and random stream, so that
    traffic one way never changes what happens to traffic the other way."""

    def __init__(self, up: Impairment = NO_IMPAIRMENT, down: Impairment = NO_IMPAIRMENT,
                 seed: int | str = 0) -> None:
        # random.Random hashes a str seed with SHA-512: the same on every run.
        self.links: dict[Direction, LinkModel] = {
            "up": LinkModel(up, random.Random(f"{seed}:up")),
            "down": LinkModel(down, random.Random(f"{seed}:down")),
        }

    def admit(self, now: float, direction: Direction, size: int) -> float | None:
        return self.links[direction].admit(now, size)

    def set(self, direction: Direction, impairment: Impairment) -> None:
        self.links[direction].impairment = impairment

    def counters(self) -> dict[Direction, LinkCounters]:
        """A copy, safe to keep while the link goes on counting."""
        return {direction: replace(link.counters) for direction, link in self.links.items()}


class DeliveryQueue(Generic[T]):
    """Packets held until their delivery time. Those due at the same time leave in the
    order they came, which asyncio's timer heap does not promise."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._arrivals = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, deliver_at: float, item: T) -> None:
        heapq.heappush(self._heap, (deliver_at, next(self._arrivals), item))

    def pop_due(self, now: float) -> list[T]:
        due = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def clear(self) -> None:
        self._heap.clear()
