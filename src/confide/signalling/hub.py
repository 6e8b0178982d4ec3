"""Signalling: one WebSocket session per participant, tied to rooms and the SFU.

Each session parses its client's messages (signalling.messages), changes the
meeting state (rooms), asks the SFU for SDP answers, and tells the others. Bad
input gets an error reply to its sender only. Logs carry meeting ids and counts,
never profiles or chat.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..config import Settings
from ..limits import RateLimiter, address_key
from ..rooms.admission import check_identity_proof, check_pass
from ..rooms.meeting import Directory, Meeting, MeetingError
from ..rooms.moderation import ModerationError
from ..sfu.endpoint import Endpoint
from ..sfu.sfu import Sfu
from .hosting import HostPowers
from .messages import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Chat,
    Hello,
    HostActionMessage,
    Leave,
    Media,
    Offer,
    Ping,
    ProfileUpdate,
    Relay,
    RemoteProtocolError,
    View,
    parse_client_message,
)
from .outbox import Outbox
from .session import (
    ADDRESS_BYTES_BURST,
    ADDRESS_BYTES_RATE,
    ADDRESS_LOOP_SHARE,
    ADDRESS_LOOP_SHARE_BURST,
    CLOSE_GONE,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_RATE_LIMITED,
    CLOSE_REFUSED,
    CLOSE_TOO_SLOW,
    FATAL_CODES,
    HELLO_TIMEOUT,
    MAX_INVALID_IN_A_ROW,
    Session,
    participant_json,
    pass_json,
    policy_json,
)
from .turn import ice_servers

logger = logging.getLogger(__name__)

WEBSOCKET_HEARTBEAT = 20.0
"""Seconds between the server's WebSocket pings; a pong must come within half of it,
else the connection counts as dead. Generous: a phone or a busy machine can be slow
to answer for a few seconds, and dropping it makes the person rejoin (a new id, keys
sent again to everyone). A dead connection's media times out on its own."""

