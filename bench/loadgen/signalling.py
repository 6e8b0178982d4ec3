"""A Confide signalling client (docs/protocol.md): create a meeting, join with the
link's join key, offer, and offer again whenever the receivable streams change."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from confide.e2ee.link import derive_join_key, join_key_public
from confide.rooms.meeting import join_challenge

from .peer import Answer, Section, parse_answer


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Meeting:
    meeting_id: str
    link_secret: bytes


async def create_meeting(http: aiohttp.ClientSession, base_url: str) -> Meeting:
    """A meeting with a join key and no host key: no host, no lobby."""
    async with http.post(f"{base_url}/api/meetings") as reply:
        reply.raise_for_status()
        meeting_id = (await reply.json())["meeting_id"]
    link_secret = secrets.token_bytes(32)
    public = join_key_public(derive_join_key(link_secret, meeting_id))
    async with http.put(f"{base_url}/api/meetings/{meeting_id}/join-key",
                        json={"join_key": b64url(public)}) as reply:
        reply.raise_for_status()
    return Meeting(meeting_id, link_secret)


@dataclass
class RecvSlot:
    mid: str
    kind: str
    """'audio' or 'video'."""
    stream: str | None


class Signalling:
    """One participant's WebSocket. `offer_for(sections)` makes the SDP; each answer
    is handed to `on_answer`."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, meeting: Meeting,
                 send: list[Section], offer_for: Callable[[list[Section]], str],
                 on_answer: Callable[[Answer], None]) -> None:
        self.http = http
        self.url = base_url.replace("http", "ws", 1) + "/ws"
        self.meeting = meeting
        self.send_sections = send
        self.offer_for = offer_for
        self.on_answer = on_answer
        self.you = ""
        self.streams: list[dict[str, Any]] = []
        self.slots: list[RecvSlot] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.answered = asyncio.Event()
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def join(self) -> None:
        self.ws = await self.http.ws_connect(self.url, max_msg_size=1 << 20)
        challenge = await self.ws.receive_json()
        assert challenge["type"] == "challenge", challenge
        key = derive_join_key(self.meeting.link_secret, self.meeting.meeting_id)
        proof = key.sign(join_challenge(self.meeting.meeting_id, b64url_decode(challenge["nonce"])))
        await self.ws.send_json({"type": "hello", "version": 1, "meeting": self.meeting.meeting_id,
                                 "proof": b64url(proof), "profile": "loadgen"})
        welcome = await self.ws.receive_json()
        if welcome["type"] != "welcome":
            raise RuntimeError(f"not welcomed: {welcome}")
        self.you = welcome["you"]
        self.streams = welcome["streams"]
        self._dirty.set()
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._negotiate())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.send_json({"type": "leave"})
            await self.ws.close()

    def stream_of(self, mid: str) -> str | None:
        return next((s.stream for s in self.slots if s.mid == mid), None)

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if data["type"] == "streams":
                self.streams = data["streams"]
                self._dirty.set()
            elif data["type"] == "answer":
                self.on_answer(parse_answer(data["sdp"]))
                self.answered.set()
            elif data["type"] == "error":
                raise RuntimeError(f"server error: {data}")

    def _reconcile(self) -> None:
        """One receive slot per stream; a slot whose stream went away is reused."""
        wanted = {s["id"]: s["kind"] for s in self.streams if s["participant"] != self.you}
        for slot in self.slots:
            if slot.stream not in wanted:
                slot.stream = None
        taken = {slot.stream for slot in self.slots}
        for stream_id, kind in wanted.items():
            if stream_id in taken:
                continue
            media = "audio" if kind == "audio" else "video"
            free = next((s for s in self.slots if s.stream is None and s.kind == media), None)
            if free is None:
                free = RecvSlot(f"r{len(self.slots)}", media, None)
                self.slots.append(free)
            free.stream = stream_id

    async def _negotiate(self) -> None:
        """One offer at a time; changes during a round trip make one more offer."""
        assert self.ws is not None
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            self._reconcile()
            sections = self.send_sections + [Section(s.mid, s.kind) for s in self.slots]
            mids: dict[str, dict[str, str | None]] = {}
            for section in self.send_sections:
                mids[section.mid] = {"send": "audio" if section.kind == "audio" else "camera"}
            for slot in self.slots:
                mids[slot.mid] = {"recv": slot.stream}
            self.answered.clear()
            await self.ws.send_json({"type": "offer", "sdp": self.offer_for(sections),
                                     "mids": mids})
            await self.answered.wait()
