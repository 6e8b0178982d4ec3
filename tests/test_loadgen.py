"""The load generator against a real `confide serve`: three codec-less WebRTC peers
(ICE, DTLS, SRTP, real SDP) send synthetic RTP, and what the SFU forwards is
measured; then a lossy, slow relay in front of one receiver must show up in its
numbers and in no one else's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from bench.loadgen.measure import Result, receiver_result
from bench.loadgen.peer import Received
from bench.loadgen.run import Impairment, format_report, run_meeting
from tests.e2e.participant import Server
from tests.e2e.server_process import start_server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    process, running = start_server("loadgen.log")
    yield running
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def pure_python_server() -> Iterator[Server]:
    """The fallback: no C fan-out, no uvloop."""
    process, running = start_server("loadgen-pure.log", env={"CONFIDE_PURE_PYTHON": "1"})
    yield running
    process.terminate()
    process.wait(timeout=10)


def test_measure_counts_loss_reordering_and_delay() -> None:
    # Stream 3 (sender 1's video): 0, 2, 1, 4 and a duplicate 2; stream 4 is not expected.
    received = Received(
        stream=[3, 3, 3, 3, 3, 4], number=[0, 2, 1, 4, 2, 7],
        sent_at=[0.0] * 6, arrived_at=[0.01, 0.02, 0.03, 0.04, 0.05, 0.06],
    )
    result = receiver_result({3: 5}, received)
    assert result == Result(expected=5, received=4, loss=pytest.approx(0.2), reordered=2,
                            delay_p50=pytest.approx(0.03), delay_p99=pytest.approx(0.05))


@pytest.mark.parametrize("which", ["server", "pure_python_server"])
def test_three_peers_receive_each_other_without_loss(which: str,
                                                     request: pytest.FixtureRequest) -> None:
    server: Server = request.getfixturevalue(which)
    report = asyncio.run(run_meeting(server.base_url, people=3, seconds=3, video_kbps=500))
    print(format_report(report))
    for name, result in report.receivers.items():
        assert result.expected > 500, name  # two senders' audio and video
        assert result.loss == 0, (name, result)
        assert 0 <= result.delay_p50 <= result.delay_p99 < 1.0, (name, result)
    # Each sender reports each stream about once a second; the SFU relays them to
    # the receivers (in one fan-out), and asks publishers for keyframes and bitrate.
    assert report.feedback.sender_reports >= 3 * 2 * 2, report.feedback
    assert report.feedback.remb > 0, report.feedback


def test_relay_loss_and_delay_show_in_that_receiver_only(server: Server) -> None:
    report = asyncio.run(run_meeting(
        server.base_url, people=3, seconds=3, video_kbps=500,
        impairments={2: Impairment(loss=0.10, delay=0.050, seed=7, media_only=True)},
        receive_only=frozenset({2}),
    ))
    print(format_report(report))
    impaired = report.receivers["peer2"]
    assert 0.05 <= impaired.loss <= 0.15, impaired
    assert 0.050 <= impaired.delay_p50 < 1.0, impaired
    for name in ("peer0", "peer1"):
        clean = report.receivers[name]
        assert clean.expected > 200, (name, clean)
        assert clean.loss < 0.01, (name, clean)
        assert clean.delay_p99 < 1.0, (name, clean)
