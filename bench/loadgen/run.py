"""Run one meeting shape against a Confide (or Janus) server and print what the
media plane did.

    python -m bench.loadgen.run --server http://127.0.0.1:8080 --people 3 --seconds 5

Everyone sends audio (50 packets/s of ~100 bytes) and camera video (the given
rate at 30 frames/s in packets of up to 1200 bytes) and receives everyone else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import resource
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .measure import Result, counted_result, delays_of, overall, receiver_result
from .meetings import ConfideMeeting, Impairment, JanusMeeting, MeetingDriver, Participant
from .peer import AUDIO, OPUS_PT, VIDEO, VP8_PT, Feedback, Received, payload

AUDIO_INTERVAL = 0.020
AUDIO_BYTES = 100
VIDEO_FPS = 30
VIDEO_PACKET_BYTES = 1200
SENDER_REPORT_INTERVAL = 1.0
"""Seconds between one sender's RTCP sender reports (per stream), as browsers do."""
KEEPALIVE_INTERVAL = 2.0
"""Seconds between one peer's consent checks (browsers: about 5; servers time out
silent peers after 8 or more)."""

Probe = Callable[[], tuple[float, int]]
"""The server's CPU seconds so far and its resident memory in bytes."""

__all__ = [
    "Impairment", "LoadRun", "Report", "client_session", "combine", "format_report", "run_meeting",
]


@dataclass
class SendState:
    audio_seq: int = field(default_factory=lambda: secrets.randbelow(0x10000))
    video_seq: int = field(default_factory=lambda: secrets.randbelow(0x10000))
    audio_ts: int = field(default_factory=lambda: secrets.randbits(32))
    video_ts: int = field(default_factory=lambda: secrets.randbits(32))


@dataclass
class Report:
    server: str
    people: int
    senders: int
    seconds: float
    video_kbps: int
    sent_per_second: float
    forwarded_per_second: float
    receivers: dict[str, Result]
    total: Result
    feedback: Feedback
    """RTCP feedback the measuring receivers got."""
    generator_cpu: float
    """The generator's own CPU use over the window, as a fraction of one core."""
    server_cpu_seconds: float | None = None
    server_rss: int | None = None
    generator_drops: int = 0
    """Datagrams the kernel dropped because the generator's sockets were full: loss
    that is the generator's, not the server's."""
    delays: list[float] = field(default_factory=list, repr=False)
    """Every measured packet's added delay, for combining reports (not in as_dict)."""

    @property
    def cpu_per_million(self) -> float | None:
        """Server CPU seconds per million forwarded packets."""
        forwarded = self.forwarded_per_second * self.seconds
        if self.server_cpu_seconds is None or forwarded == 0:
            return None
        return self.server_cpu_seconds / forwarded * 1e6

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": self.server, "people": self.people, "senders": self.senders,
            "seconds": self.seconds, "video_kbps": self.video_kbps,
            "sent_per_second": self.sent_per_second,
            "forwarded_per_second": self.forwarded_per_second,
            "server_cpu_seconds": self.server_cpu_seconds,
            "cpu_seconds_per_million": self.cpu_per_million,
            "server_rss": self.server_rss,
            "generator_cpu": self.generator_cpu,
            "generator_drops": self.generator_drops,
            "feedback": vars(self.feedback),
            "total": self.total.as_dict(),
            "receivers": {name: r.as_dict() for name, r in self.receivers.items()},
        }


def udp_drops(ports: set[int]) -> int:
    """The kernel's drop count (/proc/net/udp, last column) summed over the local
    UDP ports given."""
    total = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = open(table).read().splitlines()[1:]  # noqa: SIM115 - read at once
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) in ports:
                total += int(fields[-1])
    return total


