"""Keys derived from a meeting link's secret (DESIGN.md section 3), the same bytes
as `deriveJoinToken` in static/protocol.js."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def derive_from_link(link_secret: bytes, meeting_id: str, label: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=meeting_id.encode("ascii"),
        info=f"confide/1 {label}".encode("ascii"),
    ).derive(link_secret)


def derive_join_token(link_secret: bytes, meeting_id: str) -> bytes:
    return derive_from_link(link_secret, meeting_id, "join-token")


def decode_link_secret(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")

