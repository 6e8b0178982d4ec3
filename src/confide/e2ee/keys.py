"""The keys of one meeting (docs/design.md, 'The key schedule'), byte for byte the same
as static/e2ee.js: roster key, announcements, pairwise sender-key wrapping, the join
ratchet, chat, security code and fingerprints. No I/O; used by the tests (to read
captured traffic from the server's side) and by the Python test client.

Everything a peer or the server sends is checked as e2ee.js checks it, and fails
with `E2eeError`, with e2ee.js's message wherever e2ee.js throws one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

LABEL = "confide/1 "
"""Prefix of every HKDF info string and signed transcript."""

MAX_SENDER_ID = 2**24 - 1
"""Sender ids are 24 bits so that KID = sender id * 256 + epoch fits in 32."""

_IV_LENGTH = 12
_TAG_LENGTH = 16
_EMPTY_SALT = b""


class E2eeError(ValueError):
    """Something a peer or the server sent fails its MAC, signature or decryption,
    or is malformed. Where e2ee.js throws an E2eeError for the same input, the
    message is the same."""


# --- Encodings, as the browser does them -------------------------------------------


def _utf8(text: str) -> bytes:
    """TextEncoder: UTF-8 with lone surrogates (possible in a JSON string) as U+FFFD."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Through UTF-16 and back: pairs become one code point, lone halves U+FFFD,
        # which is what a JavaScript string does.
        utf16 = text.encode("utf-16-le", "surrogatepass")
        return utf16.decode("utf-16-le", "replace").encode("utf-8")


def _from_utf8(data: bytes) -> str:
    """TextDecoder('utf-8') with its defaults: not fatal, and a leading BOM dropped."""
    text = data.decode("utf-8", "replace")
    return text[1:] if text.startswith("\ufeff") else text


def _to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_ASCII_WHITESPACE = re.compile(r"[\t\n\f\r ]")
_BASE64_BODY = re.compile(r"[A-Za-z0-9+/]*", re.ASCII)


def _from_base64(text: str) -> bytes:
    """atob, i.e. the WHATWG forgiving-base64 decode: whitespace ignored, padding
    optional. Raises ValueError where atob throws, so both sides accept the same."""
    text = _ASCII_WHITESPACE.sub("", text)
    if len(text) % 4 == 0:
        text = text[:-2] if text.endswith("==") else text.removesuffix("=")
    if len(text) % 4 == 1 or not _BASE64_BODY.fullmatch(text):
        raise ValueError("not base64")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _json_integer(value: object) -> int | None:
    """The integer JavaScript sees (Number.isInteger), or None. JSON `5.0` is 5 there,
    and a bool is no number at all."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")  # JSON.parse has no NaN or Infinity


def _parse_json_object(text: str, what: str) -> dict[str, Any]:
    """JSON.parse, then `parsed ?? {}`: anything but an object has none of the fields."""
    try:
        parsed = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise E2eeError(f"{what} is not JSON") from None
    return parsed if isinstance(parsed, dict) else {}


def _dumps(value: dict[str, Any]) -> str:
    """JSON.stringify's compact form, keys in insertion order."""
    return json.dumps(value, separators=(",", ":"))


# --- Primitives --------------------------------------------------------------------


def hkdf(secret: bytes, salt: bytes, info: str | bytes, length: int = 32) -> bytes:
    """HKDF-SHA-256 (RFC 5869) to `length` bytes; a str info is UTF-8 encoded."""
    info_bytes = _utf8(info) if isinstance(info, str) else info
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info_bytes).derive(secret)


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-GCM with a random 12-byte IV; returns iv || ciphertext || tag."""
    iv = secrets.token_bytes(_IV_LENGTH)
    return iv + AESGCM(key).encrypt(iv, plaintext, aad)


def _open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < _IV_LENGTH + _TAG_LENGTH:
        raise E2eeError("sealed blob is too short")
    try:
        return AESGCM(key).decrypt(sealed[:_IV_LENGTH], sealed[_IV_LENGTH:], aad)
    except InvalidTag:
        raise E2eeError("blob failed to decrypt") from None


def ratchet(sender_key: bytes) -> bytes:
    """The next sender key when someone joins: one-way, so a newcomer cannot go back."""
    return hkdf(sender_key, _EMPTY_SALT, f"{LABEL}ratchet")


def kid_of(sender_id: int, epoch: int) -> int:
    """The SFrame KID of a sender's key: sender id * 256 + epoch mod 256."""
    if not 0 <= sender_id <= MAX_SENDER_ID:
        raise ValueError(f"sender id {sender_id} is not 24 bits")
    if epoch < 0:
        # JavaScript's % keeps the sign, Python's does not: refuse rather than differ.
        raise ValueError(f"epoch {epoch} is negative")
    return sender_id * 256 + epoch % 256


