"""Signalling: one WebSocket session per participant, tied to rooms and the SFU.

Each session parses its client's messages (signalling.messages), changes the
meeting state (rooms), asks the SFU for SDP answers, and tells the others. Bad
input gets an error reply to its sender only. Logs carry meeting ids and counts,
never profiles or chat.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..config import Settings
from ..rooms.meeting import Directory, Meeting, MeetingError, Participant
from ..sfu.endpoint import Endpoint
from ..sfu.sfu import Sfu
from .messages import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Chat,
    Hello,
    Leave,
    Media,
    Offer,
    Ping,
    Relay,
    RemoteProtocolError,
    parse_client_message,
)

logger = logging.getLogger(__name__)

MAX_INVALID_IN_A_ROW = 5
CLOSE_PROTOCOL_ERROR = 4400
CLOSE_REFUSED = 4403
CLOSE_GONE = 4410
TURN_CREDENTIAL_LIFETIME = 12 * 3600
"""Seconds a TURN credential handed out in `welcome` stays valid."""


@dataclass(eq=False)
class Session:
    socket: web.WebSocketResponse
    meeting: Meeting | None = None
    participant: Participant | None = None
    endpoint: Endpoint | None = None
    invalid_in_a_row: int = 0
    closed: bool = False
    nonce: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    """The join challenge's nonce for this connection."""


def participant_json(participant: Participant) -> dict[str, Any]:
    media = participant.media
    return {
        "id": participant.id,
        "profile": participant.profile,
        "media": {"audio": media.audio, "camera": media.camera, "screen": media.screen},
    }


def turn_credentials(secret: str, now: float) -> tuple[str, str]:
    """A TURN user name and password in coturn's `use-auth-secret` scheme (the TURN
    REST API): the name is the expiry time, the password base64(HMAC-SHA1(secret,
    name)), so coturn checks them with the shared secret and no user database."""
    username = f"{int(now) + TURN_CREDENTIAL_LIFETIME}:confide"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers(settings: Settings, now: float) -> list[dict[str, Any]]:
    """The operator's own TURN servers for RTCPeerConnection, or none: browsers are
    never pointed at anyone else's STUN or TURN server."""
    if not settings.turn_urls or settings.turn_secret is None:
        return []
    username, credential = turn_credentials(settings.turn_secret, now)
    return [{"urls": list(settings.turn_urls), "username": username, "credential": credential}]


