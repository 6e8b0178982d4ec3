"""Loss between a publisher and the SFU, repaired before receivers notice.

The SFU sees a gap in a publisher's sequence numbers long before any receiver
does (a receiver's NACK would find the SFU's cache without the packet, and only
then reach the publisher). So the SFU asks the publisher itself: at once when a
gap opens, then again a few times while the packet could still be played.
Pure state; `now` is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_MISSING = 128
"""Most sequence numbers tracked at once: a longer gap is an outage, not loss."""
RETRY_INTERVAL = 0.05
"""Seconds between asking again for the same packet."""
MAX_TRIES = 3
GIVE_UP_AFTER = 0.5
"""A packet this late is no use to anyone's jitter buffer."""


@dataclass
class Missing:
    first_missed_at: float
    asked_at: float
    tries: int = 1


@dataclass
class UpstreamLoss:
    """One published video stream's gaps, by sequence number."""

    highest: int | None = None
    missing: dict[int, Missing] = field(default_factory=dict)

    def received(self, sequence_number: int, now: float) -> list[int]:
        """Note a packet; returns the sequence numbers it shows missing, to ask for now."""
        if self.highest is None:
            self.highest = sequence_number
            return []
        ahead = (sequence_number - self.highest) & 0xFFFF
        if ahead == 0 or ahead >= 0x8000:
            # A repeat, or late: perhaps the very packet asked for.
            self.missing.pop(sequence_number, None)
            return []
        gap = [(self.highest + i) & 0xFFFF for i in range(1, ahead)]
        self.highest = sequence_number
        if len(gap) > MAX_MISSING:
            self.missing.clear()  # an outage: the receivers ask for a keyframe instead
            return []
        for lost in gap:
            self.missing[lost] = Missing(first_missed_at=now, asked_at=now)
        while len(self.missing) > MAX_MISSING:
            del self.missing[next(iter(self.missing))]
        return gap

    def due(self, now: float) -> list[int]:
        """Sequence numbers to ask for again; forgets those past hope."""
        again = []
        for sequence_number, entry in list(self.missing.items()):
            if entry.tries >= MAX_TRIES or now - entry.first_missed_at > GIVE_UP_AFTER:
                del self.missing[sequence_number]
            elif now - entry.asked_at >= RETRY_INTERVAL:
                entry.asked_at = now
                entry.tries += 1
                again.append(sequence_number)
        return again
