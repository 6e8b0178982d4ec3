"""ICE-lite (RFC 8445 section 2.5) for one participant: answer connectivity checks.

The browser is the controlling agent and sends STUN Binding requests to the
server's single host candidate; the server answers them and takes the address
of the latest nominated check as the participant's media address. Sans-IO.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
import struct
import zlib
from dataclasses import dataclass

MAX_STUN_BYTES = 1024
MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
USERNAME, MESSAGE_INTEGRITY, XOR_MAPPED_ADDRESS = 0x0006, 0x0008, 0x0020
USE_CANDIDATE, FINGERPRINT = 0x0025, 0x8028
FINGERPRINT_XOR = 0x5354554E
HEADER = struct.Struct("!HHI12s")
ATTRIBUTE = struct.Struct("!HH")


@dataclass(frozen=True)
class StunMessage:
    """What ICE-lite needs of one STUN message (RFC 8489), parsed once from the
    raw bytes: every browser sends a consent check every few seconds, so this is
    on a path a large meeting takes thousands of times a second."""

    message_type: int
    transaction_id: bytes
    attributes: dict[int, bytes]
    """The first value of each attribute type."""
    signed: bytes
    """The bytes MESSAGE-INTEGRITY covers, with the header length adjusted; empty
    when there is no MESSAGE-INTEGRITY."""

    @property
    def is_binding_request(self) -> bool:
        return self.message_type == BINDING_REQUEST


def random_ice_string(length: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def parse_stun(data: bytes) -> StunMessage:
    """Parse a STUN message from the network; anything malformed is a ValueError."""
    if len(data) > MAX_STUN_BYTES:
        raise ValueError("STUN message is too long")
    if len(data) < HEADER.size:
        raise ValueError("STUN message is malformed: shorter than a header")
    message_type, length, cookie, transaction_id = HEADER.unpack_from(data)
    if cookie != MAGIC_COOKIE or length != len(data) - HEADER.size or length % 4:
        raise ValueError("STUN message is malformed: bad header")
    if message_type & 0xC000:
        raise ValueError("STUN message is malformed: not a STUN message type")
    attributes: dict[int, bytes] = {}
    signed = b""
    offset = HEADER.size
    while offset < len(data):
        if offset + ATTRIBUTE.size > len(data):
            raise ValueError("STUN message is malformed: truncated attribute")
        kind, size = ATTRIBUTE.unpack_from(data, offset)
        value_at = offset + ATTRIBUTE.size
        end = value_at + size
        if end > len(data):
            raise ValueError("STUN message is malformed: attribute overruns the message")
        value = data[value_at:end]
        next_offset = end + (-size % 4)
        if kind == FINGERPRINT:
            expected = (zlib.crc32(data[:2] + (end - HEADER.size).to_bytes(2, "big")
                                   + data[4:offset]) ^ FINGERPRINT_XOR)
            if size != 4 or int.from_bytes(value, "big") != expected:
                raise ValueError("STUN message is malformed: bad FINGERPRINT")
            if next_offset < len(data):
                raise ValueError("STUN message is malformed: FINGERPRINT is not last")
        elif signed:
            pass  # RFC 8489 section 14.5: what follows MESSAGE-INTEGRITY is ignored
        elif kind == MESSAGE_INTEGRITY:
            # The length field counts up to this attribute's end.
            signed = data[:2] + (end - HEADER.size).to_bytes(2, "big") + data[4:offset]
            attributes[kind] = value
        else:
            attributes.setdefault(kind, value)
        offset = next_offset
    return StunMessage(message_type, transaction_id, attributes, signed)


def stun_username(data: bytes | StunMessage) -> str | None:
    """The local ufrag a Binding request is addressed to, or None if it has none."""
    message = data if isinstance(data, StunMessage) else parse_stun(data)
    if not message.is_binding_request:
        return None
    try:
        username = message.attributes.get(USERNAME, b"").decode("utf8")
    except UnicodeDecodeError:
        return None
    if ":" not in username:
        return None
    return username.split(":", 1)[0]


def is_unicast_source(address: tuple[str, int]) -> bool:
    """A source media can be sent back to: a port, and not a broadcast, multicast or
    unspecified address (the kernel delivers UDP from all of these)."""
    host, port = address[0], address[1]
    if not 0 < port < 65536:
        return False
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if ip.is_multicast or ip.is_unspecified:
        return False
    return not (isinstance(ip, ipaddress.IPv4Address) and ip == ipaddress.IPv4Address(
        "255.255.255.255"))


def _attribute(kind: int, value: bytes) -> bytes:
    return ATTRIBUTE.pack(kind, len(value)) + value + bytes(-len(value) % 4)


def _xor_address(address: tuple[str, int], transaction_id: bytes) -> bytes:
    host, port = address[0], address[1]
    if ":" in host:
        raw, family = socket.inet_pton(socket.AF_INET6, host), 2
        key = MAGIC_COOKIE.to_bytes(4, "big") + transaction_id
    else:
        raw, family = socket.inet_aton(host), 1
        key = MAGIC_COOKIE.to_bytes(4, "big")
    xored = bytes(a ^ b for a, b in zip(raw, key, strict=False))
    return struct.pack("!BBH", 0, family, port ^ (MAGIC_COOKIE >> 16)) + xored


def binding_success(transaction_id: bytes, address: tuple[str, int], password: bytes) -> bytes:
    """A Binding success response with XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and
    FINGERPRINT (RFC 8489 sections 14.2, 14.5, 14.7)."""
    body = _attribute(XOR_MAPPED_ADDRESS, _xor_address(address, transaction_id))
    header = HEADER.pack(BINDING_SUCCESS, len(body) + 24, MAGIC_COOKIE, transaction_id)
    integrity = hmac.new(password, header + body, hashlib.sha1).digest()
    body += _attribute(MESSAGE_INTEGRITY, integrity)
    header = HEADER.pack(BINDING_SUCCESS, len(body) + 8, MAGIC_COOKIE, transaction_id)
    fingerprint = (zlib.crc32(header + body) ^ FINGERPRINT_XOR).to_bytes(4, "big")
    return header + body + _attribute(FINGERPRINT, fingerprint)


class IceLiteAgent:
    """The server side of one participant's ICE session."""

    def __init__(self) -> None:
        self.local_ufrag = random_ice_string(16)
        self.local_pwd = random_ice_string(24)
        self.remote_ufrag = ""
        self.nominated_address: tuple[str, int] | None = None
        self.last_check_at: float | None = None

    def restart(self) -> None:
        """New local credentials; the next nominated check sets the address again."""
        self.local_ufrag = random_ice_string(16)
        self.local_pwd = random_ice_string(24)
        self.nominated_address = None

    def handle_request(
        self, data: bytes | StunMessage, address: tuple[str, int], now: float
    ) -> bytes:
        """Answer one Binding request; raises ValueError for a bad or foreign one."""
        request = data if isinstance(data, StunMessage) else parse_stun(data)
        if not request.is_binding_request:
            raise ValueError("STUN message is not a Binding request")
        expected = f"{self.local_ufrag}:{self.remote_ufrag}".encode()
        if request.attributes.get(USERNAME) != expected:
            raise ValueError("STUN USERNAME does not match this session")
        integrity = request.attributes.get(MESSAGE_INTEGRITY)
        password = self.local_pwd.encode("utf8")
        if integrity is None or not hmac.compare_digest(
            integrity, hmac.new(password, request.signed, hashlib.sha1).digest()
        ):
            raise ValueError("STUN MESSAGE-INTEGRITY does not match")
        self.last_check_at = now
        if USE_CANDIDATE in request.attributes or self.nominated_address is None:
            self.nominated_address = address
        return binding_success(request.transaction_id, address, password)