@dataclass
class Hub(HostPowers):
    settings: Settings
    directory: Directory
    sfu: Sfu
    sessions: dict[str, dict[str, Session]] = field(default_factory=dict)
    """Joined sessions by meeting id, then participant id."""
    lobbies: dict[str, dict[str, Session]] = field(default_factory=dict)
    """Sessions waiting to be let in, by meeting id, then lobby id, in arrival order."""
    counters: Counter[str] = field(default_factory=Counter)
    joins_by_address: RateLimiter = field(init=False)
    joins_by_meeting: RateLimiter = field(init=False)
    bytes_by_address: RateLimiter = field(
        default_factory=lambda: RateLimiter(ADDRESS_BYTES_RATE, ADDRESS_BYTES_BURST))
    loop_time_by_address: RateLimiter = field(
        default_factory=lambda: RateLimiter(ADDRESS_LOOP_SHARE, ADDRESS_LOOP_SHARE_BURST))
    open_sessions: set[Session] = field(default_factory=set)
    """Every open WebSocket's session, joined or not: all are closed on shutdown."""
    sockets_by_address: Counter[str] = field(default_factory=Counter)
    """Open WebSockets per client address, for the cap; an address leaves with its last."""
    on_meeting_ended: Callable[[str], None] = lambda meeting_id: None
    """Called when a host ends a meeting, to erase it from the store too."""
    on_meeting_changed: Callable[[Meeting], None] = lambda meeting: None
    """Called when a host changes what the store keeps (a new join key)."""

    def __post_init__(self) -> None:
        self.sfu.on_endpoint_lost = self._endpoint_lost
        self.sfu.on_endpoint_interrupted = self._endpoint_interrupted
        settings = self.settings
        self.joins_by_address = RateLimiter(
            settings.join_rate_per_address, settings.join_burst_per_address)
        self.joins_by_meeting = RateLimiter(
            settings.join_rate_per_meeting, settings.join_burst_per_meeting)

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        address = address_key(request.remote or "")
        if self.sockets_by_address[address] >= self.settings.sockets_per_address:
            self.counters["sockets_refused"] += 1
            raise web.HTTPTooManyRequests(text="too many connections from your address")
        socket = web.WebSocketResponse(
            heartbeat=WEBSOCKET_HEARTBEAT, max_msg_size=MAX_MESSAGE_BYTES)
        await socket.prepare(request)
        self.sockets_by_address[address] += 1
        try:
            session = Session(socket=socket, outbox=Outbox(socket), address_key=address)
            self.open_sessions.add(session)
            try:
                await self._serve(session)
            finally:
                self.open_sessions.discard(session)
        finally:
            self.sockets_by_address[address] -= 1
            if not self.sockets_by_address[address]:
                del self.sockets_by_address[address]
        return socket

    async def _serve(self, session: Session) -> None:
        socket = session.socket
        overdue = asyncio.get_running_loop().call_later(
            HELLO_TIMEOUT, self._hello_overdue, session)
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
                now, size = time.monotonic(), len(frame.data)
                if not (session.messages.take(now) and session.message_bytes.take(now, size)
                        and self.bytes_by_address.allow(session.address_key, now, size)):
                    self.counters["message_rate_limited"] += 1
                    await self._refuse(session, RemoteProtocolError(
                        "rate-limited", "too many messages: the connection was closed", fatal=True))
                    break
                if not (session.loop_time.take(now, 0)
                        and self.loop_time_by_address.allow(session.address_key, now, 0)):
                    self.counters["loop_share_exceeded"] += 1
                    await self._refuse(session, RemoteProtocolError(
                        "rate-limited", "your messages took more of the server's time than one"
                        " participant may: the connection was closed", fatal=True))
                    break
                started = time.thread_time()
                await self._receive(session, frame.data)
                # Charged after the fact: what a message costs is known once it is handled.
                spent = time.thread_time() - started
                session.loop_time.charge(now, spent)
                self.loop_time_by_address.charge(session.address_key, now, spent)
                if session.closed:
                    break
        finally:
            overdue.cancel()
            # A socket that closed without a goodbye (or stopped answering pings) is
            # a lost connection, not someone who chose to leave.
            await self._depart(session, "left" if session.said_goodbye else "disconnected")
            # A last error or goodbye still queued goes out before the handler ends.
            session.outbox.close_after_sending(WSCloseCode.OK, b"")
            await session.outbox.finished()

    def _hello_overdue(self, session: Session) -> None:
        """A socket that never said hello holds nothing but a slot: close it."""
        if session.closed or session.participant is not None or session.lobby_id is not None:
            return
        self.counters["hello_timeout"] += 1
        asyncio.get_running_loop().create_task(self._refuse(session, RemoteProtocolError(
            "hello-timeout", f"no hello within {HELLO_TIMEOUT:.0f} seconds", fatal=True)))

    async def _receive(self, session: Session, text: str) -> None:
        try:
            message = parse_client_message(text)
            await self._handle(session, message)
            session.invalid_in_a_row = 0
        except RemoteProtocolError as error:
            await self._refuse(session, error)
        except (MeetingError, ModerationError) as error:
            fatal = error.code in FATAL_CODES
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
            if error.code == "rate-limited":
                code = CLOSE_RATE_LIMITED
            session.outbox.close_after_sending(code, error.code.encode())
            session.closed = True

    async def _handle(self, session: Session, message: object) -> None:
        if isinstance(message, Hello):
            await self._hello(session, message)
            return
        if isinstance(message, Ping):
            await self._send(session, {"type": "pong"})
            return
        if isinstance(message, Leave):
            session.closed = session.said_goodbye = True
            return
        if session.participant is None or session.meeting is None or session.endpoint is None:
            waiting = "wait until the host lets you in" if session.lobby_id else "send hello first"
            raise RemoteProtocolError("not-joined", waiting)
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
            if not session.meeting.moderation.may_chat(session.participant.id):
                raise RemoteProtocolError("chat-off", "the host turned chat off")
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
        elif isinstance(message, HostActionMessage):
            await self._host_action(session, message)
        elif isinstance(message, View):
            self.sfu.set_view(session.endpoint, message.tiles)
            await self._tell_publishers_what_is_watched(session.meeting.id)
        elif isinstance(message, ProfileUpdate):
            session.participant.profile = message.profile
            await self._broadcast(session.meeting.id, {
                "type": "profile", "id": session.participant.id, "profile": message.profile,
            }, exclude=session.participant.id)

    async def _hello(self, session: Session, hello: Hello) -> None:
        if session.participant is not None or session.lobby_id is not None:
            raise RemoteProtocolError("bad-message", "already joined")
        now = time.monotonic()
        too_many = RemoteProtocolError(
            "rate-limited", "too many attempts to join: wait a minute", fatal=True)
        if not self.joins_by_address.allow(session.address_key, now):
            self.counters["join_rate_limited"] += 1
            raise too_many
        meeting = self.directory.get(hello.meeting)
        meeting.check_proof(session.nonce, hello.proof)
        # Only a proven join spends the meeting's budget: a stranger who knows the
        # meeting id alone cannot use it up and lock the invited out.
        if not self.joins_by_meeting.allow(hello.meeting, now):
            self.counters["join_rate_limited"] += 1
            raise too_many
        is_host = meeting.is_host_proof(session.nonce, hello.host_proof)
        moderation = meeting.moderation
        if moderation.ended:
            raise MeetingError("meeting-ended", "the host ended this meeting")
        if hello.identity is not None and hello.identity_proof is not None:
            check_identity_proof(meeting.id, session.nonce, hello.identity, hello.identity_proof)
            session.identity = hello.identity
            if hello.identity in moderation.blocked and not is_host:
                self.counters["blocked_refused"] += 1
                raise MeetingError("blocked", "the host removed and blocked you in this meeting")
        admitted = await self._check_pass(session, meeting, hello)
        if moderation.locked and not is_host and not admitted:
            raise MeetingError("meeting-locked", "the meeting is locked: nobody new can come in")
        if moderation.host_key is not None and moderation.lobby and not (is_host or admitted):
            await self._wait_in_lobby(session, meeting, hello.profile)
        else:
            await self._admit(session, meeting, hello.profile, is_host)

    async def _check_pass(self, session: Session, meeting: Meeting, hello: Hello) -> bool:
        """Whether hello carries a good pass (rooms.admission) for its proven identity:
        then this person is back without the lobby. A bad pass is told to its sender,
        who then knocks like anyone else."""
        moderation = meeting.moderation
        if hello.admission is None or moderation.host_key is None:
            return False
        try:
            if hello.identity is not None and hello.identity in moderation.revoked:
                self.counters["pass_revoked"] += 1
                raise ModerationError("pass-revoked", "the host removed you from this meeting")
            if hello.identity is None:
                raise ModerationError("bad-pass", "a pass needs the identity key it names")
            check_pass(hello.admission, meeting.id, moderation.host_key, hello.identity)
        except ModerationError as error:
            # Removed (not blocked), or a pass that does not hold: they may knock again.
            self.counters[f"refused_{error.code}"] += 1
            await self._send(session, {"type": "error", "code": error.code, "fatal": False,
                                       "message": f"{error.message}: you wait in the lobby"})
            return False
        self.counters["admitted_by_pass"] += 1
        session.admission = pass_json(hello.admission)
        return True

    async def _admit(self, session: Session, meeting: Meeting, profile: str, host: bool) -> None:
        participant = meeting.join(profile, time.time(), self.settings.max_participants)
        participant.admission = session.admission
        session.meeting, session.participant, session.lobby_id = meeting, participant, None
        session.endpoint = self.sfu.add_endpoint(participant.id, meeting.id)
        moderation = meeting.moderation
        if host:
            moderation.hosts_present.add(participant.id)
        moderation.arrived(participant.id, session.identity)
        others = self.sessions.setdefault(meeting.id, {})
        waiting = self.lobbies.get(meeting.id, {}) if host else {}
        await self._send(session, {
            "type": "welcome",
            "version": PROTOCOL_VERSION,
            "you": participant.id,
            "participants": [
                participant_json(other.participant, moderation)
                for other in others.values() if other.participant
            ],
            "streams": self._streams_for(meeting.id, participant.id),
            "ice_servers": ice_servers(self.settings, time.time()),
            "host": host,
            "policy": policy_json(moderation),
            "policy_signed": moderation.policy_signed,
            "cohosts": list(moderation.delegations.values()),
            "pass": session.admission,
            "lobby": [{"id": lobby_id, "profile": guest.profile}
                      for lobby_id, guest in waiting.items()],
        })
        others[participant.id] = session
        logger.info("joined meeting=%s participants=%d", meeting.id, len(meeting.participants))
        await self._broadcast(meeting.id, {
            "type": "joined", "participant": participant_json(participant, moderation),
        }, exclude=participant.id)
        if host:
            await self._tell_lobby(meeting)

    async def _offer(self, session: Session, offer: Offer) -> None:
        assert session.endpoint is not None and session.meeting is not None
        assert session.participant is not None
        roles: dict[str, tuple[str, str | None]] = {
            mid: ("send", role.send) if role.send else ("recv", role.recv)
            for mid, role in offer.mids.items()
        }
        now = time.monotonic()  # the SFU's clock (sfu/transport.py)
        moderation, participant_id = session.meeting.moderation, session.participant.id
        try:
            answer, changed = self.sfu.negotiate(
                session.endpoint, offer.sdp, roles, now,
                may_publish=lambda kind: kind != "screen"
                or moderation.may_share_screen(participant_id),
            )
        except ValueError as exc:
            raise RemoteProtocolError("bad-sdp", str(exc)) from exc
        await self._send(session, {"type": "answer", "sdp": answer})
        if "screen" in session.endpoint.refused:
            await self._send(session, {"type": "error", "code": "screen-share-not-allowed",
                                       "message": "only the host can share a screen here",
                                       "fatal": False})
        if changed:
            await self._announce_streams(session.meeting.id)
        await self._tell_publishers_what_is_watched(session.meeting.id)

    async def _tell_publishers_what_is_watched(self, meeting_id: str) -> None:
        """Each simulcast publisher hears which of its layers someone receives, when
        that changes: it pauses the others (a meeting of 100 does not upload 300)."""
        sessions = self.sessions.get(meeting_id, {})
        for source in self.sfu.simulcast_sources(meeting_id):
            demand = source.layer_demand()
            publisher = sessions.get(source.publisher.participant_id)
            if demand == source.demand_sent or publisher is None:
                continue
            source.demand_sent = demand
            await self._send(publisher, {"type": "layers", "kind": source.kind,
                                         "active": list(demand)})

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
        """Queue a message for one socket; never waits for the receiver to read it."""
        if session.socket.closed or session.closed:
            return
        if not session.outbox.put(json.dumps(message)):
            # This receiver stopped reading: let it go, not the meeting it holds back.
            self.counters["send_queue_overflow"] += 1
            session.closed = True
            asyncio.get_running_loop().create_task(self._drop(session, "too-slow"))

    async def _broadcast(
        self, meeting_id: str, message: dict[str, Any], exclude: str | None
    ) -> None:
        for participant_id, session in list(self.sessions.get(meeting_id, {}).items()):
            if participant_id != exclude:
                await self._send(session, message)

    def _endpoint_lost(self, endpoint: Endpoint, reason: str) -> None:
        session = self.sessions.get(endpoint.meeting_id, {}).get(endpoint.participant_id)
        if session is not None and not session.closed:
            session.closed = True
            asyncio.get_running_loop().create_task(self._drop(session, reason))

    def _endpoint_interrupted(self, endpoint: Endpoint, interrupted: bool) -> None:
        """Someone's media stopped (or is back): the others show them as reconnecting
        on their tile, not as gone, while the SFU keeps their place (Sfu.media_grace)."""
        session = self.sessions.get(endpoint.meeting_id, {}).get(endpoint.participant_id)
        if session is None or session.closed:
            return
        asyncio.get_running_loop().create_task(self._broadcast(endpoint.meeting_id, {
            "type": "connection", "id": endpoint.participant_id,
            "state": "interrupted" if interrupted else "ok",
        }, exclude=endpoint.participant_id))

    async def _drop(self, session: Session, reason: str) -> None:
        await self._depart(session, reason)
        code = CLOSE_TOO_SLOW if reason == "too-slow" else CLOSE_GONE
        await session.outbox.close_now(code, reason.encode())

    async def _depart(self, session: Session, reason: str) -> None:
        """Take a participant out of its meeting (or its lobby), once, and tell the others."""
        if session.lobby_id is not None and session.meeting is not None:
            self.lobbies.get(session.meeting.id, {}).pop(session.lobby_id, None)
            await self._tell_hosts(session.meeting, {"type": "knock-gone", "id": session.lobby_id})
            session.lobby_id = None
            await self._tell_lobby(session.meeting)
        participant, meeting, endpoint = session.participant, session.meeting, session.endpoint
        session.participant = None
        if participant is None or meeting is None or endpoint is None:
            return
        meeting.leave(participant.id, time.time())
        was_host = meeting.moderation.host_here
        meeting.moderation.forget(participant.id)
        members = self.sessions.get(meeting.id, {})
        members.pop(participant.id, None)
        if not members:
            self.sessions.pop(meeting.id, None)
        had_streams = self.sfu.remove_endpoint(endpoint)
        logger.info("left meeting=%s participants=%d reason=%s",
                    meeting.id, len(meeting.participants), reason)
        await self._tell_publishers_what_is_watched(meeting.id)
        await self._broadcast(meeting.id, {"type": "left", "id": participant.id, "reason": reason},
                              exclude=participant.id)
        if had_streams:
            await self._announce_streams(meeting.id)
        if was_host and not meeting.moderation.host_here:
            await self._tell_lobby(meeting)

    def forget_idle(self, now: float) -> None:
        """Drop rate-limit entries that have refilled: nothing of them is needed."""
        self.joins_by_address.forget_idle(now)
        self.joins_by_meeting.forget_idle(now)
        self.bytes_by_address.forget_idle(now)
        self.loop_time_by_address.forget_idle(now)

    async def close_all(self) -> None:
        """On shutdown: close every socket (joined, waiting, or not yet past hello) at
        once with 1012 "service restart", so that clients start reconnecting now; a
        stuck one cannot hold up the rest."""
        await asyncio.gather(*(session.outbox.close_now(WSCloseCode.SERVICE_RESTART,
                                                        b"server restarting")
                               for session in list(self.open_sessions)))
