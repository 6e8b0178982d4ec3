"""Keys derived from a meeting link's secret (docs/design.md, 'The key schedule'), the
same bytes as `deriveJoinKey` in static/protocol.js."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def derive_from_link(link_secret: bytes, meeting_id: str, label: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=meeting_id.encode("ascii"),
        info=f"confide/1 {label}".encode("ascii"),
    ).derive(link_secret)


def derive_join_key(link_secret: bytes, meeting_id: str) -> Ed25519PrivateKey:
    """The key whose signature admits a browser; the server holds only its public half."""
    seed = derive_from_link(link_secret, meeting_id, "join-key")
    return Ed25519PrivateKey.from_private_bytes(seed)


def join_key_public(join_key: Ed25519PrivateKey) -> bytes:
    return join_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def decode_link_secret(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")

