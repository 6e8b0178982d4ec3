"""Keys derived from the meeting link's secret (docs/design.md, 'The key schedule').

The expected bytes come from HKDF written out here with `hmac` (RFC 5869 section
2), not from the code under test, and are pinned as a known answer so that a
change of salt, info or hash shows up."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from confide.e2ee.link import (
    decode_link_secret,
    derive_from_link,
    derive_join_key,
    encode_base64url,
    join_key_public,
)
from confide.rooms.meeting import join_challenge

LINK_SECRET = bytes(range(32))
MEETING_ID = "mfrggzdfmztwq2lknnwg23tpoa"


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 section 2.2 (extract) and 2.3 (expand)."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    block = b""
    okm = b""
    counter = 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def test_reference_hkdf_matches_rfc5869_test_case_1() -> None:
    # RFC 5869 appendix A.1.
    okm = hkdf_sha256(
        ikm=bytes.fromhex("0b" * 22),
        salt=bytes.fromhex("000102030405060708090a0b0c"),
        info=bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        length=42,
    )
    assert okm == bytes.fromhex(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def reference_join_key(link_secret: bytes = LINK_SECRET, meeting_id: str = MEETING_ID) -> bytes:
    """The public join key whose seed is HKDF-SHA-256(link secret, salt = meeting id,
    info 'confide/1 join-key', 32 bytes), computed with the reference HKDF."""
    seed = hkdf_sha256(link_secret, meeting_id.encode(), b"confide/1 join-key", 32)
    key = Ed25519PrivateKey.from_private_bytes(seed)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_join_key_is_ed25519_from_the_hkdf_seed() -> None:
    assert join_key_public(derive_join_key(LINK_SECRET, MEETING_ID)) == reference_join_key()


def test_join_key_depends_on_the_meeting_and_the_link_secret() -> None:
    other_meeting = "nbswy3dpeb3w64tmmqqgc3tbnm"
    assert join_key_public(derive_join_key(LINK_SECRET, other_meeting)) == (
        reference_join_key(meeting_id=other_meeting)
    )
    assert reference_join_key(meeting_id=other_meeting) != reference_join_key()
    assert reference_join_key(link_secret=bytes(32)) != reference_join_key()


def test_each_label_gives_an_independent_key() -> None:
    media_key = derive_from_link(LINK_SECRET, MEETING_ID, "media")
    assert media_key == hkdf_sha256(LINK_SECRET, MEETING_ID.encode(), b"confide/1 media", 32)
    assert media_key != derive_from_link(LINK_SECRET, MEETING_ID, "join-key")


BROWSER_JOIN_KEY = """
import { webcrypto } from 'node:crypto';
globalThis.crypto ??= webcrypto;
const { deriveJoinKey, base64url } = await import('./src/confide/static/protocol.js');
const request = JSON.parse(process.argv[1]);
const secret = Uint8Array.from(Buffer.from(request.secret, 'hex'));
const key = await deriveJoinKey(secret, request.meeting);
const challenge = Buffer.from(request.challenge, 'hex');
const proof = new Uint8Array(await crypto.subtle.sign('Ed25519', key.privateKey, challenge));
const hex = Buffer.from(proof).toString('hex');
console.log(JSON.stringify({ public: base64url(key.publicKey), proof: hex }));
"""


def test_the_browser_derives_the_same_join_key_and_its_proof_verifies() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed for the JavaScript tests: ./run test installs it")
    challenge = join_challenge(MEETING_ID, bytes(range(16)))
    request = {"secret": LINK_SECRET.hex(), "meeting": MEETING_ID, "challenge": challenge.hex()}
    result = subprocess.run(
        [node, "--input-type=module", "-e", BROWSER_JOIN_KEY, json.dumps(request)],
        cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=60, check=True,
    )
    browser = json.loads(result.stdout)
    assert decode_link_secret(browser["public"]) == reference_join_key()
    derive_join_key(LINK_SECRET, MEETING_ID).public_key().verify(
        bytes.fromhex(browser["proof"]), challenge
    )


def test_link_secret_base64url_round_trips_without_padding() -> None:
    secret = bytes.fromhex("fbff") + LINK_SECRET  # bytes that need '-' and '_'
    text = encode_base64url(secret)
    assert text == "-_8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHw"
    assert decode_link_secret(text) == secret
