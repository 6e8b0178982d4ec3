"""Loss, reordering and added delay from what was sent and what arrived. Pure."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
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


def unwrap(seqs: Iterable[int]) -> list[int]:
    """16-bit sequence numbers extended, each to the value nearest the previous one."""
    extended: list[int] = []
    last = None
    for seq in seqs:
        if last is None:
            value = seq
        else:
            value = last + ((seq - last + 0x8000) & 0xFFFF) - 0x8000
        extended.append(value)
        last = value
    return extended


def receiver_result(sent: Mapping[int, int], received: Received) -> Result:
    """`sent`: packets sent per SSRC this receiver should get."""
    by_ssrc: dict[int, list[int]] = {}
    delays: list[float] = []
    for ssrc, seq, sent_at, arrived_at in zip(
        received.ssrc, received.seq, received.sent_at, received.arrived_at, strict=True
    ):
        if ssrc in sent:
            by_ssrc.setdefault(ssrc, []).append(seq)
            delays.append(arrived_at - sent_at)
    distinct = reordered = 0
    for seqs in by_ssrc.values():
        extended = unwrap(seqs)
        distinct += len(set(extended))
        highest = extended[0]
        for value in extended[1:]:
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


def overall(results: Mapping[str, Result],
            received: Mapping[str, Received], expected: Mapping[str, Mapping[int, int]]) -> Result:
    """All receivers together: counts summed, delay percentiles over every packet."""
    delays = [
        arrived - sent_at
        for name, rec in received.items()
        for ssrc, sent_at, arrived in zip(rec.ssrc, rec.sent_at, rec.arrived_at, strict=True)
        if ssrc in expected[name]
    ]
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
