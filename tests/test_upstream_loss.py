"""The SFU's own NACKs to a publisher: gaps found, asked for at once, again a few
times, then given up; wrap-around, repeats and outages."""

from __future__ import annotations

from confide.sfu.upstream_loss import (
    GIVE_UP_AFTER,
    MAX_MISSING,
    MAX_TRIES,
    RETRY_INTERVAL,
    UpstreamLoss,
)


def test_a_gap_is_asked_for_at_once_and_closed_by_the_packet() -> None:
    losses = UpstreamLoss()
    assert losses.received(10, 0.0) == []
    assert losses.received(11, 0.0) == []
    assert losses.received(14, 0.01) == [12, 13]
    assert losses.received(12, 0.03) == []  # it came after all
    assert list(losses.missing) == [13]


def test_the_sequence_wraps_around() -> None:
    losses = UpstreamLoss()
    losses.received(65534, 0.0)
    assert losses.received(1, 0.0) == [65535, 0]


def test_repeats_and_late_packets_open_no_gap() -> None:
    losses = UpstreamLoss()
    losses.received(100, 0.0)
    assert losses.received(100, 0.0) == []
    assert losses.received(90, 0.0) == []
    assert losses.received(101, 0.0) == []
    assert losses.missing == {}


def test_asked_again_a_few_times_then_given_up() -> None:
    losses = UpstreamLoss()
    losses.received(1, 0.0)
    losses.received(3, 0.0)
    asks = 1
    now = 0.0
    while losses.missing:
        now += RETRY_INTERVAL / 2
        asks += len(losses.due(now))
        assert now < GIVE_UP_AFTER * 2
    assert asks == MAX_TRIES
    assert losses.due(now + 1) == []


def test_a_packet_past_hope_is_not_asked_for() -> None:
    losses = UpstreamLoss()
    losses.received(1, 0.0)
    losses.received(3, 0.0)
    assert losses.due(GIVE_UP_AFTER + 0.01) == []
    assert losses.missing == {}


def test_an_outage_is_not_a_flood_of_nacks() -> None:
    losses = UpstreamLoss()
    losses.received(1, 0.0)
    assert losses.received(2 + MAX_MISSING + 1, 0.0) == []
    for start in range(10, 10 + 4 * MAX_MISSING, 64):
        losses.received(start + 62, 0.0)  # gaps of 61, one after another
    assert len(losses.missing) <= MAX_MISSING
