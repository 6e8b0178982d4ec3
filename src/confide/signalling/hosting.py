"""The lobby and host actions of the signalling hub: who waits, who is let in,
and what the server does for each signed host action (rooms.moderation checks
them). Mixed into `Hub`, whose sessions and messaging it uses."""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..config import Settings
from ..rooms.meeting import Directory, Meeting, MeetingError
from ..rooms.moderation import POLICY_KINDS, ModerationError, parse_host_action
from .messages import HostActionMessage, parse_base64url
from .session import BLOCKING_ACTIONS, CLOSE_REFUSED, Session

logger = logging.getLogger(__name__)


class HostPowers:
    """What `Hub` provides, declared for the type checker."""

    settings: Settings
    directory: Directory
    sessions: dict[str, dict[str, Session]]
    lobbies: dict[str, dict[str, Session]]
    counters: Counter[str]
    on_meeting_ended: Callable[[str], None]
    on_meeting_changed: Callable[[Meeting], None]

    async def _send(self, session: Session, message: dict[str, Any]) -> None:
        raise NotImplementedError

    async def _broadcast(
        self, meeting_id: str, message: dict[str, Any], exclude: str | None
    ) -> None:
        raise NotImplementedError

    async def _admit(self, session: Session, meeting: Meeting, profile: str, host: bool) -> None:
        raise NotImplementedError

    async def _depart(self, session: Session, reason: str) -> None:
        raise NotImplementedError

    async def _wait_in_lobby(self, session: Session, meeting: Meeting, profile: str) -> None:
        lobby = self.lobbies.setdefault(meeting.id, {})
        if len(lobby) >= self.settings.max_participants:
            raise MeetingError("meeting-full", "the lobby is full")
        session.meeting, session.profile = meeting, profile
        session.lobby_id = secrets.token_hex(8)
        lobby[session.lobby_id] = session
        logger.info("knocked meeting=%s waiting=%d", meeting.id, len(lobby))
        await self._tell_lobby(meeting)
        await self._tell_hosts(meeting, {"type": "knock", "id": session.lobby_id,
                                         "profile": profile})

    async def _tell_lobby(self, meeting: Meeting) -> None:
        """Each waiting person learns where they stand and whether a host is here."""
        for position, waiting in enumerate(self.lobbies.get(meeting.id, {}).values(), start=1):
            await self._send(waiting, {"type": "lobby", "position": position,
                                       "host_here": meeting.moderation.host_here})

    async def _tell_hosts(self, meeting: Meeting, message: dict[str, Any]) -> None:
        for participant_id, member in list(self.sessions.get(meeting.id, {}).items()):
            if meeting.moderation.is_host(participant_id):
                await self._send(member, message)

    async def _host_action(self, session: Session, message: HostActionMessage) -> None:
        """Check a signed host action, do it, and relay it so every client checks it."""
        assert session.meeting is not None and session.participant is not None
        meeting, moderation = session.meeting, session.meeting.moderation
        action = parse_host_action(message.action)
        target = action.target
        members = self.sessions.get(meeting.id, {})
        waiting = self.lobbies.get(meeting.id, {})
        if action.kind == "deny" and target not in waiting or (
                action.kind == "admit" and target not in waiting and target not in members):
            raise ModerationError("unknown-participant", "nobody with that id is waiting")
        if action.kind in BLOCKING_ACTIONS or action.kind in (
                "remove", "allow-unmute", "cohost", "revoke-cohost"):
            if target not in members:
                raise ModerationError("unknown-participant", "nobody with that id is here")
        moderation.authorize(action, message.signature, int(time.time() * 1000))
        signed: dict[str, Any] = {
            "action": message.action,
            "signature": base64.urlsafe_b64encode(message.signature).decode().rstrip("=")}
        if action.signer in moderation.delegations:
            # Whoever checks it later (a pass, a policy) needs the host's word for the co-host.
            signed["delegation"] = moderation.delegations[action.signer]
        moderation.apply(action, signed)
        self.counters[f"host_action_{action.kind}"] += 1
        logger.info("host action meeting=%s kind=%s", meeting.id, action.kind)
        await self._broadcast(meeting.id, {
            "type": "host-action", "from": session.participant.id, **signed}, exclude=None)
        await self._carry_out(meeting, action.kind, target, action.params, signed)
        if action.kind in POLICY_KINDS or action.kind == "remove":
            self.on_meeting_changed(meeting)  # the store keeps the signed policy and revocations

    async def _carry_out(
        self, meeting: Meeting, kind: str, target: str | None, params: dict[str, Any] | None = None,
        signed: dict[str, Any] | None = None,
    ) -> None:
        """What the server does for an action that moves people, media or keys. The
        people it sends away get the signed action with the notice, so that their
        page can say it was the host (and not only the server) who did it."""
        signed = signed or {}
        params = params or {}
        members = self.sessions.get(meeting.id, {})
        waiting = self.lobbies.get(meeting.id, {})
        if kind == "admit" and target in members:
            # A pass for someone already here (let in while the lobby was off).
            member = members[target]
            member.admission = signed or None
            if member.participant is not None:
                member.participant.admission = member.admission
        elif kind == "admit" and target is not None:
            guest = waiting.pop(target)
            # The signed admit is their pass: they show it to come back (rooms.admission).
            # Let in when the lobby was turned off, they have none.
            guest.admission = signed or None
            await self._tell_hosts(meeting, {"type": "knock-gone", "id": target})
            await self._admit(guest, meeting, guest.profile, False)
            await self._tell_lobby(meeting)
        elif kind == "deny" and target is not None:
            guest = waiting.pop(target)
            guest.lobby_id = None
            await self._tell_hosts(meeting, {"type": "knock-gone", "id": target})
            await self._dismiss(guest, {"type": "error", "code": "denied", "fatal": True,
                                        "message": "the host did not let you in", **signed})
            await self._tell_lobby(meeting)
        elif kind == "remove" and target is not None:
            removed = members[target]
            await self._dismiss(removed, {"type": "error", "code": "removed", "fatal": True,
                                          "message": "the host removed you from the meeting",
                                          **signed})
            await self._depart(removed, "removed")
        elif kind in BLOCKING_ACTIONS and target is not None:
            endpoint = members[target].endpoint
            if endpoint is not None:
                endpoint.blocked.add(BLOCKING_ACTIONS[kind])
        elif kind == "allow-unmute" and target is not None:
            endpoint = members[target].endpoint
            if endpoint is not None:
                endpoint.blocked.clear()
        elif kind == "lobby" and not meeting.moderation.lobby:
            for lobby_id in list(waiting):
                await self._carry_out(meeting, "admit", lobby_id)
        elif kind == "end":
            await self._end(meeting, signed)
        elif kind == "rekey-link":
            # The old link stops working: only the new join key admits from now on.
            meeting.join_key = parse_base64url("join_key", str(params["join_key"]), 32)
            self.on_meeting_changed(meeting)

    async def _dismiss(self, session: Session, last_message: dict[str, Any]) -> None:
        """Tell someone why, then close their socket without waiting here: the close
        handshake is read by their own session, not by the one acting on them."""
        await self._send(session, last_message)
        session.closed = True
        reason = str(last_message.get("code", last_message["type"])).encode()
        session.outbox.close_after_sending(CLOSE_REFUSED, reason)

    async def _end(self, meeting: Meeting, signed: dict[str, Any]) -> None:
        everyone = [*self.sessions.get(meeting.id, {}).values(),
                    *self.lobbies.pop(meeting.id, {}).values()]
        for member in everyone:
            member.lobby_id = None
            await self._dismiss(member, {"type": "ended", "message": "the host ended the meeting",
                                         **signed})
        for member in everyone:
            await self._depart(member, "ended")
        self.directory.meetings.pop(meeting.id, None)
        self.on_meeting_ended(meeting.id)
        logger.info("ended meeting=%s", meeting.id)
