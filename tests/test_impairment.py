"""The impairment model of tests/e2e/impairment.py: block, loss, delay, jitter and a
rate-limited queue, each direction on its own; time passed in, no sockets."""

from __future__ import annotations

import random

import pytest
from tests.e2e.impairment import DeliveryQueue, DuplexLink, Impairment, LinkModel


def link(impairment: Impairment, seed: int = 1) -> LinkModel:
    return LinkModel(impairment, random.Random(seed))


def test_no_impairment_delivers_every_packet_at_once() -> None:
    model = LinkModel()
    assert [model.admit(now, 1200) for now in (0.0, 0.5, 7.25)] == [0.0, 0.5, 7.25]
    assert model.counters.passed == 3


def test_blocked_drops_every_packet_and_counts_it_as_blocked() -> None:
    model = link(Impairment(blocked=True))
    assert [model.admit(now, 100) for now in range(5)] == [None] * 5
    assert (model.counters.blocked, model.counters.passed) == (5, 0)


def test_unblocking_lets_packets_through_again() -> None:
    model = link(Impairment(blocked=True))
    model.admit(0.0, 100)
    model.impairment = Impairment()
    assert model.admit(1.0, 100) == 1.0


def test_loss_drops_about_that_share_of_packets() -> None:
    model = link(Impairment(loss=0.2), seed=7)
    delivered = [model.admit(i / 1000, 100) for i in range(10_000)]
    lost = delivered.count(None)
    assert 1800 < lost < 2200  # 0.2 of 10 000, within five standard deviations
    assert model.counters.lost == lost
    assert model.counters.passed == 10_000 - lost


def test_loss_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    def pattern(seed: int) -> list[bool]:
        model = link(Impairment(loss=0.5), seed=seed)
        return [model.admit(i / 100, 100) is None for i in range(200)]

    assert pattern(3) == pattern(3)
    assert pattern(3) != pattern(4)


def test_loss_of_one_drops_everything_and_zero_nothing() -> None:
    assert all(link(Impairment(loss=1.0)).admit(0.0, 100) is None for _ in range(100))
    none_lost = link(Impairment(loss=0.0))
    assert all(none_lost.admit(0.0, 100) == 0.0 for _ in range(100))


def test_delay_adds_the_same_time_to_every_packet_and_keeps_their_order() -> None:
    model = link(Impairment(delay_ms=80))
    sent = [i * 0.001 for i in range(50)]
    arrivals = [model.admit(now, 100) for now in sent]
    assert arrivals == [pytest.approx(now + 0.080) for now in sent]
    assert arrivals == sorted(arrivals)  # type: ignore[type-var]


def test_jitter_adds_up_to_its_amount_on_top_of_the_delay_and_reorders() -> None:
    model = link(Impairment(delay_ms=50, jitter_ms=30))
    sent = [i * 0.002 for i in range(200)]
    arrivals = [model.admit(now, 100) for now in sent]
    delays = [arrival - now for arrival, now in zip(arrivals, sent, strict=True)
              if arrival is not None]
    assert len(delays) == 200
    assert all(0.050 <= delay <= 0.080 for delay in delays)
    assert max(delays) - min(delays) > 0.020  # spread across the range, not a fixed delay
    overtaken = sum(1 for before, after in zip(arrivals, arrivals[1:], strict=False)
                    if after is not None and before is not None and after < before)
    assert overtaken > 0


def test_rate_limit_sends_packets_one_after_another_at_the_link_rate() -> None:
    model = link(Impairment(rate_bps=8000))  # 1000 bytes a second: 100 bytes take 0.1 s
    assert model.admit(0.0, 100) == pytest.approx(0.1)
    assert model.admit(0.0, 100) == pytest.approx(0.2)
    assert model.admit(0.05, 100) == pytest.approx(0.3)  # waits for the two ahead of it
    assert model.admit(1.0, 100) == pytest.approx(1.1)  # the line was idle again