CODE_GROUPS, CODE_GROUP = 5, 100_000
CODE_LIMIT = (2**24 // CODE_GROUP) * CODE_GROUP
"""3-byte values at or above this are skipped, so that every group is uniform."""


def security_code(meeting_id: str, identity_keys: Iterable[bytes]) -> str:
    """The meeting security code, e.g. "04721 93310 58802 11467 30025": five groups of
    five digits (83 bits, unbiased) over the meeting id and, for everyone present,
    their identity key and code reveal (`code_commitment`), in any order; as
    e2ee.js securityCode."""
    seed = hashlib.sha256(_utf8(f"{LABEL}security-code|{meeting_id}|")
                          + b"".join(sorted(identity_keys))).digest()
    groups: list[str] = []
    block = 0
    while len(groups) < CODE_GROUPS:
        data = hashlib.sha256(seed + bytes([block])).digest()
        for i in range(0, len(data) - 2, 3):
            value = int.from_bytes(data[i : i + 3], "big")
            if value < CODE_LIMIT and len(groups) < CODE_GROUPS:
                groups.append(f"{value % CODE_GROUP:05d}")
        block += 1
    return " ".join(groups)


def fingerprint(identity_key: bytes) -> str:
    """One person's fingerprint, e.g. "3fa2 9c01 77de 0b45", to compare out of band."""
    digest = hashlib.sha256(_utf8(f"{LABEL}fingerprint") + identity_key).digest()
    text = digest[:8].hex()
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


# --- The roster: announcements -----------------------------------------------------


@dataclass(frozen=True)
class RosterKeys:
    """What the link secret gives every participant, and the server lacks."""

    meeting_id: str
    mac_key: bytes
    """HMAC-SHA-256 key over each announcement's transcript."""
    name_key: bytes
    """AES-256-GCM key for display names."""

    @classmethod
    def from_link(cls, link_secret: bytes, meeting_id: str) -> RosterKeys:
        roster = hkdf(link_secret, _utf8(meeting_id), f"{LABEL}roster-key")
        return cls(
            meeting_id=meeting_id,
            mac_key=hkdf(roster, _EMPTY_SALT, f"{LABEL}roster-mac"),
            name_key=hkdf(roster, _EMPTY_SALT, f"{LABEL}roster-names"),
        )


def _transcript(meeting_id: str, sender_id: int, x: str, s: str, n: str, c: str) -> bytes:
    # x, s, n and c are the base64 text as sent, so the MAC covers exactly what was sent.
    return _utf8(f"{LABEL}announce|{meeting_id}|{sender_id}|{x}|{s}|{n}|{c}")


def code_commitment(meeting_id: str, s_public: bytes, reveal: bytes) -> bytes:
    """What an announcement commits to: the secret 16 bytes its sender reveals to each
    member only after that member's own commitment arrived, and that the security
    code covers. Keys chosen after seeing someone's announcement cannot be ground to
    match a code that depends on a value not yet revealed."""
    return hashlib.sha256(_utf8(f"{LABEL}code-commit|{meeting_id}|") + s_public + reveal).digest()


def _name_aad(x_public: bytes, s_public: bytes) -> bytes:
    return _utf8(f"{LABEL}name") + x_public + s_public


def _raw_public(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Announcement:
    """A participant's checked announcement (e2ee.js `Announcement`)."""

    name: str
    sender_id: int
    x_public: bytes
    """X25519 public key, for pairwise key agreement."""
    s_public: bytes
    """Ed25519 public key that signed the announcement."""
    identity: bytes
    """s_public, the key a browser keeps for the meeting: what the fingerprint hashes,
    so it stays the same across reconnects (x_public is fresh on every connection)."""
    commitment: bytes = b""
    """SHA-256 commitment to the sender's code reveal (`code_commitment`)."""


@dataclass(frozen=True)
class Identity:
    """My key pairs for one meeting (and each rejoin), and the sender id in my KIDs."""

    agreement: X25519PrivateKey
    signing: Ed25519PrivateKey
    sender_id: int
    reveal: bytes = b"\x00" * 16
    """The 16 secret bytes the announcement commits to, kept with the identity key."""

    def __post_init__(self) -> None:
        if not 1 <= self.sender_id <= MAX_SENDER_ID:
            raise ValueError(f"sender id {self.sender_id} is not in 1..2^24-1")

    @classmethod
    def generate(cls) -> Identity:
        # 24 random bits, as MeetingKeys.newIdentity; 0 is taken to mean "none".
        sender_id = (secrets.randbits(32) >> 8) or 1
        return cls(X25519PrivateKey.generate(), Ed25519PrivateKey.generate(), sender_id,
                   secrets.token_bytes(16))

    @property
    def x_public(self) -> bytes:
        return _raw_public(self.agreement.public_key())

    @property
    def s_public(self) -> bytes:
        return _raw_public(self.signing.public_key())

    @property
    def identity(self) -> bytes:
        return self.s_public

    def announce(self, roster: RosterKeys, name: str) -> str:
        """The opaque `profile` sent in hello: keys, encrypted name, MAC, signature."""
        x_public, s_public = self.x_public, self.s_public
        x = _to_base64(x_public)
        s = _to_base64(s_public)
        n = _to_base64(_seal(roster.name_key, _utf8(name), _name_aad(x_public, s_public)))
        c = _to_base64(code_commitment(roster.meeting_id, s_public, self.reveal))
        transcript = _transcript(roster.meeting_id, self.sender_id, x, s, n, c)
        mac = hmac.new(roster.mac_key, transcript, hashlib.sha256).digest()
        sig = self.signing.sign(transcript)
        return _dumps(
            {
                "v": 1,
                "id": self.sender_id,
                "x": x,
                "s": s,
                "n": n,
                "c": c,
                "mac": _to_base64(mac),
                "sig": _to_base64(sig),
            }
        )


def open_announcement(roster: RosterKeys, profile: str) -> Announcement:
    """Check someone's announcement and read their name, as MeetingKeys.openAnnouncement.

    Raises E2eeError if it is malformed, if the MAC (made with the link secret, which
    the server lacks) or the signature fails, or if the name does not decrypt.
    """
    fields = _parse_json_object(profile, "announcement")
    sender_id = _json_integer(fields.get("id"))
    texts = [fields.get(key) for key in ("x", "s", "n", "c", "mac", "sig")]
    version = _json_integer(fields.get("v"))
    if (
        version != 1
        or sender_id is None
        or not 1 <= sender_id <= MAX_SENDER_ID
        or not all(isinstance(text, str) for text in texts)
    ):
        raise E2eeError("announcement is malformed")
    x, s, n, c, mac, sig = (str(text) for text in texts)
    try:
        x_public, s_public, commitment, mac_bytes, sig_bytes, sealed_name = map(
            _from_base64, (x, s, c, mac, sig, n)
        )
    except ValueError:
        raise E2eeError("announcement is not base64") from None
    if len(x_public) != 32 or len(s_public) != 32 or len(commitment) != 32:
        raise E2eeError("announcement keys are malformed")
    transcript = _transcript(roster.meeting_id, sender_id, x, s, n, c)
    expected_mac = hmac.new(roster.mac_key, transcript, hashlib.sha256).digest()
    if not hmac.compare_digest(expected_mac, mac_bytes):
        raise E2eeError("announcement MAC does not match the meeting link")
    try:
        Ed25519PublicKey.from_public_bytes(s_public).verify(sig_bytes, transcript)
    except (InvalidSignature, ValueError):
        raise E2eeError("announcement signature does not match its key") from None
    name = _from_utf8(_open(roster.name_key, sealed_name, _name_aad(x_public, s_public)))
    # As in e2ee.js: a low-order X25519 key gives no shared secret, so refuse it now.
    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(x_public))
    except ValueError:
        raise E2eeError("peer key gives no shared secret") from None
    return Announcement(name, sender_id, x_public, s_public, s_public, commitment)


# --- Sender keys, pairwise ---------------------------------------------------------


def pairwise_key(own: Identity, peer_x_public: bytes, meeting_id: str) -> bytes:
    """The AES-256-GCM key two participants share: X25519, then HKDF over both keys
    in sorted order, so both ends derive the same one."""
    try:
        shared = own.agreement.exchange(X25519PublicKey.from_public_bytes(peer_x_public))
    except ValueError:
        # A low-order point gives an all-zero secret, which cryptography refuses.
        raise E2eeError("peer key gives no shared secret") from None
    first, second = sorted((own.x_public, peer_x_public))
    info = _utf8(f"{LABEL}pairwise") + first + second
    return hkdf(shared, _utf8(meeting_id), info)


def _sender_key_aad(from_x: bytes, to_x: bytes, kid: int) -> bytes:
    return _utf8(f"{LABEL}sender-key|{kid}|") + from_x + to_x


def wrap_sender_key(
    own: Identity, peer: Announcement, meeting_id: str, kid: int, sender_key: bytes
) -> str:
    """My sender key for one peer: the opaque relay body."""
    # The peer refuses either mistake; failing here names our bug, not theirs.
    if kid // 256 != own.sender_id:
        raise ValueError(f"kid {kid} is not one of sender {own.sender_id}")
    if len(sender_key) != 32:
        raise ValueError("a sender key is 32 bytes")
    sealed = _seal(
        pairwise_key(own, peer.x_public, meeting_id),
        sender_key,
        _sender_key_aad(own.x_public, peer.x_public, kid),
    )
    return _dumps({"t": "sender-key", "kid": kid, "key": _to_base64(sealed)})


def unwrap_sender_key(
    own: Identity, peer: Announcement, meeting_id: str, body: str
) -> tuple[int, bytes]:
    """A peer's (kid, sender key) from a relay body; raises E2eeError if it fails."""
    fields = _parse_json_object(body, "key message")
    kid = _json_integer(fields.get("kid"))
    key = fields.get("key")
    if fields.get("t") != "sender-key" or kid is None or not isinstance(key, str):
        raise E2eeError("key message is malformed")
    if kid // 256 != peer.sender_id:
        raise E2eeError("key message names another sender")
    try:
        sealed = _from_base64(key)
    except ValueError:
        raise E2eeError("key message is not base64") from None
    sender_key = _open(
        pairwise_key(own, peer.x_public, meeting_id),
        sealed,
        _sender_key_aad(peer.x_public, own.x_public, kid),
    )
    if len(sender_key) != 32:
        raise E2eeError("sender key has the wrong length")
    return kid, sender_key


# --- Chat --------------------------------------------------------------------------


@dataclass(frozen=True)
class SealedChat:
    """A chat body parsed but not yet opened: the KID says which key opens it."""

    kid: int
    seq: int
    """The sender's message number, from 0: receivers refuse one delivered twice."""
    sealed: bytes


def _chat_key(sender_key: bytes) -> bytes:
    return hkdf(sender_key, _EMPTY_SALT, f"{LABEL}chat", 16)


def _chat_aad(kid: int, seq: int) -> bytes:
    return _utf8(f"{LABEL}chat|{kid}|{seq}")


def seal_chat(kid: int, seq: int, sender_key: bytes, text: str) -> str:
    """A chat message under my current sender key (the one `kid` names), as my
    message number `seq`."""
    sealed = _seal(_chat_key(sender_key), _utf8(text), _chat_aad(kid, seq))
    return _dumps({"kid": kid, "n": seq, "c": _to_base64(sealed)})


def parse_chat(body: str) -> SealedChat:
    """As e2ee.js parseChat: the KID and the sealed bytes, unchecked."""
    fields = _parse_json_object(body, "chat message")
    kid = _json_integer(fields.get("kid"))
    seq = _json_integer(fields.get("n"))
    text = fields.get("c")
    # Past 2^53 JavaScript would print the numbers differently in the AAD; no real
    # KID is that large (sender id and epoch take 32 bits).
    if (kid is None or abs(kid) > 2**53 - 1 or seq is None or not 0 <= seq <= 2**53 - 1
            or not isinstance(text, str)):
        raise E2eeError("chat message is malformed")
    try:
        return SealedChat(kid, seq, _from_base64(text))
    except ValueError:
        raise E2eeError("chat message is not base64") from None


def open_chat(chat: str | SealedChat, sender_key: bytes) -> str:
    """The text of a chat body (or of one already parsed) under the sender's key."""
    parsed = parse_chat(chat) if isinstance(chat, str) else chat
    return _from_utf8(_open(_chat_key(sender_key), parsed.sealed,
                            _chat_aad(parsed.kid, parsed.seq)))
