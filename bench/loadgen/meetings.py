"""How the load generator joins a meeting on each server it can drive.

Each driver gives every participant a peer that sends (if it sends) and a peer
that receives everyone else. On Confide that is one peer connection per person,
re-offered as streams come and go. On Janus's VideoRoom it is two: a publisher
handle that we offer to, and a subscriber handle that offers to us.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from .janus_api import JanusSession
from .peer import AUDIO, VIDEO, Answer, Peer, Section, candidate_address, parse_answer
from .relay import Relay
from .signalling import Signalling, create_meeting


@dataclass(frozen=True)
class Impairment:
    """A relay in front of one participant's receiving peer: loss fraction and
    one-way delay (s); `media_only` spares STUN and DTLS from the loss."""

    loss: float
    delay: float
    seed: int = 1
    media_only: bool = False


@dataclass
class Participant:
    index: int
    sends: bool
    measure: bool = True
    """Decrypt and record every packet; otherwise only count datagrams."""
    impairment: Impairment | None = None
    audio_ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    video_ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    send_peer: Peer | None = None
    recv_peer: Peer | None = None
    relay: Relay | None = None
    sent: dict[int, int] = field(default_factory=dict)
    """Packets sent per stream (index * 2 + kind) in the current window."""

    @property
    def streams(self) -> tuple[int, int]:
        return self.index * 2 + AUDIO, self.index * 2 + VIDEO

    @property
    def sections(self) -> list[Section]:
        if not self.sends:
            return []
        return [Section("a", "audio", self.audio_ssrc), Section("v", "video", self.video_ssrc)]

    def peers(self) -> list[Peer]:
        found = [p for p in (self.send_peer, self.recv_peer) if p is not None]
        return list({id(p): p for p in found}.values())

    def close(self) -> None:
        for peer in self.peers():
            peer.close()
        if self.relay is not None:
            self.relay.close()


class MeetingDriver(Protocol):
    name: str

    async def open(self) -> None: ...
    async def join(self, participant: Participant) -> None: ...
    async def subscribe(self, participants: list[Participant]) -> None:
        """Return once every participant receives every other sender."""
    async def close(self) -> None: ...


async def _connect(peer: Peer, answer: Answer, participant: Participant,
                   receiving: bool) -> None:
    remote = None
    impairment = participant.impairment
    if receiving and impairment is not None and answer.address is not None:
        participant.relay = Relay(answer.address, impairment.loss, impairment.delay,
                                  impairment.seed, impairment.media_only)
        await participant.relay.start()
        remote = participant.relay.address
    await peer.connect(answer, remote)


class ConfideMeeting:
    """One WebSocket and one peer connection per participant (docs/protocol.md)."""

    name = "confide"

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.signalling: list[Signalling] = []
        self.answers: dict[int, Answer] = {}

    async def open(self) -> None:
        self.meeting = await create_meeting(self.http, self.base_url)

    async def join(self, participant: Participant) -> None:
        peer = Peer(participant.index, controlling=True, measure=participant.measure)
        participant.send_peer = participant.recv_peer = peer
        await peer.open()
        first = asyncio.Event()

        def take(answer: Answer) -> None:
            self.answers[participant.index] = answer
            first.set()

        signalling = Signalling(self.http, self.base_url, self.meeting, participant.sections,
                                peer.offer, take)
        self.signalling.append(signalling)
        await signalling.join()
        await asyncio.wait_for(first.wait(), 10)
        await _connect(peer, self.answers[participant.index], participant, receiving=True)

    async def subscribe(self, participants: list[Participant], timeout: float = 60) -> None:
        """The server re-offers by itself; wait until each answer covers every sender."""
        async with asyncio.timeout(timeout):
            while True:
                if all(self._covers(p, participants) for p in participants):
                    return
                await asyncio.sleep(0.05)

    def _covers(self, receiver: Participant, participants: list[Participant]) -> bool:
        answer = self.answers.get(receiver.index)
        wanted = {ssrc for p in participants if p is not receiver and p.sends
                  for ssrc in (p.audio_ssrc, p.video_ssrc)}
        return answer is not None and wanted <= set(answer.ssrcs.values())

    async def close(self) -> None:
        for signalling in self.signalling:
            with contextlib.suppress(Exception):
                await signalling.close()


class JanusMeeting:
    """A VideoRoom room: a publisher handle per sender, and per participant one
    subscriber handle carrying every other publisher's streams."""

    name = "janus"

    def __init__(self, http: aiohttp.ClientSession, base_url: str, host: str) -> None:
        """`host`: the address to bind peers to. Janus offers no loopback candidate and
        its libnice sockets send only through a real interface (IP_UNICAST_IF), so
        peers use the machine's own address; the packets still stay in the kernel."""
        self.api = JanusSession(http, base_url)
        self.host = host
        self.room = secrets.randbelow(1 << 31) + 1
        self.feeds: dict[int, int] = {}
        """Participant index to its Janus publisher id."""
        self.subscribed: set[int] = set()
        self.feeds_at_first_subscribe: set[int] = set()

    async def open(self) -> None:
        await self.api.open()
        handle = await self.api.attach()
        await self.api.request(handle, {
            "request": "create", "room": self.room, "publishers": 100, "permanent": False,
            "audiocodec": "opus", "videocodec": "vp8", "bitrate": 0,
            "notify_joining": False,
        })

    async def join(self, participant: Participant) -> None:
        if not participant.sends:
            return
        peer = Peer(participant.index, controlling=True, measure=participant.measure)
        participant.send_peer = peer
        await peer.open(self.host)
        handle = await self.api.attach()
        event = await self.api.message(
            handle,
            {"request": "joinandconfigure", "ptype": "publisher", "room": self.room,
             "display": f"loadgen{participant.index}", "audio": True, "video": True},
            {"type": "offer", "sdp": peer.offer(participant.sections, with_candidate=True)},
        )
        self.feeds[participant.index] = int(event["plugindata"]["data"]["id"])
        answer = await self._with_address(handle, parse_answer(event["jsep"]["sdp"]))
        await _connect(peer, answer, participant, receiving=False)
        await self.api.webrtc_up(handle)

    async def subscribe(self, participants: list[Participant]) -> None:
        """Each participant subscribes once, to every publisher there is by then: add
        every sender before the first subscribe (LoadRun.add(subscribe=False))."""
        late = [i for i in self.feeds if i not in self.feeds_at_first_subscribe]
        if self.subscribed and late:
            raise RuntimeError("senders joined after the first subscriptions; this driver "
                               "does not renegotiate them")
        if not self.subscribed:
            self.feeds_at_first_subscribe = set(self.feeds)
        pending = [p for p in participants if p.index not in self.subscribed]
        for start in range(0, len(pending), 20):
            await asyncio.gather(*(self._subscribe(p) for p in pending[start : start + 20]))

    async def _subscribe(self, participant: Participant) -> None:
        feeds = [feed for index, feed in self.feeds.items() if index != participant.index]
        if not feeds:
            return
        peer = Peer(participant.index, controlling=False, measure=participant.measure)
        participant.recv_peer = peer
        await peer.open(self.host)
        handle = await self.api.attach()
        event = await self.api.message(handle, {
            "request": "join", "ptype": "subscriber", "room": self.room,
            "streams": [{"feed": feed} for feed in feeds],
        })
        offer = event["jsep"]["sdp"]
        answer = await self._with_address(handle, parse_answer(offer))
        await self.api.message(handle, {"request": "start"},
                               {"type": "answer", "sdp": peer.answer_receiving(offer)})
        await _connect(peer, answer, participant, receiving=True)
        self.subscribed.add(participant.index)

    async def _with_address(self, handle: int, answer: Answer, timeout: float = 10) -> Answer:
        """Janus may trickle its candidates rather than put them in the SDP."""
        async with asyncio.timeout(timeout):
            while answer.address is None:
                for candidate in self.api.trickled.get(handle, []):
                    address = candidate_address(candidate.removeprefix("a="))
                    if address is not None:
                        return Answer(answer.ufrag, answer.pwd, answer.fingerprint, address,
                                      answer.ssrcs, answer.setup)
                await asyncio.sleep(0.05)
        return answer

    async def close(self) -> None:
        await self.api.close()