def raise_file_limit() -> None:
    """Each peer is a socket; a thousand receivers need more than the default 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class LoadRun:
    """A meeting on one server that grows as participants are added, measured in
    windows: everyone who sends sends for a while, and what arrived is counted."""

    def __init__(self, driver: MeetingDriver, video_kbps: int = 1000,
                 probe: Probe | None = None) -> None:
        self.driver = driver
        self.video_kbps = video_kbps
        self.probe = probe
        self.participants: list[Participant] = []
        self._state: dict[int, SendState] = {}
        self._keepalive: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoadRun:
        await self.driver.open()
        self._keepalive = asyncio.create_task(self._keep_alive())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        with contextlib.suppress(Exception):
            await self.driver.close()
        for participant in self.participants:
            participant.close()

    async def add(self, count: int, sends: bool, measure: bool = True,
                  impairment: Impairment | None = None, batch: int = 20,
                  subscribe: bool = True) -> list[Participant]:
        """Join `count` more people and, unless `subscribe` is False (more senders
        are to come), wait until everyone receives every sender."""
        start = len(self.participants)
        added = [Participant(start + i, sends, measure, impairment) for i in range(count)]
        self.participants += added
        if sends:  # one at a time, so each sender sees the meeting grow in order
            for participant in added:
                await self.driver.join(participant)
        else:
            for first in range(0, count, batch):
                await asyncio.gather(*(self.driver.join(p) for p in added[first:first + batch]))
        if subscribe:
            await self.driver.subscribe(self.participants)
        return added

    async def _keep_alive(self) -> None:
        """Consent checks, so a peer that sends no media (yet) is not timed out; spread
        evenly over the interval, as independent browsers' checks are, rather than
        a thousand at once."""
        while True:
            peers = [peer for p in self.participants for peer in p.peers()]
            if not peers:
                await asyncio.sleep(KEEPALIVE_INTERVAL)
                continue
            for peer in peers:
                peer.keepalive()
                await asyncio.sleep(KEEPALIVE_INTERVAL / len(peers))

    async def window(self, seconds: float, settle: float = 0.5) -> Report:
        for participant in self.participants:
            participant.sent = {}
            for peer in participant.peers():
                peer.received = Received()
                peer.counted = 0
                peer.feedback = Feedback()
        await asyncio.sleep(settle)
        before = self.probe() if self.probe else None
        ports = {peer.address[1] for p in self.participants for peer in p.peers()}
        drops_before = udp_drops(ports)
        cpu_before, wall_before = time.process_time(), time.monotonic()
        senders = [p for p in self.participants if p.sends]
        await asyncio.gather(*(self._send(p, seconds) for p in senders))
        generator_cpu = (time.process_time() - cpu_before) / (time.monotonic() - wall_before)
        after = self.probe() if self.probe else None
        delays = [p.impairment.delay for p in self.participants if p.impairment]
        await asyncio.sleep(settle + max(delays, default=0))
        report = self._report(seconds, generator_cpu, before, after)
        report.generator_drops = udp_drops(ports) - drops_before
        return report

    def _report(self, seconds: float, generator_cpu: float,
                before: tuple[float, int] | None, after: tuple[float, int] | None) -> Report:
        sent_by_stream = {s: n for p in self.participants for s, n in p.sent.items()}
        results: dict[str, Result] = {}
        received: dict[str, Received] = {}
        expected: dict[str, dict[int, int]] = {}
        feedback = Feedback()
        for p in self.participants:
            peer = p.recv_peer
            if peer is None:
                continue
            name = f"peer{p.index}"
            expected[name] = {s: n for s, n in sent_by_stream.items() if s not in p.streams}
            if p.measure:
                received[name] = peer.received
                results[name] = receiver_result(expected[name], peer.received)
                for either in p.peers():  # Janus sends a publisher's feedback to its own peer
                    feedback.add(either.feedback)
            else:
                results[name] = counted_result(expected[name], peer.counted)
        delays = delays_of(received, expected)
        return Report(
            server=self.driver.name,
            people=len(self.participants),
            senders=sum(p.sends for p in self.participants),
            seconds=seconds,
            video_kbps=self.video_kbps,
            sent_per_second=sum(sent_by_stream.values()) / seconds,
            forwarded_per_second=sum(r.received for r in results.values()) / seconds,
            receivers=results,
            total=overall(results, delays),
            feedback=feedback,
            generator_cpu=generator_cpu,
            server_cpu_seconds=after[0] - before[0] if before and after else None,
            server_rss=after[1] if after else None,
            delays=delays,
        )

    async def _send(self, participant: Participant, seconds: float) -> None:
        """Paces audio and video by the loop clock."""
        loop = asyncio.get_running_loop()
        peer = participant.send_peer
        assert peer is not None
        state = self._state.setdefault(participant.index, SendState())
        frame_bytes = self.video_kbps * 1000 // 8 // VIDEO_FPS
        packets_per_frame = max(1, math.ceil(frame_bytes / VIDEO_PACKET_BYTES))
        video_bytes = max(32, frame_bytes // packets_per_frame)
        audio_number = video_number = 0
        # Independent people's frames do not start in step: a random phase each, so
        # fifty senders do not land on the server as one burst every 33 ms.
        start = loop.time()
        next_audio = start + random.uniform(0, AUDIO_INTERVAL)
        next_video = start + random.uniform(0, 1 / VIDEO_FPS)
        next_report = start + random.uniform(0, SENDER_REPORT_INTERVAL)
        end = start + seconds
        sender = participant.index
        while True:
            now = loop.time()
            if now >= end:
                break
            if now >= next_report:
                wall = time.time()
                peer.send_sender_report(participant.audio_ssrc, state.audio_ts, audio_number,
                                        audio_number * AUDIO_BYTES, wall)
                peer.send_sender_report(participant.video_ssrc, state.video_ts, video_number,
                                        video_number * video_bytes, wall)
                next_report += SENDER_REPORT_INTERVAL
            if now >= next_audio:
                peer.send_rtp(participant.audio_ssrc, OPUS_PT, state.audio_seq, state.audio_ts,
                              payload(sender, AUDIO, audio_number, AUDIO_BYTES, time.time()))
                audio_number += 1
                state.audio_seq, state.audio_ts = state.audio_seq + 1, state.audio_ts + 960
                next_audio += AUDIO_INTERVAL
            if self.video_kbps > 0 and now >= next_video:
                for i in range(packets_per_frame):
                    body = payload(sender, VIDEO, video_number, video_bytes, time.time(),
                                   start=i == 0)
                    peer.send_rtp(participant.video_ssrc, VP8_PT, state.video_seq,
                                  state.video_ts, body, marker=i == packets_per_frame - 1)
                    video_number += 1
                    state.video_seq += 1
                state.video_ts += 90000 // VIDEO_FPS
                next_video += 1 / VIDEO_FPS
            await asyncio.sleep(max(0.0, min(next_audio, next_video, next_report) - loop.time()))
        audio, video = participant.streams
        participant.sent = {audio: audio_number, video: video_number}


def combine(reports: list[Report]) -> Report:
    """Meetings measured at the same time, as one load; the first carries the probe."""
    first = reports[0]
    receivers = {f"m{i}.{name}": result for i, report in enumerate(reports)
                 for name, result in report.receivers.items()}
    delays = [d for report in reports for d in report.delays]
    feedback = Feedback()
    for report in reports:
        feedback.add(report.feedback)
    return Report(
        server=first.server, people=sum(r.people for r in reports),
        senders=sum(r.senders for r in reports), seconds=first.seconds,
        video_kbps=first.video_kbps,
        sent_per_second=sum(r.sent_per_second for r in reports),
        forwarded_per_second=sum(r.forwarded_per_second for r in reports),
        receivers=receivers, total=overall(receivers, delays), feedback=feedback,
        generator_cpu=first.generator_cpu, server_cpu_seconds=first.server_cpu_seconds,
        server_rss=first.server_rss, delays=delays,
        generator_drops=sum(r.generator_drops for r in reports),
    )


def client_session() -> aiohttp.ClientSession:
    """Each Confide participant holds a WebSocket: no cap on open connections."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