@dataclass
class Hub:
    settings: Settings
    directory: Directory
    sfu: Sfu
    sessions: dict[str, dict[str, Session]] = field(default_factory=dict)
    """Joined sessions by meeting id, then participant id."""
    counters: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.sfu.on_endpoint_lost = self._endpoint_lost

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(heartbeat=5.0, max_msg_size=MAX_MESSAGE_BYTES)
        await socket.prepare(request)
        session = Session(socket=socket)
        await self._send(session, {
            "type": "challenge",
            "nonce": base64.urlsafe_b64encode(session.nonce).decode("ascii").rstrip("="),
        })
        try:
            async for frame in socket:
                if frame.type != WSMsgType.TEXT:
                    await self._refuse(session, RemoteProtocolError(
                        "bad-message", "frames must be JSON text", fatal=True))
                    break
                await self._receive(session, frame.data)
                if session.closed:
                    break
        finally:
            await self._depart(session, "left")
        return socket

    async def _receive(self, session: Session, text: str) -> None:
        try:
            message = parse_client_message(text)
            await self._handle(session, message)
            session.invalid_in_a_row = 0
        except RemoteProtocolError as error:
            await self._refuse(session, error)
        except MeetingError as error:
            fatal = error.code in ("meeting-not-found", "bad-token", "meeting-full")
            await self._refuse(session, RemoteProtocolError(error.code, error.message, fatal))
        except Exception:
            # Our bug, not theirs: tell this client, keep everyone else's meeting going.
            logger.exception("failed to handle a signalling message")
            await self._refuse(session, RemoteProtocolError(
                "internal-error", "the server could not handle that message"))

    async def _refuse(self, session: Session, error: RemoteProtocolError) -> None:
        self.counters[f"refused_{error.code}"] += 1
        session.invalid_in_a_row += 1
        await self._send(session, {
            "type": "error", "code": error.code, "message": error.message, "fatal": error.fatal,
        })
        if error.fatal or session.invalid_in_a_row > MAX_INVALID_IN_A_ROW:
            code = CLOSE_REFUSED if error.fatal else CLOSE_PROTOCOL_ERROR
            await session.socket.close(code=code, message=error.code.encode())
            session.closed = True

    async def _handle(self, session: Session, message: object) -> None:
        if isinstance(message, Hello):
            await self._hello(session, message)
            return
        if session.participant is None or session.meeting is None or session.endpoint is None:
            raise RemoteProtocolError("not-joined", "send hello first")
        if isinstance(message, Offer):
            await self._offer(session, message)
        elif isinstance(message, Media):
            media = session.participant.media
            media.audio, media.camera, media.screen = message.audio, message.camera, message.screen
            await self._broadcast(session.meeting.id, {
                "type": "media", "id": session.participant.id,
                "audio": media.audio, "camera": media.camera, "screen": media.screen,
            }, exclude=session.participant.id)
        elif isinstance(message, Chat):
            self.counters["chat_relayed"] += 1
            await self._broadcast(session.meeting.id, {
                "type": "chat", "from": session.participant.id, "body": message.body,
                "time": int(time.time() * 1000),
            }, exclude=session.participant.id)
        elif isinstance(message, Relay):
            target = self.sessions.get(session.meeting.id, {}).get(message.to)
            if target is None or message.to == session.participant.id:
                raise RemoteProtocolError("unknown-participant", "nobody with that id is here")
            self.counters["relayed"] += 1
            await self._send(target, {
                "type": "relay", "from": session.participant.id, "body": message.body,
            })
        elif isinstance(message, Ping):
            await self._send(session, {"type": "pong"})
        elif isinstance(message, Leave):
            session.closed = True

    async def _hello(self, session: Session, hello: Hello) -> None:
        if session.participant is not None:
            raise RemoteProtocolError("bad-message", "already joined")
        meeting = self.directory.get(hello.meeting)
        meeting.check_proof(session.nonce, hello.proof)
        participant = meeting.join(hello.profile, time.time(), self.settings.max_participants)
        session.meeting, session.participant = meeting, participant
        session.endpoint = self.sfu.add_endpoint(participant.id, meeting.id)
        others = self.sessions.setdefault(meeting.id, {})
        await self._send(session, {
            "type": "welcome",
            "version": PROTOCOL_VERSION,
            "you": participant.id,
            "participants": [
                participant_json(s.participant) for s in others.values() if s.participant
            ],
            "streams": self._streams_for(meeting.id, participant.id),
            "ice_servers": ice_servers(self.settings, time.time()),
        })
        others[participant.id] = session
        logger.info("joined meeting=%s participants=%d", meeting.id, len(meeting.participants))
        await self._broadcast(meeting.id, {
            "type": "joined", "participant": participant_json(participant),
        }, exclude=participant.id)

    async def _offer(self, session: Session, offer: Offer) -> None:
        assert session.endpoint is not None and session.meeting is not None
        roles: dict[str, tuple[str, str | None]] = {
            mid: ("send", role.send) if role.send else ("recv", role.recv)
            for mid, role in offer.mids.items()
        }
        now = asyncio.get_running_loop().time()
        try:
            answer, changed = self.sfu.negotiate(session.endpoint, offer.sdp, roles, now)
        except ValueError as exc:
            raise RemoteProtocolError("bad-sdp", str(exc)) from exc
        await self._send(session, {"type": "answer", "sdp": answer})
        if changed:
            await self._announce_streams(session.meeting.id)

    def _streams_for(self, meeting_id: str, participant_id: str) -> list[dict[str, str]]:
        return [
            {"id": s.id, "participant": s.publisher.participant_id, "kind": s.kind}
            for s in self.sfu.meeting_streams(meeting_id)
            if s.publisher.participant_id != participant_id
        ]

    async def _announce_streams(self, meeting_id: str) -> None:
        for participant_id, session in list(self.sessions.get(meeting_id, {}).items()):
            await self._send(session, {
                "type": "streams", "streams": self._streams_for(meeting_id, participant_id),
            })

    async def _send(self, session: Session, message: dict[str, Any]) -> None:
        if session.socket.closed:
            return
        try:
            await session.socket.send_json(message)
        except (ConnectionError, RuntimeError):
            # The other end is gone; its own handler cleans up.
            pass

    async def _broadcast(self, meeting_id: str, message: dict[str, Any], exclude: str) -> None:
        for participant_id, session in list(self.sessions.get(meeting_id, {}).items()):
            if participant_id != exclude:
                await self._send(session, message)

    def _endpoint_lost(self, endpoint: Endpoint, reason: str) -> None:
        session = self.sessions.get(endpoint.meeting_id, {}).get(endpoint.participant_id)
        if session is not None and not session.closed:
            session.closed = True
            asyncio.get_running_loop().create_task(self._drop(session, reason))

    async def _drop(self, session: Session, reason: str) -> None:
        await self._depart(session, reason)
        await session.socket.close(code=CLOSE_GONE, message=reason.encode())

    async def _depart(self, session: Session, reason: str) -> None:
        """Take a participant out of its meeting, once, and tell the others."""
        participant, meeting, endpoint = session.participant, session.meeting, session.endpoint
        session.participant = None
        if participant is None or meeting is None or endpoint is None:
            return
        meeting.leave(participant.id, time.time())
        members = self.sessions.get(meeting.id, {})
        members.pop(participant.id, None)
        if not members:
            self.sessions.pop(meeting.id, None)
        had_streams = self.sfu.remove_endpoint(endpoint)
        logger.info("left meeting=%s participants=%d reason=%s",
                    meeting.id, len(meeting.participants), reason)
        await self._broadcast(meeting.id, {"type": "left", "id": participant.id, "reason": reason},
                              exclude=participant.id)
        if had_streams:
            await self._announce_streams(meeting.id)

    async def close_all(self) -> None:
        for members in list(self.sessions.values()):
            for session in list(members.values()):
                await session.socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
