"""Meetings and who is in them: pure state, no I/O, time passed in as `now`.

The server keeps only what docs/design.md, 'What the server stores', allows: the meeting
id, the public join key (whose private half only holders of the link can derive), and
timestamps. A participant's profile (keys and encrypted name) is opaque to the server
and lives only while that participant is connected.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .moderation import Moderation

MEETING_ID_BYTES = 16
UNCLAIMED_MEETING_LIFETIME = 600.0
"""Seconds a meeting without a registered join key is kept."""


def new_meeting_id() -> str:
    """128 random bits, base32 without padding, lower case: 26 characters."""
    raw = base64.b32encode(secrets.token_bytes(MEETING_ID_BYTES)).decode("ascii")
    return raw.rstrip("=").lower()


def is_meeting_id(value: str) -> bool:
    return len(value) == 26 and all(c in "abcdefghijklmnopqrstuvwxyz234567" for c in value)


def host_challenge(meeting_id: str, nonce: bytes) -> bytes:
    """What the host key signs to take the host role on this connection."""
    return b"confide/1 host|" + meeting_id.encode("ascii") + b"|" + nonce


def join_challenge(meeting_id: str, nonce: bytes) -> bytes:
    """What a joining browser signs with the join key: bound to this meeting and to
    a nonce the server chose for this connection, so a proof cannot be replayed."""
    return b"confide/1 join|" + meeting_id.encode("ascii") + b"|" + nonce


class MeetingError(Exception):
    """A request the meeting state refuses; `code` is the protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class MediaState:
    audio: bool = False
    camera: bool = False
    screen: bool = False


@dataclass
class Participant:
    id: str
    profile: str
    """Opaque to the server: relayed to the others, never read, logged or stored."""
    media: MediaState = field(default_factory=MediaState)
    admission: dict[str, Any] | None = None
    """Their admission pass as it travels (rooms.admission): the host's signature,
    relayed so that every client checks it; None for people let in with the lobby off."""


@dataclass
class Meeting:
    id: str
    created_at: float
    last_used_at: float
    join_key: bytes | None = None
    """Ed25519 public join key; None until the creator registers it."""
    participants: dict[str, Participant] = field(default_factory=dict)
    moderation: Moderation = field(init=False)
    """The host key and the policy host actions set (rooms.moderation)."""

    def __post_init__(self) -> None:
        self.moderation = Moderation(meeting_id=self.id)

    @property
    def host_key(self) -> bytes | None:
        return self.moderation.host_key

    def is_host_proof(self, nonce: bytes, proof: bytes | None) -> bool:
        """Whether this connection proved the host key (or did not try)."""
        if proof is None or self.host_key is None:
            return False
        try:
            key = Ed25519PublicKey.from_public_bytes(self.host_key)
            key.verify(proof, host_challenge(self.id, nonce))
        except (InvalidSignature, ValueError):
            raise MeetingError("bad-host-proof", "that is not this meeting's host key") from None
        return True

    def check_proof(self, nonce: bytes, proof: bytes) -> None:
        """Accept a signature over the join challenge by the meeting's join key."""
        try:
            if self.join_key is None:
                raise InvalidSignature
            key = Ed25519PublicKey.from_public_bytes(self.join_key)
            key.verify(proof, join_challenge(self.id, nonce))
        except (InvalidSignature, ValueError):
            raise MeetingError("bad-token", "the link is not valid for this meeting") from None

    def join(self, profile: str, now: float, max_participants: int) -> Participant:
        if len(self.participants) >= max_participants:
            raise MeetingError("meeting-full", "the meeting is full")
        participant = Participant(id=secrets.token_hex(8), profile=profile)
        self.participants[participant.id] = participant
        self.last_used_at = now
        return participant

    def leave(self, participant_id: str, now: float) -> Participant | None:
        self.last_used_at = now
        return self.participants.pop(participant_id, None)


class Directory:
    """All meetings this server knows, keyed by id."""

    def __init__(self, meeting_lifetime: float) -> None:
        self.meeting_lifetime = meeting_lifetime
        """Seconds after its last use that an empty meeting is forgotten."""
        self.meetings: dict[str, Meeting] = {}

    def create(self, now: float) -> Meeting:
        meeting = Meeting(id=new_meeting_id(), created_at=now, last_used_at=now)
        self.meetings[meeting.id] = meeting
        return meeting

    def restore(
        self,
        meeting_id: str,
        join_key: bytes | None,
        created_at: float,
        last_used_at: float,
        host_key: bytes | None = None,
        signed_state: str | None = None,
    ) -> Meeting:
        """Take back a meeting kept across a restart (rooms.store): it comes back empty,
        with the policy and revocations the host signed."""
        meeting = Meeting(
            id=meeting_id, created_at=created_at, last_used_at=last_used_at, join_key=join_key
        )
        meeting.moderation.host_key = host_key
        if signed_state is not None:
            meeting.moderation.restore_signed_state(signed_state)
        self.meetings[meeting.id] = meeting
        return meeting

    def get(self, meeting_id: str) -> Meeting:
        meeting = self.meetings.get(meeting_id)
        if meeting is None:
            raise MeetingError("meeting-not-found", "this meeting does not exist or has expired")
        return meeting

    def register_join_key(
        self, meeting_id: str, join_key: bytes, now: float, host_key: bytes | None = None
    ) -> None:
        """The creator's keys: the public join key and, for a meeting with a host,
        the host's public key, which then signs every host action."""
        meeting = self.get(meeting_id)
        if meeting.join_key is not None:
            raise MeetingError("already-registered", "this meeting already has a join key")
        meeting.join_key = join_key
        meeting.moderation.host_key = host_key
        meeting.last_used_at = now

    def expire(self, now: float) -> list[str]:
        """Forget empty meetings past their lifetime; returns the ids removed."""
        expired = [
            meeting.id
            for meeting in self.meetings.values()
            if not meeting.participants
            and now - meeting.last_used_at
            > (self.meeting_lifetime if meeting.join_key else UNCLAIMED_MEETING_LIFETIME)
        ]
        for meeting_id in expired:
            del self.meetings[meeting_id]
        return expired