def driver_for(server: str, http: aiohttp.ClientSession, base_url: str,
               media_host: str = "127.0.0.1") -> MeetingDriver:
    if server == "janus":
        return JanusMeeting(http, base_url, media_host)
    return ConfideMeeting(http, base_url)


async def run_meeting(base_url: str, people: int, seconds: float, video_kbps: int = 1000,
                      impairments: dict[int, Impairment] | None = None,
                      receive_only: frozenset[int] = frozenset(),
                      server: str = "confide", probe: Probe | None = None,
                      media_host: str = "127.0.0.1") -> Report:
    """Everyone joins, then one window. `impairments` puts a relay in front of those
    participants' receiving peers (by index); `receive_only` participants send nothing."""
    impairments = impairments or {}
    async with client_session() as http:
        driver = driver_for(server, http, base_url, media_host)
        async with LoadRun(driver, video_kbps, probe) as run:
            for index in range(people):
                await run.add(1, index not in receive_only, impairment=impairments.get(index),
                              subscribe=False)
            await run.driver.subscribe(run.participants)
            return await run.window(seconds)


def format_report(report: Report) -> str:
    lines = [
        f"{report.server}: {report.people} people ({report.senders} sending), "
        f"{report.seconds:g} s, video {report.video_kbps} kbit/s: "
        f"sent {report.sent_per_second:.0f} packets/s, "
        f"forwarded {report.forwarded_per_second:.0f} packets/s; "
        f"generator CPU {report.generator_cpu:.0%}, its sockets dropped "
        f"{report.generator_drops}",
        f"{'receiver':<10}{'expected':>10}{'received':>10}{'loss':>9}{'reorder':>9}"
        f"{'p50 ms':>9}{'p99 ms':>9}",
    ]
    shown = list(report.receivers.items())
    if len(shown) > 12:
        shown = shown[:6] + shown[-6:]
    for name, r in [*shown, ("all", report.total)]:
        lines.append(
            f"{name:<10}{r.expected:>10}{r.received:>10}{r.loss:>9.2%}{r.reordered:>9}"
            f"{r.delay_p50 * 1000:>9.2f}{r.delay_p99 * 1000:>9.2f}"
        )
    f = report.feedback
    lines.append(f"RTCP at measuring receivers: {f.nack} NACK, {f.pli} PLI, {f.fir} FIR, "
                 f"{f.remb} REMB, {f.sender_reports} sender reports")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--janus", action="store_true",
                        help="the server is Janus's HTTP API (e.g. http://127.0.0.1:8088/janus)")
    parser.add_argument("--media-host", default="127.0.0.1",
                        help="address to bind peers to (Janus: the machine's own address)")
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--video-kbps", type=int, default=1000)
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args(argv)
    raise_file_limit()
    report = asyncio.run(run_meeting(args.server.rstrip("/"), args.people, args.seconds,
                                     args.video_kbps,
                                     server="janus" if args.janus else "confide",
                                     media_host=args.media_host))
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report.as_dict(), out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
