"""Reception statistics of one incoming RTP stream, for the receiver reports the
SFU sends its publishers (RFC 3550 section 6.4.1 and appendix A.3, A.8)."""

from __future__ import annotations

from .rtp import ReportBlock


class ReceptionStats:
    def __init__(self, ssrc: int, clock_rate: int) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.base_sequence: int | None = None
        self.max_sequence = 0
        self.cycles = 0
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter = 0.0
        self.last_transit: float | None = None
        self.last_sr_middle = 0
        """The middle 32 bits of the NTP time of the last sender report."""
        self.last_sr_at: float | None = None

    def add(self, sequence_number: int, timestamp: int, now: float) -> None:
        if self.base_sequence is None:
            self.base_sequence = self.max_sequence = sequence_number
        else:
            delta = (sequence_number - self.max_sequence) & 0xFFFF
            if 0 < delta < 0x8000:
                if sequence_number < self.max_sequence:
                    self.cycles += 1 << 16
                self.max_sequence = sequence_number
        self.received += 1
        transit = now * self.clock_rate - timestamp
        if self.last_transit is not None:
            difference = abs(transit - self.last_transit)
            # A timestamp jump (a new frame after a pause) is not network jitter.
            if difference < self.clock_rate:
                self.jitter += (difference - self.jitter) / 16
        self.last_transit = transit

    def sender_report_received(self, ntp_timestamp: int, now: float) -> None:
        self.last_sr_middle = (ntp_timestamp >> 16) & 0xFFFFFFFF
        self.last_sr_at = now

    def report_block(self, now: float) -> ReportBlock | None:
        if self.base_sequence is None:
            return None
        extended_max = self.cycles + self.max_sequence
        expected = extended_max - self.base_sequence + 1
        lost = max(0, min(expected - self.received, 0x7FFFFF))
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior, self.received_prior = expected, self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        delay = 0
        if self.last_sr_at is not None:
            delay = int((now - self.last_sr_at) * 65536) & 0xFFFFFFFF
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            packets_lost=lost,
            highest_sequence=extended_max & 0xFFFFFFFF,
            jitter=int(self.jitter) & 0xFFFFFFFF,
            last_sr=self.last_sr_middle,
            delay_since_last_sr=delay,
        )
