"""One WebSocket's state, what a participant and the policy look like on the
wire, and the close codes: shared by the hub and its host powers."""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..limits import TokenBucket
from ..rooms.admission import AdmissionPass, SignedAction
from ..rooms.meeting import Meeting, Participant
from ..rooms.moderation import Moderation
from ..sfu.endpoint import Endpoint
from .outbox import Outbox

MAX_INVALID_IN_A_ROW = 5
HELLO_TIMEOUT = 10.0
"""Seconds a new socket has to say hello before it is closed."""
CLOSE_PROTOCOL_ERROR = 4400
CLOSE_REFUSED = 4403
CLOSE_GONE = 4410
CLOSE_RATE_LIMITED = 4429
CLOSE_TOO_SLOW = 4408
"""The client stopped reading what the meeting sent it."""
MESSAGE_RATE, MESSAGE_BURST = 50.0, 400.0
"""Messages per second a client may send; the burst covers rekeying a large meeting."""
MESSAGE_BYTES_RATE, MESSAGE_BYTES_BURST = 512 * 1024.0, 4 * 1024 * 1024.0
"""Bytes per second a client may send: what it sends, the server copies to everyone."""
ADDRESS_BYTES_RATE, ADDRESS_BYTES_BURST = 2 * 1024 * 1024.0, 8 * 1024 * 1024.0
"""The same for all of one address's sockets together, so that reconnecting does not
buy a new burst; a class behind one NAT address stays far below it."""
LOOP_SHARE, LOOP_SHARE_BURST = 0.1, 0.5
"""Seconds of the server's CPU per second that handling one socket's messages may
take, and the most it may take at once: one participant never has more than a tenth
of the event loop, whatever its messages cost."""
ADDRESS_LOOP_SHARE, ADDRESS_LOOP_SHARE_BURST = 0.5, 4.0
"""The same for all of one address's sockets together: a class behind one NAT address,
each renegotiating as people join (a few ms an offer), stays well below it."""
FATAL_CODES = {"meeting-not-found", "bad-token", "meeting-full", "meeting-locked",
               "meeting-ended", "bad-host-proof", "bad-identity-proof", "blocked"}
BLOCKING_ACTIONS = {"mute": "audio", "stop-camera": "camera", "stop-screen": "screen"}


@dataclass(eq=False)
class Session:
    socket: web.WebSocketResponse
    outbox: Outbox
    """Everything sent to this socket goes through here, written by its own task."""
    address_key: str = ""
    """A keyed hash of the client's address (limits.address_key), for its limits only."""
    meeting: Meeting | None = None
    participant: Participant | None = None
    endpoint: Endpoint | None = None
    lobby_id: str | None = None
    """Set while this person waits in the lobby."""
    profile: str = ""
    """Their opaque profile, kept while they wait in the lobby."""
    identity: bytes | None = None
    """The identity key this connection proved in hello, if it sent one."""
    admission: dict[str, Any] | None = None
    """Their admission pass as it travels (rooms.admission), once they have one."""
    invalid_in_a_row: int = 0
    closed: bool = False
    said_goodbye: bool = False
    """The client sent `leave` before its socket closed."""
    nonce: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    """The join challenge's nonce for this connection."""
    messages: TokenBucket = field(default_factory=lambda: TokenBucket(
        MESSAGE_RATE, MESSAGE_BURST, updated_at=time.monotonic()))
    message_bytes: TokenBucket = field(default_factory=lambda: TokenBucket(
        MESSAGE_BYTES_RATE, MESSAGE_BYTES_BURST, updated_at=time.monotonic()))
    loop_time: TokenBucket = field(default_factory=lambda: TokenBucket(
        LOOP_SHARE, LOOP_SHARE_BURST, updated_at=time.monotonic()))
    """CPU seconds its messages took, charged after each one (LOOP_SHARE)."""


def participant_json(participant: Participant, moderation: Moderation) -> dict[str, Any]:
    media = participant.media
    return {
        "id": participant.id,
        "profile": participant.profile,
        "media": {"audio": media.audio, "camera": media.camera, "screen": media.screen},
        "host": moderation.is_host(participant.id),
        "pass": participant.admission,
    }


def pass_json(admission: AdmissionPass) -> dict[str, Any]:
    """A pass as it travels, for the others to check (rooms.admission)."""
    def signed(action: SignedAction) -> dict[str, str]:
        signature = base64.urlsafe_b64encode(action.signature).decode("ascii").rstrip("=")
        return {"action": action.text, "signature": signature}
    wire: dict[str, Any] = signed(admission.admit)
    if admission.delegation is not None:
        wire["delegation"] = signed(admission.delegation)
    return wire


def policy_json(moderation: Moderation) -> dict[str, Any]:
    return {
        "locked": moderation.locked, "lobby": moderation.lobby and moderation.host_key is not None,
        "screen_share": moderation.screen_share, "chat": moderation.chat,
        "has_host": moderation.host_key is not None,
    }
