"""Loss-based bandwidth estimate per receiver, fed by its receiver reports.

The SFU tells each publisher (by REMB) the lowest estimate among those who
receive its video, so its encoder does not send more than the weakest link can
take. The rule follows the loss-based controller of Google Congestion Control
(draft-ietf-rmcat-gcc section 6): back off above 10% loss, grow below 2%.
"""

from __future__ import annotations

START_BITRATE = 1_500_000
MIN_BITRATE = 100_000
MAX_BITRATE = 4_000_000
IDLE_BITRATE = 150_000
"""What a publisher is told when nobody receives its video."""


class LossBasedEstimate:
    def __init__(self, start: int = START_BITRATE) -> None:
        self.bitrate = start

    def update(self, fraction_lost: int) -> int:
        """Take one report's loss fraction (0..255, as in RTCP) and return the estimate."""
        loss = fraction_lost / 256
        if loss > 0.10:
            self.bitrate = int(self.bitrate * (1 - 0.5 * loss))
        elif loss < 0.02:
            self.bitrate = int(self.bitrate * 1.08) + 1000
        self.bitrate = max(MIN_BITRATE, min(MAX_BITRATE, self.bitrate))
        return self.bitrate
