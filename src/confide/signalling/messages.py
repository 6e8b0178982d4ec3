"""Client-to-server messages of docs/protocol.md, validated at the edge.

`parse_client_message` turns one WebSocket text frame into a typed message or
raises `RemoteProtocolError`, whose code and message go back to the sender.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from ..rooms.admission import AdmissionPass, SignedAction

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 256 * 1024
MAX_PROFILE_CHARS = 2048
MAX_CHAT_CHARS = 16384
"""Room for 8192 characters of text once encrypted and encoded."""
MAX_RELAY_CHARS = 4096
MAX_ACTION_CHARS = 2048
MAX_SDP_CHARS = 240 * 1024
MAX_MIDS = 512
MAX_VIEW_TILES = 512
"""Streams a view may name: each participant's camera and screen, in a meeting of 100
and more."""
MAX_TILE_HEIGHT = 8192
SEND_KINDS = ("audio", "camera", "screen")


class RemoteProtocolError(Exception):
    """The peer sent something invalid; `code` and `message` are sent back to it."""

    def __init__(self, code: str, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal


@dataclass(frozen=True)
class Hello:
    version: int
    meeting: str
    proof: bytes
    """Ed25519 signature by the join key over the join challenge (rooms.meeting)."""
    profile: str
    host_proof: bytes | None = None
    """The host key's signature over the host challenge, from the host only."""
    identity: bytes | None = None
    """The browser's Ed25519 identity key for this meeting (the one its announcement
    signs with), proven by `identity_proof` over the identity challenge."""
    identity_proof: bytes | None = None
    admission: AdmissionPass | None = None
    """The host's signed admit for `identity`, from an earlier admission."""


@dataclass(frozen=True)
class MidRole:
    """What the client uses one transceiver for: sending its own kind, or receiving a stream."""

    send: str | None = None
    recv: str | None = None


@dataclass(frozen=True)
class Offer:
    sdp: str
    mids: dict[str, MidRole]


@dataclass(frozen=True)
class Media:
    audio: bool
    camera: bool
    screen: bool


@dataclass(frozen=True)
class Chat:
    body: str


@dataclass(frozen=True)
class Relay:
    """An opaque blob for one other participant (a wrapped sender key)."""

    to: str
    body: str


@dataclass(frozen=True)
class HostActionMessage:
    """A signed host action (rooms.moderation), checked there."""

    action: str
    signature: bytes


@dataclass(frozen=True)
class ProfileUpdate:
    """A new announcement, after the host changed the link (and so the roster key)."""

    profile: str


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Leave:
    pass


@dataclass(frozen=True)
class View:
    """What the page shows of each stream it receives: the height of its tile in device
    pixels, 0 for one off screen. Streams not named keep what they had."""

    tiles: dict[str, int]


ClientMessage = (
    Hello | Offer | Media | Chat | Relay | HostActionMessage | ProfileUpdate | Ping | Leave
    | View
)


def _bad(message: str) -> RemoteProtocolError:
    return RemoteProtocolError("bad-message", message)


def _field(obj: dict[str, Any], name: str, kind: type[Any], max_chars: int | None = None) -> Any:
    value = obj.get(name)
    # bool is an int subclass; keep them apart so `true` is never a version number.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _bad(f"field '{name}' must be a {kind.__name__}")
    if max_chars is not None and len(value) > max_chars:
        raise _bad(f"field '{name}' is longer than {max_chars} characters")
    return value


def _parse_signed(raw: Any, name: str) -> SignedAction:
    if not isinstance(raw, dict):
        raise _bad(f"field '{name}' must be a signed action")
    return SignedAction(
        text=_field(raw, "action", str, MAX_ACTION_CHARS),
        signature=parse_base64url("signature", _field(raw, "signature", str, 128), 64),
    )


def _parse_pass(raw: Any) -> AdmissionPass:
    if not isinstance(raw, dict):
        raise _bad("field 'pass' must be an object")
    delegation = raw.get("delegation")
    return AdmissionPass(
        admit=_parse_signed(raw, "pass"),
        delegation=None if delegation is None else _parse_signed(delegation, "delegation"),
    )