def test_rate_limit_drops_packets_that_do_not_fit_in_the_queue() -> None:
    model = link(Impairment(rate_bps=8000, queue_bytes=250))
    assert model.admit(0.0, 100) is not None
    assert model.admit(0.0, 100) is not None
    assert model.backlog_bytes(0.0) == pytest.approx(200)
    assert model.admit(0.0, 100) is None  # 200 held + 100 > 250
    assert model.counters.queue_full == 1
    assert model.admit(0.1, 100) == pytest.approx(0.3)  # the first left: room for one more


def test_rate_limited_queue_drains_at_the_link_rate() -> None:
    model = link(Impairment(rate_bps=80_000, queue_bytes=10_000))
    for _ in range(10):
        model.admit(0.0, 1000)
    assert model.backlog_bytes(0.0) == pytest.approx(10_000)
    assert model.backlog_bytes(0.5) == pytest.approx(5_000)
    assert model.backlog_bytes(1.0) == 0


def test_delay_comes_after_the_bottleneck() -> None:
    model = link(Impairment(rate_bps=8000, delay_ms=40))
    assert model.admit(0.0, 100) == pytest.approx(0.14)
    assert model.admit(0.0, 100) == pytest.approx(0.24)


def test_each_direction_is_impaired_on_its_own() -> None:
    duplex = DuplexLink(up=Impairment(blocked=True), down=Impairment(delay_ms=10))
    assert duplex.admit(0.0, "up", 100) is None
    assert duplex.admit(0.0, "down", 100) == pytest.approx(0.01)
    duplex.set("down", Impairment(rate_bps=8000, queue_bytes=100))
    assert duplex.admit(1.0, "down", 100) == pytest.approx(1.1)
    assert duplex.admit(1.0, "down", 100) is None  # down's queue is full...
    duplex.set("up", Impairment())
    assert duplex.admit(1.0, "up", 100) == 1.0  # ...and up's is not involved
    counters = duplex.counters()
    assert (counters["up"].blocked, counters["up"].passed) == (1, 1)
    assert (counters["down"].queue_full, counters["down"].passed) == (1, 2)


def test_traffic_one_way_does_not_change_the_losses_the_other_way() -> None:
    def down_losses(with_upstream_traffic: bool) -> list[bool]:
        duplex = DuplexLink(Impairment(loss=0.5), Impairment(loss=0.5), seed=9)
        losses = []
        for i in range(100):
            if with_upstream_traffic:
                duplex.admit(i / 100, "up", 100)
            losses.append(duplex.admit(i / 100, "down", 100) is None)
        return losses

    assert down_losses(True) == down_losses(False)


def test_counters_are_a_copy() -> None:
    duplex = DuplexLink()
    before = duplex.counters()
    duplex.admit(0.0, "up", 100)
    assert before["up"].passed == 0
    assert duplex.counters()["up"].passed == 1


@pytest.mark.parametrize("settings", [
    {"loss": 1.5}, {"loss": -0.1}, {"delay_ms": -1}, {"jitter_ms": -1},
    {"rate_bps": 0}, {"queue_bytes": 0},
])
def test_impossible_settings_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Impairment(**settings)  # type: ignore[arg-type]


def test_delivery_queue_releases_packets_when_due_in_time_order() -> None:
    queue: DeliveryQueue[str] = DeliveryQueue()
    queue.push(3.0, "c")
    queue.push(1.0, "a")
    queue.push(2.0, "b")
    assert queue.next_time() == 1.0
    assert queue.pop_due(0.5) == []
    assert queue.pop_due(2.0) == ["a", "b"]
    assert queue.next_time() == 3.0
    assert queue.pop_due(9.0) == ["c"]
    assert queue.next_time() is None


def test_delivery_queue_keeps_arrival_order_among_packets_due_at_the_same_time() -> None:
    queue: DeliveryQueue[int] = DeliveryQueue()
    arrivals = list(range(100, 0, -1))  # in an order that sorting the packets would undo
    for packet in arrivals:
        queue.push(5.0, packet)
    assert queue.pop_due(5.0) == arrivals
