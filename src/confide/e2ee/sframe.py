"""SFrame (RFC 9605) frame encryption, byte for byte the same as static/sframe.js.

Confide's browsers encrypt every media frame with this format before it leaves
(docs/design.md, 'The key schedule'); this module is the Python side, used by tests and
the test client. It does no I/O and keeps no clock: one sender key per `SFrameSender`,
and an `SFrameReceiver` that holds the keys of everyone it listens to, by KID.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand


class CipherSuite(IntEnum):
    """The "SFrame Cipher Suites" registry (RFC 9605 section 8.1)."""

    AES_128_CTR_HMAC_SHA256_80 = 0x0001
    AES_128_CTR_HMAC_SHA256_64 = 0x0002
    AES_128_CTR_HMAC_SHA256_32 = 0x0003
    AES_128_GCM_SHA256_128 = 0x0004
    AES_256_GCM_SHA512_128 = 0x0005


MAX_VALUE = 2**64 - 1
"""Largest KID or CTR: the header carries at most 8 bytes of each (section 4.3)."""

REPLAY_WINDOW = 128
"""How many counters below the highest one seen a receiver still accepts, once each."""

SFRAME_KEY_LABEL = b"SFrame 1.0 Secret key "
SFRAME_SALT_LABEL = b"SFrame 1.0 Secret salt "


@dataclass(frozen=True)
class _SuiteParams:
    hash_factory: Callable[[], hashes.HashAlgorithm]
    hashlib_name: str
    nk: int
    """AEAD key size; for the AES-CTR suites, the AES key and the HMAC key together."""
    nn: int
    nt: int
    nka: int | None
    """AES key size inside the compound AES-CTR + HMAC key (section 4.5.1); None for GCM."""


_SUITES: dict[int, _SuiteParams] = {
    CipherSuite.AES_128_CTR_HMAC_SHA256_80: _SuiteParams(hashes.SHA256, "sha256", 48, 12, 10, 16),
    CipherSuite.AES_128_CTR_HMAC_SHA256_64: _SuiteParams(hashes.SHA256, "sha256", 48, 12, 8, 16),
    CipherSuite.AES_128_CTR_HMAC_SHA256_32: _SuiteParams(hashes.SHA256, "sha256", 48, 12, 4, 16),
    CipherSuite.AES_128_GCM_SHA256_128: _SuiteParams(hashes.SHA256, "sha256", 16, 12, 16, None),
    CipherSuite.AES_256_GCM_SHA512_128: _SuiteParams(hashes.SHA512, "sha512", 32, 12, 16, None),
}


class SFrameError(ValueError):
    """Why a frame was refused. `reason` is one of "malformed", "unknown-kid",
    "replayed", "too-old", "auth-failed"; the caller drops the frame (or, for
    "unknown-kid", may hold it until the key arrives, RFC 9605 section 4.4.4)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _suite_params(suite: int) -> _SuiteParams:
    params = _SUITES.get(suite)
    if params is None:
        raise ValueError(f"unsupported SFrame cipher suite 0x{suite:04x}")
    return params


# -- Header (RFC 9605 section 4.3) -------------------------------------------------


def _check_value(name: str, value: int) -> None:
    if not 0 <= value <= MAX_VALUE:
        raise ValueError(f"{name} {value} is outside 0..2^64-1")