def _parse_mids(raw: Any) -> dict[str, MidRole]:
    if not isinstance(raw, dict) or len(raw) > MAX_MIDS:
        raise _bad(f"field 'mids' must be an object of at most {MAX_MIDS} entries")
    mids: dict[str, MidRole] = {}
    for mid, role in raw.items():
        if len(mid) > 32 or not isinstance(role, dict) or len(role) != 1:
            raise _bad("each mid maps to {'send': kind} or {'recv': stream id or null}")
        if "send" in role:
            if role["send"] not in SEND_KINDS:
                raise _bad(f"'send' must be one of {', '.join(SEND_KINDS)}")
            mids[mid] = MidRole(send=role["send"])
        elif "recv" in role:
            stream = role["recv"]
            if stream is not None and (not isinstance(stream, str) or len(stream) > 64):
                raise _bad("'recv' must be a stream id or null")
            mids[mid] = MidRole(recv=stream)
        else:
            raise _bad("each mid maps to {'send': kind} or {'recv': stream id or null}")
    return mids


def _parse_tiles(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict) or len(raw) > MAX_VIEW_TILES:
        raise _bad(f"field 'tiles' must be an object of at most {MAX_VIEW_TILES} entries")
    tiles: dict[str, int] = {}
    for stream, height in raw.items():
        if len(stream) > 64 or not isinstance(height, int) or isinstance(height, bool) or not (
                0 <= height <= MAX_TILE_HEIGHT):
            raise _bad(f"each tile maps a stream id to a height from 0 to {MAX_TILE_HEIGHT}")
        tiles[stream] = height
    return tiles


def parse_base64url(name: str, value: str, length: int) -> bytes:
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise _bad(f"field '{name}' must be base64url") from exc
    if len(decoded) != length:
        raise _bad(f"field '{name}' must encode {length} bytes")
    return decoded


def parse_client_message(text: str) -> ClientMessage:
    if len(text) > MAX_MESSAGE_BYTES:
        raise _bad(f"message is larger than {MAX_MESSAGE_BYTES} bytes")
    # ValueError, not only JSONDecodeError: an integer literal longer than Python's
    # int string conversion limit (4300 digits) raises a plain ValueError.
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _bad("message is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise _bad("message must be a JSON object")
    kind = obj.get("type")
    if kind == "hello":
        version = _field(obj, "version", int)
        if version != PROTOCOL_VERSION:
            raise RemoteProtocolError(
                "unsupported-version",
                f"this server speaks protocol version {PROTOCOL_VERSION}",
                fatal=True,
            )
        return Hello(
            version=version,
            meeting=_field(obj, "meeting", str, 64),
            proof=parse_base64url("proof", _field(obj, "proof", str, 128), 64),
            profile=_field(obj, "profile", str, MAX_PROFILE_CHARS),
            host_proof=(
                parse_base64url("host_proof", _field(obj, "host_proof", str, 128), 64)
                if "host_proof" in obj else None
            ),
            identity=(
                parse_base64url("identity", _field(obj, "identity", str, 64), 32)
                if "identity" in obj else None
            ),
            identity_proof=(
                parse_base64url("identity_proof", _field(obj, "identity_proof", str, 128), 64)
                if "identity" in obj else None
            ),
            admission=_parse_pass(obj["pass"]) if obj.get("pass") is not None else None,
        )
    if kind == "offer":
        return Offer(sdp=_field(obj, "sdp", str, MAX_SDP_CHARS), mids=_parse_mids(obj.get("mids")))
    if kind == "media":
        return Media(
            audio=_field(obj, "audio", bool),
            camera=_field(obj, "camera", bool),
            screen=_field(obj, "screen", bool),
        )
    if kind == "chat":
        return Chat(body=_field(obj, "body", str, MAX_CHAT_CHARS))
    if kind == "relay":
        return Relay(to=_field(obj, "to", str, 64), body=_field(obj, "body", str, MAX_RELAY_CHARS))
    if kind == "host-action":
        return HostActionMessage(
            action=_field(obj, "action", str, MAX_ACTION_CHARS),
            signature=parse_base64url("signature", _field(obj, "signature", str, 128), 64),
        )
    if kind == "view":
        return View(tiles=_parse_tiles(obj.get("tiles")))
    if kind == "profile":
        return ProfileUpdate(profile=_field(obj, "profile", str, MAX_PROFILE_CHARS))
    if kind == "ping":
        return Ping()
    if kind == "leave":
        return Leave()
    raise _bad("unknown message type")
