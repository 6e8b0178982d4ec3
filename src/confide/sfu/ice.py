"""ICE-lite (RFC 8445 section 2.5) for one participant: answer connectivity checks.

The browser is the controlling agent and sends STUN Binding requests to the
server's single host candidate; the server answers them and takes the address
of the latest nominated check as the participant's media address. Sans-IO.
"""

from __future__ import annotations

import secrets
import struct

from aioice import stun

MAX_STUN_BYTES = 1024


def random_ice_string(length: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def parse_stun(data: bytes) -> stun.Message:
    """Parse a STUN message from the network; anything malformed is a ValueError."""
    if len(data) > MAX_STUN_BYTES:
        raise ValueError("STUN message is too long")
    try:
        return stun.parse_message(data)
    except (ValueError, struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"STUN message is malformed: {exc}") from exc


def stun_username(data: bytes) -> str | None:
    """The local ufrag a Binding request is addressed to, or None if it has none."""
    message = parse_stun(data)
    if message.message_method != stun.Method.BINDING or (
        message.message_class != stun.Class.REQUEST
    ):
        return None
    username = message.attributes.get("USERNAME")
    if not isinstance(username, str) or ":" not in username:
        return None
    return username.split(":", 1)[0]


class IceLiteAgent:
    """The server side of one participant's ICE session."""

    def __init__(self) -> None:
        self.local_ufrag = random_ice_string(16)
        self.local_pwd = random_ice_string(24)
        self.remote_ufrag = ""
        self.nominated_address: tuple[str, int] | None = None
        self.last_check_at: float | None = None

    def handle_request(
        self, data: bytes, address: tuple[str, int], now: float
    ) -> bytes:
        """Answer one Binding request; raises ValueError for a bad or foreign one."""
        request = parse_stun(data)
        if request.message_method != stun.Method.BINDING or (
            request.message_class != stun.Class.REQUEST
        ):
            raise ValueError("STUN message is not a Binding request")
        expected = f"{self.local_ufrag}:{self.remote_ufrag}"
        if request.attributes.get("USERNAME") != expected:
            raise ValueError("STUN USERNAME does not match this session")
        if not request.check_message_integrity(self.local_pwd.encode("utf8")):
            raise ValueError("STUN MESSAGE-INTEGRITY does not match")
        self.last_check_at = now
        if "USE-CANDIDATE" in request.attributes or self.nominated_address is None:
            self.nominated_address = address
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = address
        response.add_message_integrity(self.local_pwd.encode("utf8"))
        return bytes(response)
