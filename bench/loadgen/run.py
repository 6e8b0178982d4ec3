"""Run one meeting shape against a Confide server and print what the media plane did.

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
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .measure import Result, overall, receiver_result
from .peer import OPUS_PT, VP8_PT, Answer, Peer, Section, payload
from .relay import Relay
from .signalling import Signalling, create_meeting

AUDIO_INTERVAL = 0.020
AUDIO_BYTES = 100
VIDEO_FPS = 30
VIDEO_PACKET_BYTES = 1200


@dataclass(frozen=True)
class Impairment:
    """A relay in front of one participant: loss fraction and one-way delay (s);
    `media_only` spares STUN and DTLS from the loss."""

    loss: float
    delay: float
    seed: int = 1
    media_only: bool = False


@dataclass
class Participant:
    index: int
    peer: Peer
    sends: bool
    audio_ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    video_ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    answer: Answer | None = None
    first_answer: asyncio.Event = field(default_factory=asyncio.Event)
    signalling: Signalling | None = None
    relay: Relay | None = None
    sent: dict[int, int] = field(default_factory=dict)

    @property
    def sections(self) -> list[Section]:
        if not self.sends:
            return []
        return [Section("a", "audio", self.audio_ssrc), Section("v", "video", self.video_ssrc)]

    def take_answer(self, answer: Answer) -> None:
        self.answer = answer
        self.first_answer.set()


@dataclass
class Report:
    people: int
    seconds: float
    video_kbps: int
    sent_per_second: float
    forwarded_per_second: float
    receivers: dict[str, Result]
    total: Result

    def as_dict(self) -> dict[str, Any]:
        return {
            "people": self.people, "seconds": self.seconds, "video_kbps": self.video_kbps,
            "sent_per_second": self.sent_per_second,
            "forwarded_per_second": self.forwarded_per_second,
            "receivers": {name: r.as_dict() for name, r in self.receivers.items()},
            "total": self.total.as_dict(),
        }


async def _join(http: aiohttp.ClientSession, base_url: str, meeting: Any,
                participant: Participant, impairment: Impairment | None) -> None:
    await participant.peer.open()
    participant.signalling = Signalling(http, base_url, meeting, participant.sections,
                                        participant.peer.offer, participant.take_answer)
    await participant.signalling.join()
    await asyncio.wait_for(participant.first_answer.wait(), 10)
    assert participant.answer is not None
    remote = None
    if impairment is not None:
        participant.relay = Relay(participant.answer.address, impairment.loss,
                                  impairment.delay, impairment.seed, impairment.media_only)
        await participant.relay.start()
        remote = participant.relay.address
    await participant.peer.connect(participant.answer, remote)


def _expected(participants: list[Participant], receiver: Participant) -> set[int]:
    return {ssrc for p in participants if p is not receiver and p.sends
            for ssrc in (p.audio_ssrc, p.video_ssrc)}


async def _all_subscribed(participants: list[Participant], timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if all(p.answer is not None
                   and _expected(participants, p) <= set(p.answer.ssrcs.values())
                   for p in participants):
                return
            await asyncio.sleep(0.05)


async def _send(participant: Participant, seconds: float, video_kbps: int) -> None:
    """Paces audio and video by the loop clock."""
    loop = asyncio.get_running_loop()
    peer = participant.peer
    frame_bytes = video_kbps * 1000 // 8 // VIDEO_FPS
    packets_per_frame = max(1, math.ceil(frame_bytes / VIDEO_PACKET_BYTES))
    video_bytes = max(16, frame_bytes // packets_per_frame)
    audio_seq, video_seq = secrets.randbelow(0x10000), secrets.randbelow(0x10000)
    audio_ts, video_ts = secrets.randbits(32), secrets.randbits(32)
    start = loop.time()
    next_audio = next_video = start
    end = start + seconds
    sent = participant.sent
    while True:
        now = loop.time()
        if now >= end:
            break
        if participant.sends and now >= next_audio:
            peer.send_rtp(participant.audio_ssrc, OPUS_PT, audio_seq, audio_ts,
                          payload(participant.index, AUDIO_BYTES, time.monotonic()))
            sent[participant.audio_ssrc] = sent.get(participant.audio_ssrc, 0) + 1
            audio_seq, audio_ts = audio_seq + 1, audio_ts + 960
            next_audio += AUDIO_INTERVAL
        if participant.sends and video_kbps > 0 and now >= next_video:
            for i in range(packets_per_frame):
                peer.send_rtp(participant.video_ssrc, VP8_PT, video_seq, video_ts,
                              payload(participant.index, video_bytes, time.monotonic()),
                              marker=i == packets_per_frame - 1)
                video_seq += 1
            sent[participant.video_ssrc] = sent.get(participant.video_ssrc, 0) + packets_per_frame
            video_ts += 90000 // VIDEO_FPS
            next_video += 1 / VIDEO_FPS
        await asyncio.sleep(max(0.0, min(next_audio, next_video) - loop.time()))


async def _keepalive(participant: Participant) -> None:
    """Consent checks, so a peer that sends no media (yet) is not timed out."""
    while True:
        participant.peer.keepalive()
        await asyncio.sleep(1.0)


async def run_meeting(base_url: str, people: int, seconds: float, video_kbps: int = 1000,
                      impairments: dict[int, Impairment] | None = None,
                      receive_only: frozenset[int] = frozenset()) -> Report:
    """`impairments` puts a relay in front of those participants (by index);
    `receive_only` participants send no media."""
    impairments = impairments or {}
    participants = [Participant(i, Peer(i), i not in receive_only) for i in range(people)]
    async with aiohttp.ClientSession() as http:
        meeting = await create_meeting(http, base_url)
        keepalives: list[asyncio.Task[None]] = []
        try:
            for participant in participants:
                impairment = impairments.get(participant.index)
                await _join(http, base_url, meeting, participant, impairment)
                keepalives.append(asyncio.create_task(_keepalive(participant)))
            await _all_subscribed(participants)
            await asyncio.sleep(0.3)
            await asyncio.gather(*(_send(p, seconds, video_kbps) for p in participants))
            await asyncio.sleep(0.5 + max((i.delay for i in impairments.values()), default=0))
        finally:
            for task in keepalives:
                task.cancel()
            for participant in participants:
                if participant.signalling is not None:
                    with contextlib.suppress(Exception):
                        await participant.signalling.close()
                participant.peer.close()
                if participant.relay is not None:
                    participant.relay.close()
    sent_by_ssrc = {ssrc: n for p in participants for ssrc, n in p.sent.items()}
    expected = {
        f"peer{p.index}": {s: sent_by_ssrc.get(s, 0) for s in _expected(participants, p)}
        for p in participants
    }
    received = {f"peer{p.index}": p.peer.received for p in participants}
    results = {name: receiver_result(expected[name], received[name]) for name in expected}
    return Report(
        people=people, seconds=seconds, video_kbps=video_kbps,
        sent_per_second=sum(sent_by_ssrc.values()) / seconds,
        forwarded_per_second=sum(len(r.ssrc) for r in received.values()) / seconds,
        receivers=results,
        total=overall(results, received, expected),
    )


def format_report(report: Report) -> str:
    lines = [
        f"{report.people} people, {report.seconds:g} s, video {report.video_kbps} kbit/s: "
        f"sent {report.sent_per_second:.0f} packets/s, "
        f"forwarded {report.forwarded_per_second:.0f} packets/s",
        f"{'receiver':<10}{'expected':>10}{'received':>10}{'loss':>9}{'reorder':>9}"
        f"{'p50 ms':>9}{'p99 ms':>9}",
    ]
    for name, r in [*report.receivers.items(), ("all", report.total)]:
        lines.append(
            f"{name:<10}{r.expected:>10}{r.received:>10}{r.loss:>9.2%}{r.reordered:>9}"
            f"{r.delay_p50 * 1000:>9.2f}{r.delay_p99 * 1000:>9.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--video-kbps", type=int, default=1000)
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args(argv)
    report = asyncio.run(run_meeting(args.server.rstrip("/"), args.people, args.seconds,
                                     args.video_kbps))
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report.as_dict(), out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
