"""Keys derived from the meeting link's secret (DESIGN.md section 3).

The expected bytes come from HKDF written out here with `hmac` (RFC 5869 section
2), not from the code under test, and are pinned as a known answer so that a
change of salt, info or hash shows up."""

from __future__ import annotations

import hashlib
import hmac

from confide.e2ee.link import (
    decode_link_secret,
    derive_from_link,
    derive_join_token,
    encode_base64url,
)
from confide.rooms.meeting import join_token_verifier

LINK_SECRET = bytes(range(32))
MEETING_ID = "mfrggzdfmztwq2lknnwg23tpoa"
JOIN_TOKEN = bytes.fromhex("3fb5b9dd84c9bc8484e9860c43f61e27fc8db17cc49506964f8aec14c08bc544")
"""HKDF-SHA-256(ikm=LINK_SECRET, salt=MEETING_ID, info='confide/1 join-token', L=32)."""


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


def test_reference_hkdf_gives_the_pinned_join_token() -> None:
    assert hkdf_sha256(LINK_SECRET, MEETING_ID.encode(), b"confide/1 join-token", 32) == JOIN_TOKEN


def test_join_token_is_the_known_answer() -> None:
    assert derive_join_token(LINK_SECRET, MEETING_ID) == JOIN_TOKEN


def test_join_token_is_hkdf_with_the_meeting_id_as_salt() -> None:
    other_meeting = "nbswy3dpeb3w64tmmqqgc3tbnm"
    expected = hkdf_sha256(LINK_SECRET, other_meeting.encode(), b"confide/1 join-token", 32)
    assert derive_join_token(LINK_SECRET, other_meeting) == expected
    assert expected != JOIN_TOKEN


def test_join_token_depends_on_the_link_secret() -> None:
    other_secret = bytes(32)
    expected = hkdf_sha256(other_secret, MEETING_ID.encode(), b"confide/1 join-token", 32)
    assert derive_join_token(other_secret, MEETING_ID) == expected


def test_each_label_gives_an_independent_key() -> None:
    media_key = derive_from_link(LINK_SECRET, MEETING_ID, "media")
    assert media_key == hkdf_sha256(LINK_SECRET, MEETING_ID.encode(), b"confide/1 media", 32)
    assert media_key != JOIN_TOKEN


def test_server_verifier_is_sha256_of_the_join_token() -> None:
    assert join_token_verifier(derive_join_token(LINK_SECRET, MEETING_ID)) == (
        hashlib.sha256(JOIN_TOKEN).hexdigest()
    )


def test_link_secret_base64url_round_trips_without_padding() -> None:
    secret = bytes.fromhex("fbff") + LINK_SECRET  # bytes that need '-' and '_'
    text = encode_base64url(secret)
    assert text == "-_8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHw"
    assert decode_link_secret(text) == secret
