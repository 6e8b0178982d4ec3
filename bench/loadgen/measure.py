"""Loss, reordering and added delay from what was sent and what arrived. Pure."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .peer import Received


@dataclass(frozen=True)
class Result:
    expected: int
    """Packets sent on the streams this receiver should get."""
    received: int
    """Distinct packets of those streams that arrived."""
    loss: float
    reordered: int
    """Packets that arrived after a later packet of the same stream."""
    delay_p50: float
    delay_p99: float
    """Seconds from send to arrival."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def receiver_result(sent: Mapping[int, int], received: Received) -> Result:
    """`sent`: packets sent per stream (sender * 2 + kind) this receiver should get.
    Streams are told apart, and packets numbered, by what the payload says."""
    by_stream: dict[int, list[int]] = {}
    delays: list[float] = []
    for stream, number, sent_at, arrived_at in zip(
        received.stream, received.number, received.sent_at, received.arrived_at, strict=True
    ):
        if stream in sent:
            by_stream.setdefault(stream, []).append(number)
            delays.append(arrived_at - sent_at)
    distinct = reordered = 0
    for numbers in by_stream.values():
        distinct += len(set(numbers))
        highest = numbers[0]
        for value in numbers[1:]:
            if value < highest:
                reordered += 1
            highest = max(highest, value)
    expected = sum(sent.values())
    return Result(
        expected=expected,
        received=distinct,
        loss=1 - distinct / expected if expected else 0.0,
        reordered=reordered,
        delay_p50=statistics.median(delays) if delays else float("nan"),
        delay_p99=percentile(delays, 0.99),
    )


def counted_result(sent: Mapping[int, int], counted: int) -> Result:
    """A receiver that only counted datagrams: loss, and nothing about delay."""
    expected = sum(sent.values())
    got = min(counted, expected)
    return Result(expected=expected, received=got,
                  loss=1 - got / expected if expected else 0.0, reordered=0,
                  delay_p50=float("nan"), delay_p99=float("nan"))


def delays_of(received: Mapping[str, Received],
              expected: Mapping[str, Mapping[int, int]]) -> list[float]:
    """Send-to-arrival times of every packet a receiver should have got."""
    return [
        arrived - sent_at
        for name, rec in received.items()
        for stream, sent_at, arrived in zip(rec.stream, rec.sent_at, rec.arrived_at, strict=True)
        if stream in expected[name]
    ]


def overall(results: Mapping[str, Result], delays: list[float]) -> Result:
    """All receivers together: counts summed, delay percentiles over every packet."""
    total = sum(r.expected for r in results.values())
    got = sum(r.received for r in results.values())
    return Result(
        expected=total,
        received=got,
        loss=1 - got / total if total else 0.0,
        reordered=sum(r.reordered for r in results.values()),
        delay_p50=statistics.median(delays) if delays else float("nan"),
        delay_p99=percentile(delays, 0.99),
    )
