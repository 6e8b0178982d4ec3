"""Meetings and who is in them: pure state, no I/O, time passed in as `now`.

The server keeps only what DESIGN.md section 4 allows: the meeting id, the hash of
the join token, and timestamps. A participant's profile (the display name) is
opaque to the server and lives only while that participant is connected.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

MEETING_ID_BYTES = 16
UNCLAIMED_MEETING_LIFETIME = 600.0
"""Seconds a meeting without a registered verifier is kept."""


def new_meeting_id() -> str:
    """128 random bits, base32 without padding, lower case: 26 characters."""
    raw = base64.b32encode(secrets.token_bytes(MEETING_ID_BYTES)).decode("ascii")
    return raw.rstrip("=").lower()


def is_meeting_id(value: str) -> bool:
    return len(value) == 26 and all(c in "abcdefghijklmnopqrstuvwxyz234567" for c in value)


def join_token_verifier(join_token: bytes) -> str:
    """What the server stores in place of the join token: SHA-256, hex."""
    return hashlib.sha256(join_token).hexdigest()


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


@dataclass
class Meeting:
    id: str
    created_at: float
    last_used_at: float
    verifier: str | None = None
    """SHA-256 of the join token, hex; None until the creator registers it."""
    participants: dict[str, Participant] = field(default_factory=dict)

    def check_token(self, join_token: bytes) -> None:
        if self.verifier is None or not hmac.compare_digest(
            self.verifier, join_token_verifier(join_token)
        ):
            raise MeetingError("bad-token", "the link is not valid for this meeting")

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

    def get(self, meeting_id: str) -> Meeting:
        meeting = self.meetings.get(meeting_id)
        if meeting is None:
            raise MeetingError("meeting-not-found", "this meeting does not exist or has expired")
        return meeting

    def register_verifier(self, meeting_id: str, verifier: str, now: float) -> None:
        meeting = self.get(meeting_id)
        if meeting.verifier is not None:
            raise MeetingError("already-registered", "this meeting already has a verifier")
        meeting.verifier = verifier
        meeting.last_used_at = now

    def expire(self, now: float) -> list[str]:
        """Forget empty meetings past their lifetime; returns the ids removed."""
        expired = [
            meeting.id
            for meeting in self.meetings.values()
            if not meeting.participants
            and now - meeting.last_used_at
            > (self.meeting_lifetime if meeting.verifier else UNCLAIMED_MEETING_LIFETIME)
        ]
        for meeting_id in expired:
            del self.meetings[meeting_id]
        return expired