def _compact(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def encode_header(kid: int, ctr: int) -> bytes:
    """The SFrame header for `kid` and `ctr`: values below 8 sit in the config byte,
    larger ones follow it in the fewest big-endian bytes, KID first."""
    _check_value("KID", kid)
    _check_value("CTR", ctr)
    config = 0
    tail = b""
    if kid < 8:
        config |= kid << 4
    else:
        kid_bytes = _compact(kid)
        config |= 0x80 | (len(kid_bytes) - 1) << 4
        tail += kid_bytes
    if ctr < 8:
        config |= ctr
    else:
        ctr_bytes = _compact(ctr)
        config |= 0x08 | (len(ctr_bytes) - 1)
        tail += ctr_bytes
    return bytes([config]) + tail


def _read_field(data: bytes, offset: int, extended: bool, bits: int, name: str) -> tuple[int, int]:
    if not extended:
        return bits, offset
    length = bits + 1
    if len(data) < offset + length:
        raise SFrameError("malformed", f"SFrame header truncated: {name} needs {length} bytes")
    field = data[offset : offset + length]
    value = int.from_bytes(field, "big")
    # Section 4.3: "the value MUST be encoded with the minimum number of bytes".
    if value < 8 or field[0] == 0:
        raise SFrameError("malformed", f"SFrame header has a non-minimal {name} encoding")
    return value, offset + length


def decode_header(data: bytes) -> tuple[int, int, int]:
    """Parse the header at the start of `data`: (KID, CTR, header length in bytes).

    Raises SFrameError ("malformed") if `data` is shorter than the header it announces, or if KID or
    CTR is not in its shortest form (the RFC requires it, and it keeps one header per
    (KID, CTR))."""
    if not data:
        raise SFrameError("malformed", "SFrame header truncated: no config byte")
    config = data[0]
    kid, offset = _read_field(data, 1, bool(config & 0x80), (config >> 4) & 0x07, "KID")
    ctr, offset = _read_field(data, offset, bool(config & 0x08), config & 0x07, "CTR")
    return kid, ctr, offset


# -- Keys (RFC 9605 section 4.4.2) ---------------------------------------------------


def derive_key_salt(base_key: bytes, kid: int, suite: int) -> tuple[bytes, bytes]:
    """(sframe_key, sframe_salt) for `base_key` under `kid` and `suite`.

    sframe_secret = HKDF-Extract("", base_key); each label is the ASCII prefix, KID as
    8 bytes big-endian (not the header's compact form) and the suite as 2 bytes."""
    params = _suite_params(suite)
    _check_value("KID", kid)
    sframe_secret = hmac.digest(b"", base_key, params.hashlib_name)
    suffix = kid.to_bytes(8, "big") + suite.to_bytes(2, "big")

    def expand(label: bytes, length: int) -> bytes:
        return HKDFExpand(params.hash_factory(), length, label + suffix).derive(sframe_secret)

    return expand(SFRAME_KEY_LABEL, params.nk), expand(SFRAME_SALT_LABEL, params.nn)


# -- AEAD (RFC 9605 section 4.5) -----------------------------------------------------


class Aead(Protocol):
    """AEAD.Encrypt / AEAD.Decrypt of one cipher suite under one key (RFC 5116 style:
    the tag is the tail of the ciphertext)."""

    def encrypt(self, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes: ...

    def decrypt(self, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        """Raises SFrameError ("auth-failed") if the tag does not verify."""
        ...


class _AesGcm:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def encrypt(self, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        return self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise SFrameError("auth-failed", "SFrame authentication failed") from None


class _AesCtrHmac:
    """Section 4.5.1: AES-CTR then a truncated HMAC over lengths, nonce, AAD and
    ciphertext."""

    def __init__(self, key: bytes, params: _SuiteParams) -> None:
        assert params.nka is not None
        self._enc_key = key[: params.nka]
        self._auth_key = key[params.nka :]
        self._hash = params.hashlib_name
        self._nt = params.nt

    def _ctr(self, nonce: bytes, data: bytes) -> bytes:
        # The initial counter block is the nonce followed by four zero bytes.
        cipher = Cipher(algorithms.AES(self._enc_key), modes.CTR(nonce + bytes(4)))
        encryptor = cipher.encryptor()
        return encryptor.update(data) + encryptor.finalize()

    def _tag(self, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
        lengths = b"".join(n.to_bytes(8, "big") for n in (len(aad), len(ct), self._nt))
        return hmac.digest(self._auth_key, lengths + nonce + aad + ct, self._hash)[: self._nt]

    def encrypt(self, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        ct = self._ctr(nonce, plaintext)
        return ct + self._tag(nonce, aad, ct)

    def decrypt(self, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        if len(ciphertext) < self._nt:
            raise SFrameError("auth-failed", "SFrame ciphertext shorter than its tag")
        ct, tag = ciphertext[: -self._nt], ciphertext[-self._nt :]
        if not hmac.compare_digest(tag, self._tag(nonce, aad, ct)):
            raise SFrameError("auth-failed", "SFrame authentication failed")
        return self._ctr(nonce, ct)


def new_aead(suite: int, key: bytes) -> Aead:
    """The AEAD of `suite` keyed with `key` (sframe_key, AEAD.Nk bytes)."""
    params = _suite_params(suite)
    if len(key) != params.nk:
        raise ValueError(f"suite 0x{suite:04x} needs a {params.nk}-byte key, not {len(key)}")
    if params.nka is None:
        return _AesGcm(key)
    return _AesCtrHmac(key, params)


def _nonce(salt: bytes, ctr: int) -> bytes:
    # Section 4.4.3: CTR encoded big-endian in Nn bytes, XORed with sframe_salt.
    return (int.from_bytes(salt, "big") ^ ctr).to_bytes(len(salt), "big")


# -- Sender and receiver (RFC 9605 sections 4.4.3 and 4.4.4) -------------------------


class CounterExhaustedError(RuntimeError):
    """The sender used every CTR its key allows; it needs a new key (new KID)."""


class SFrameSender:
    """Encrypts frames under one sender key. Each call takes the next CTR, so no
    (KID, CTR) pair is ever used twice with this key (section 4.3)."""

    def __init__(
        self,
        base_key: bytes,
        kid: int,
        suite: int = CipherSuite.AES_128_GCM_SHA256_128,
        *,
        ctr: int = 0,
    ) -> None:
        """`ctr` is the first counter to use; only tests start anywhere but 0."""
        _check_value("CTR", ctr)
        key, self._salt = derive_key_salt(base_key, kid, suite)
        self._aead = new_aead(suite, key)
        self._kid = kid
        self._next_ctr: int | None = ctr

    @property
    def kid(self) -> int:
        return self._kid

    @property
    def next_ctr(self) -> int | None:
        """The CTR the next frame will carry; None once every counter is used."""
        return self._next_ctr

    def encrypt(self, plaintext: bytes, metadata: bytes = b"") -> bytes:
        """header || AEAD.Encrypt(sframe_key, nonce, header || metadata, plaintext).

        `metadata` is authenticated but not sent: the receiver must supply the same."""
        ctr = self._next_ctr
        if ctr is None:
            raise CounterExhaustedError(f"KID {self._kid} has used every CTR")
        self._next_ctr = ctr + 1 if ctr < MAX_VALUE else None
        header = encode_header(self._kid, ctr)
        return header + self._aead.encrypt(_nonce(self._salt, ctr), header + metadata, plaintext)


class ReplayWindow:
    """Counter-based anti-replay for one KID, after RFC 3711 section 3.3.2 (which RFC
    9605 section 9.3 suggests adapting).

    It remembers the highest CTR accepted and which of the REPLAY_WINDOW counters at
    or below it were seen. A CTR above the highest is new; one within the window is
    accepted once; one REPLAY_WINDOW or more below the highest is too old to tell,
    so it is refused. Frames therefore may arrive out of order by up to 127 counters.
    """

    def __init__(self, size: int = REPLAY_WINDOW) -> None:
        self._size = size
        self._highest: int | None = None
        self._seen = 0
        """Bit i set: CTR highest - i was accepted."""

    def check(self, ctr: int) -> None:
        """Raise SFrameError ("replayed" or "too-old") if `ctr` may not be accepted;
        changes nothing."""
        if self._highest is None or ctr > self._highest:
            return
        behind = self._highest - ctr
        if behind >= self._size:
            raise SFrameError("too-old", f"SFrame CTR {ctr} is older than the replay window")
        if self._seen >> behind & 1:
            raise SFrameError("replayed", f"SFrame CTR {ctr} was already received")

    def accept(self, ctr: int) -> None:
        """Record `ctr`; call only after `check` passed and the frame authenticated."""
        if self._highest is None or ctr > self._highest:
            shift = ctr - self._highest if self._highest is not None else self._size
            self._seen = (self._seen << shift | 1) & ((1 << self._size) - 1)
            self._highest = ctr
        else:
            self._seen |= 1 << (self._highest - ctr)


@dataclass
class _ReceiverKey:
    base_key: bytes
    salt: bytes
    aead: Aead
    window: ReplayWindow


class SFrameReceiver:
    """Decrypts frames from any sender whose key it holds, chosen by the header's KID.

    Every KID has its own replay window (see ReplayWindow). The window only moves for
    frames that authenticate, so forged frames cannot push it forward."""

    def __init__(self, suite: int = CipherSuite.AES_128_GCM_SHA256_128) -> None:
        _suite_params(suite)
        self._suite = suite
        self._keys: dict[int, _ReceiverKey] = {}

    def add_key(self, kid: int, base_key: bytes) -> None:
        """Accept frames under `kid`. Adding the key `kid` already has changes nothing,
        so a duplicated key delivery cannot reopen the replay window; a different key
        replaces it and starts a new window, as its sender starts counting again."""
        current = self._keys.get(kid)
        if current is not None and hmac.compare_digest(current.base_key, base_key):
            return
        key, salt = derive_key_salt(base_key, kid, self._suite)
        self._keys[kid] = _ReceiverKey(
            bytes(base_key), salt, new_aead(self._suite, key), ReplayWindow()
        )

    def remove_key(self, kid: int) -> None:
        """Stop accepting frames under `kid`; does nothing if it has no key."""
        self._keys.pop(kid, None)

    def decrypt(self, frame: bytes, metadata: bytes = b"") -> bytes:
        """The plaintext of one SFrame ciphertext. Raises SFrameError, and leaves the
        replay window as it was, if the header is malformed or truncated, the KID has
        no key, the CTR was seen or is too old, or the tag does not verify."""
        kid, ctr, header_length = decode_header(frame)
        entry = self._keys.get(kid)
        if entry is None:
            raise SFrameError("unknown-kid", f"SFrame KID {kid} has no key")
        entry.window.check(ctr)
        aad = frame[:header_length] + metadata
        plaintext = entry.aead.decrypt(_nonce(entry.salt, ctr), aad, frame[header_length:])
        entry.window.accept(ctr)
        return plaintext


__all__ = [
    "MAX_VALUE",
    "REPLAY_WINDOW",
    "SFRAME_KEY_LABEL",
    "SFRAME_SALT_LABEL",
    "Aead",
    "CipherSuite",
    "CounterExhaustedError",
    "ReplayWindow",
    "SFrameError",
    "SFrameReceiver",
    "SFrameSender",
    "decode_header",
    "derive_key_salt",
    "encode_header",
    "new_aead",
]
