"""The meeting key schedule (docs/design.md, 'The key schedule'): confide.e2ee.keys on
its own, and against static/e2ee.js run under node (tests/js/keys_cli.mjs), in both
directions.

Known answers come from HKDF written out here with `hmac` (RFC 5869 section 2),
hashlib and AESGCM, not from the code under test, so a change of label, salt, AAD
or encoding shows up."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import math
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from confide.e2ee.keys import (
    CODE_GROUP,
    CODE_GROUPS,
    Announcement,
    E2eeError,
    Identity,
    RosterKeys,
    SealedChat,
    code_commitment,
    fingerprint,
    hkdf,
    kid_of,
    open_announcement,
    open_chat,
    pairwise_key,
    parse_chat,
    ratchet,
    seal_chat,
    security_code,
    unwrap_sender_key,
    wrap_sender_key,
)
from confide.e2ee.link import derive_from_link

TESTS = Path(__file__).parent
KEYS_CLI = TESTS / "js" / "keys_cli.mjs"

LINK_SECRET = bytes(range(32))
MEETING_ID = "mfrggzdfmztwq2lknnwg23tpoa"
OTHER_MEETING_ID = "nbswy3dpeb3w64tmmqqgc3tbnm"
ROSTER = RosterKeys.from_link(LINK_SECRET, MEETING_ID)
SENDER_KEY = bytes(range(32, 64))

RATCHET_CHAIN = [
    bytes.fromhex("daf5dba734cdade4b6a6001fa5af8119d4d76261569e20c7a2c24e410048440e"),
    bytes.fromhex("945db5f4e3e15ee611a004228797639b7c72b0ac53defb202909357d318c8703"),
    bytes.fromhex("28325e55cd0700ea4176679b650cb8538611c7198c26fc8df7d9eccbafedaf78"),
]
"""ratchet applied 1, 2 and 3 times to bytes(range(32)):
HKDF-SHA-256(ikm=key, salt='', info='confide/1 ratchet', L=32)."""


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
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


def fixed_identity(seed: int, sender_id: int) -> Identity:
    """An identity with known private keys, so cases are the same on every run."""
    return Identity(
        X25519PrivateKey.from_private_bytes(bytes([seed]) * 32),
        Ed25519PrivateKey.from_private_bytes(bytes([seed + 1]) * 32),
        sender_id,
    )


ALICE = fixed_identity(1, 0x0A11CE)
BOB = fixed_identity(3, 0x000B0B)
CAROL = fixed_identity(5, 0xCA201)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def transcript(meeting_id: str, fields: dict[str, Any]) -> bytes:
    """The announcement transcript as e2ee.js builds it: the id as JavaScript prints
    a number (7.0 is "7"), the other fields as the text sent."""
    sender = fields["id"]
    sender_text = str(int(sender)) if isinstance(sender, float) else str(sender)
    return (
        f"confide/1 announce|{meeting_id}|{sender_text}|{fields['x']}|{fields['s']}|{fields['n']}"
        f"|{fields['c']}"
    ).encode()


def signed(fields: dict[str, Any], signer: Identity, roster: RosterKeys = ROSTER) -> str:
    """An announcement with these fields, MACed and signed as a link holder could."""
    text = transcript(roster.meeting_id, fields)
    mac = hmac.new(roster.mac_key, text, hashlib.sha256).digest()
    return json.dumps(fields | {"mac": b64(mac), "sig": b64(signer.signing.sign(text))})


def changed(profile: str, **changes: Any) -> str:
    """The profile with some fields replaced, MAC and signature left as they were."""
    return json.dumps(json.loads(profile) | changes)


def flip(text: str, index: int = 0) -> str:
    """A base64 field with one bit of its decoded bytes flipped."""
    data = bytearray(unb64(text))
    data[index] ^= 0x01
    return b64(bytes(data))


def sealed_name(name: bytes, identity: Identity, roster: RosterKeys = ROSTER) -> str:
    """A name sealed with AESGCM directly, under the name AAD e2ee.js uses."""
    iv = bytes(12)
    aad = b"confide/1 name" + identity.x_public + identity.s_public
    return b64(iv + AESGCM(roster.name_key).encrypt(iv, name, aad))


def announced(identity: Identity, name: str = "Ada") -> Announcement:
    return open_announcement(ROSTER, identity.announce(ROSTER, name))


# -- Primitives ----------------------------------------------------------------------


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


def test_hkdf_matches_rfc5869_test_case_1() -> None:
    # RFC 5869 appendix A.1.
    okm = hkdf(
        bytes.fromhex("0b" * 22),
        bytes.fromhex("000102030405060708090a0b0c"),
        bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
        42,
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_hkdf_encodes_a_text_info_as_utf8() -> None:
    assert hkdf(LINK_SECRET, b"", "confide/1 é", 16) == hkdf_sha256(
        LINK_SECRET, b"", "confide/1 é".encode(), 16
    )


def test_reference_ratchet_gives_the_pinned_chain() -> None:
    key = bytes(range(32))
    for expected in RATCHET_CHAIN:
        key = hkdf_sha256(key, b"", b"confide/1 ratchet")
        assert key == expected


def test_ratchet_chain_is_the_known_answer() -> None:
    key = bytes(range(32))
    for expected in RATCHET_CHAIN:
        key = ratchet(key)
        assert key == expected


def test_ratchet_moves_the_key_forward_deterministically() -> None:
    chain = [SENDER_KEY]
    for _ in range(4):
        chain.append(ratchet(chain[-1]))
    assert len(set(chain)) == len(chain)
    assert ratchet(SENDER_KEY) == chain[1]
    assert all(len(key) == 32 for key in chain)


def test_kid_is_sender_id_times_256_plus_epoch() -> None:
    assert kid_of(5, 3) == 5 * 256 + 3
    assert kid_of(0xFFFFFF, 255) == 2**32 - 1


def test_kid_epoch_wraps_at_256() -> None:
    assert kid_of(5, 259) == kid_of(5, 3)


@pytest.mark.parametrize(("sender_id", "epoch"), [(-1, 0), (2**24, 0), (1, -1)])
def test_kid_refuses_values_javascript_would_pack_differently(sender_id: int, epoch: int) -> None:
    with pytest.raises(ValueError):
        kid_of(sender_id, epoch)


def test_roster_keys_are_hkdf_of_the_roster_key() -> None:
    roster = hkdf_sha256(LINK_SECRET, MEETING_ID.encode(), b"confide/1 roster-key")
    assert roster == derive_from_link(LINK_SECRET, MEETING_ID, "roster-key")
    assert ROSTER.meeting_id == MEETING_ID
    assert ROSTER.mac_key == hkdf_sha256(roster, b"", b"confide/1 roster-mac")
    assert ROSTER.name_key == hkdf_sha256(roster, b"", b"confide/1 roster-names")


def test_roster_keys_depend_on_link_and_meeting() -> None:
    other_link = RosterKeys.from_link(bytes(32), MEETING_ID)
    other_meeting = RosterKeys.from_link(LINK_SECRET, OTHER_MEETING_ID)
    assert len({ROSTER.mac_key, other_link.mac_key, other_meeting.mac_key}) == 3
    assert len({ROSTER.name_key, other_link.name_key, other_meeting.name_key}) == 3


IDENTITY_KEYS = [ALICE.identity, BOB.identity, CAROL.identity]


def expected_code(meeting_id: str, identity_keys: list[bytes]) -> str:
    """The code as docs/e2ee.md describes it, written again here."""
    seed = hashlib.sha256(f"confide/1 security-code|{meeting_id}|".encode()
                          + b"".join(sorted(identity_keys))).digest()
    stream = b"".join(hashlib.sha256(seed + bytes([i])).digest()[:30] for i in range(4))
    values = [int.from_bytes(stream[i : i + 3], "big") for i in range(0, len(stream), 3)]
    return " ".join(f"{v % 100_000:05d}" for v in values if v < 16_700_000)[: 5 * 6 - 1]


def test_security_code_is_the_known_answer() -> None:
    code = security_code(MEETING_ID, IDENTITY_KEYS)
    assert code == expected_code(MEETING_ID, IDENTITY_KEYS)
    assert re.fullmatch(r"\d{5}( \d{5}){4}", code)


def test_security_code_has_more_than_80_bits() -> None:
    assert CODE_GROUPS * math.log2(CODE_GROUP) > 80


def test_security_code_digits_are_uniform() -> None:
    """Over 20,000 meetings, each of the 25 digit positions takes each value about
    equally (chi-square, 9 degrees of freedom, well under the 0.1 % critical 27.9)."""
    counts = [[0] * 10 for _ in range(25)]
    for n in range(20_000):
        digits = security_code(f"meeting-{n}", IDENTITY_KEYS).replace(" ", "")
        for position, digit in enumerate(digits):
            counts[position][int(digit)] += 1
    for position in counts:
        expected = 20_000 / 10
        chi_square = sum((seen - expected) ** 2 / expected for seen in position)
        assert chi_square < 27.9, position


def test_security_code_does_not_depend_on_order() -> None:
    codes = {security_code(MEETING_ID, list(order))
             for order in itertools.permutations(IDENTITY_KEYS)}
    assert len(codes) == 1


def test_security_code_changes_when_a_key_changes() -> None:
    substituted = bytearray(IDENTITY_KEYS[1])
    substituted[20] ^= 0x01
    assert security_code(MEETING_ID, IDENTITY_KEYS) != security_code(
        MEETING_ID, [IDENTITY_KEYS[0], bytes(substituted), IDENTITY_KEYS[2]]
    )


def test_security_code_changes_when_someone_joins() -> None:
    assert security_code(MEETING_ID, IDENTITY_KEYS[:2]) != security_code(MEETING_ID, IDENTITY_KEYS)


def test_fingerprint_is_the_known_answer() -> None:
    digest = hashlib.sha256(b"confide/1 fingerprint" + ALICE.identity).hexdigest()
    expected = f"{digest[0:4]} {digest[4:8]} {digest[8:12]} {digest[12:16]}"
    assert fingerprint(ALICE.identity) == expected
    assert fingerprint(BOB.identity) != expected


# -- Announcements -------------------------------------------------------------------


def test_announcement_round_trip() -> None:
    profile = ALICE.announce(ROSTER, "Ada Lovelace")
    assert open_announcement(ROSTER, profile) == Announcement(
        name="Ada Lovelace",
        sender_id=ALICE.sender_id,
        x_public=ALICE.x_public,
        s_public=ALICE.s_public,
        identity=ALICE.s_public,
        commitment=code_commitment(MEETING_ID, ALICE.s_public, ALICE.reveal),
    )


def test_announcement_has_the_javascript_shape() -> None:
    profile = ALICE.announce(ROSTER, "Ada")
    fields = json.loads(profile)
    assert list(fields) == ["v", "id", "x", "s", "n", "c", "mac", "sig"]
    assert profile == json.dumps(fields, separators=(",", ":"))  # as JSON.stringify
    assert fields["v"] == 1 and fields["id"] == ALICE.sender_id
    assert unb64(fields["x"]) == ALICE.x_public and unb64(fields["s"]) == ALICE.s_public
    text = transcript(MEETING_ID, fields)
    assert unb64(fields["mac"]) == hmac.new(ROSTER.mac_key, text, hashlib.sha256).digest()
    ALICE.signing.public_key().verify(unb64(fields["sig"]), text)


def test_announced_name_is_aes_gcm_under_the_name_key() -> None:
    sealed = unb64(json.loads(ALICE.announce(ROSTER, "Ada"))["n"])
    aad = b"confide/1 name" + ALICE.x_public + ALICE.s_public
    assert AESGCM(ROSTER.name_key).decrypt(sealed[:12], sealed[12:], aad) == b"Ada"


@pytest.mark.parametrize("name", ["", "Zoë 🚀", "名前", "a\u0301 \u200d"])
def test_any_unicode_name_round_trips(name: str) -> None:
    assert announced(ALICE, name).name == name


def test_lone_surrogate_in_a_name_is_sent_as_replacement_character() -> None:
    # TextEncoder does the same; a JSON string can carry a lone surrogate.
    assert announced(ALICE, "a\ud800b").name == "a\ufffdb"


def test_generated_identities_differ_and_have_24_bit_sender_ids() -> None:
    first, second = Identity.generate(), Identity.generate()
    assert first.identity != second.identity
    assert 1 <= first.sender_id < 2**24
    assert len(first.identity) == 32


def test_identity_refuses_sender_id_zero() -> None:
    with pytest.raises(ValueError):
        fixed_identity(1, 0)


def test_wrong_link_secret_fails_the_mac() -> None:
    profile = ALICE.announce(RosterKeys.from_link(bytes(32), MEETING_ID), "Ada")
    with pytest.raises(E2eeError, match="MAC does not match"):
        open_announcement(ROSTER, profile)


def test_other_meeting_fails_the_mac() -> None:
    profile = ALICE.announce(RosterKeys.from_link(LINK_SECRET, OTHER_MEETING_ID), "Ada")
    with pytest.raises(E2eeError, match="MAC does not match"):
        open_announcement(ROSTER, profile)


GENUINE = ALICE.announce(ROSTER, "Ada")
GENUINE_FIELDS = json.loads(GENUINE)

TAMPERED: dict[str, tuple[str, str]] = {
    "mac": (changed(GENUINE, mac=flip(GENUINE_FIELDS["mac"])), "MAC does not match"),
    "signature": (changed(GENUINE, sig=flip(GENUINE_FIELDS["sig"])), "signature does not match"),
    "name": (changed(GENUINE, n=flip(GENUINE_FIELDS["n"], 20)), "MAC does not match"),
    "sender id": (changed(GENUINE, id=ALICE.sender_id + 1), "MAC does not match"),
    "agreement key": (changed(GENUINE, x=b64(BOB.x_public)), "MAC does not match"),
    "signing key": (changed(GENUINE, s=b64(BOB.s_public)), "MAC does not match"),
}


@pytest.mark.parametrize(("profile", "message"), TAMPERED.values(), ids=TAMPERED.keys())
def test_tampered_announcement_is_refused(profile: str, message: str) -> None:
    with pytest.raises(E2eeError, match=message):
        open_announcement(ROSTER, profile)


def test_signature_must_come_from_the_announced_key() -> None:
    # A link holder can make the MAC, but not Alice's signature over Bob's key.
    fields = GENUINE_FIELDS | {"s": b64(BOB.s_public)}
    profile = json.loads(signed(fields, ALICE))
    text = transcript(MEETING_ID, fields)
    profile["sig"] = b64(ALICE.signing.sign(text))
    with pytest.raises(E2eeError, match="signature does not match its key"):
        open_announcement(ROSTER, json.dumps(profile))


def test_name_sealed_for_other_keys_is_refused() -> None:
    # Bob's encrypted name, re-announced under Alice's keys by a link holder.
    bob_name = json.loads(BOB.announce(ROSTER, "Bob"))["n"]
    profile = signed(GENUINE_FIELDS | {"n": bob_name}, ALICE)
    with pytest.raises(E2eeError, match="blob failed to decrypt"):
        open_announcement(ROSTER, profile)


def test_integral_float_sender_id_reads_as_javascript_reads_it() -> None:
    profile = signed(GENUINE_FIELDS | {"id": float(ALICE.sender_id)}, ALICE)
    assert open_announcement(ROSTER, profile).sender_id == ALICE.sender_id


def test_base64_is_read_as_atob_reads_it() -> None:
    # atob ignores ASCII whitespace and missing padding; the MAC covers the text sent.
    x = GENUINE_FIELDS["x"]
    fields = GENUINE_FIELDS | {"x": f" {x[:10]}\n{x[10:]}".rstrip("=")}
    assert open_announcement(ROSTER, signed(fields, ALICE)).x_public == ALICE.x_public


MALFORMED: dict[str, tuple[str, str]] = {
    "not JSON": ("{", "announcement is not JSON"),
    "NaN": ('{"v": NaN}', "announcement is not JSON"),
    "array": ("[1]", "announcement is malformed"),
    "null": ("null", "announcement is malformed"),
    "version 2": (changed(GENUINE, v=2), "announcement is malformed"),
    "version true": (changed(GENUINE, v=True), "announcement is malformed"),
    "version text": (changed(GENUINE, v="1"), "announcement is malformed"),
    "sender id 0": (changed(GENUINE, id=0), "announcement is malformed"),
    "sender id 2^24": (changed(GENUINE, id=2**24), "announcement is malformed"),
    "sender id 1.5": (changed(GENUINE, id=1.5), "announcement is malformed"),
    "sender id text": (changed(GENUINE, id="7"), "announcement is malformed"),
    "sender id true": (changed(GENUINE, id=True), "announcement is malformed"),
    "sender id huge": (changed(GENUINE, id=10**30), "announcement is malformed"),
    "no signature": (changed(GENUINE, sig=None), "announcement is malformed"),
    "name not text": (changed(GENUINE, n=5), "announcement is malformed"),
    "not base64": (changed(GENUINE, x="@@@@"), "announcement is not base64"),
    "base64 one char over": (changed(GENUINE, mac="AAAAA"), "announcement is not base64"),
    "base64 inner padding": (changed(GENUINE, sig="AA=A"), "announcement is not base64"),
    "short key": (changed(GENUINE, x=b64(bytes(31))), "announcement keys are malformed"),
    "long key": (changed(GENUINE, s=b64(bytes(33))), "announcement keys are malformed"),
}


@pytest.mark.parametrize(("profile", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_announcement_is_refused(profile: str, message: str) -> None:
    with pytest.raises(E2eeError, match=f"^{message}$"):
        open_announcement(ROSTER, profile)


# -- Sender keys ---------------------------------------------------------------------


def test_pairwise_key_is_the_same_from_both_ends() -> None:
    assert pairwise_key(ALICE, BOB.x_public, MEETING_ID) == pairwise_key(
        BOB, ALICE.x_public, MEETING_ID
    )


def test_pairwise_key_is_hkdf_of_x25519_over_sorted_keys() -> None:
    shared = ALICE.agreement.exchange(X25519PublicKey.from_public_bytes(BOB.x_public))
    info = b"confide/1 pairwise" + b"".join(sorted([ALICE.x_public, BOB.x_public]))
    expected = hkdf_sha256(shared, MEETING_ID.encode(), info)
    assert pairwise_key(ALICE, BOB.x_public, MEETING_ID) == expected


def test_pairwise_key_depends_on_the_meeting_and_the_peer() -> None:
    key = pairwise_key(ALICE, BOB.x_public, MEETING_ID)
    assert key != pairwise_key(ALICE, BOB.x_public, OTHER_MEETING_ID)
    assert key != pairwise_key(ALICE, CAROL.x_public, MEETING_ID)


def test_low_order_peer_key_is_refused() -> None:
    with pytest.raises(E2eeError):
        pairwise_key(ALICE, bytes(32), MEETING_ID)


ALICE_KID = kid_of(ALICE.sender_id, 3)


def alice_wraps_for_bob(kid: int = ALICE_KID, key: bytes = SENDER_KEY) -> str:
    return wrap_sender_key(ALICE, announced(BOB), MEETING_ID, kid, key)


def sealed_sender_key(sender: Identity, receiver: Identity, kid: int, key: bytes) -> str:
    """A key message sealed with AESGCM directly, under the AAD e2ee.js uses."""
    iv = bytes(12)
    aad = f"confide/1 sender-key|{kid}|".encode() + sender.x_public + receiver.x_public
    sealed = AESGCM(pairwise_key(sender, receiver.x_public, MEETING_ID)).encrypt(iv, key, aad)
    return json.dumps({"t": "sender-key", "kid": kid, "key": b64(iv + sealed)})


def test_sender_key_round_trip() -> None:
    body = alice_wraps_for_bob()
    assert unwrap_sender_key(BOB, announced(ALICE), MEETING_ID, body) == (ALICE_KID, SENDER_KEY)


def test_wrapped_sender_key_is_aes_gcm_under_the_pairwise_key() -> None:
    body = json.loads(alice_wraps_for_bob())
    assert list(body) == ["t", "kid", "key"]
    assert body["t"] == "sender-key" and body["kid"] == ALICE_KID
    sealed = unb64(body["key"])
    aad = f"confide/1 sender-key|{ALICE_KID}|".encode() + ALICE.x_public + BOB.x_public
    aead = AESGCM(pairwise_key(BOB, ALICE.x_public, MEETING_ID))
    assert aead.decrypt(sealed[:12], sealed[12:], aad) == SENDER_KEY


def test_unwrap_refuses_a_key_wrapped_for_someone_else() -> None:
    with pytest.raises(E2eeError, match="blob failed to decrypt"):
        unwrap_sender_key(CAROL, announced(ALICE), MEETING_ID, alice_wraps_for_bob())


def test_unwrap_refuses_a_key_reflected_back_to_its_sender() -> None:
    # Both directions share the pairwise key; the AAD says who sent it to whom.
    bob_kid = kid_of(BOB.sender_id, 0)
    from_bob = sealed_sender_key(BOB, ALICE, bob_kid, SENDER_KEY)
    assert unwrap_sender_key(ALICE, announced(BOB), MEETING_ID, from_bob) == (bob_kid, SENDER_KEY)
    reflected = sealed_sender_key(ALICE, BOB, bob_kid, SENDER_KEY)
    with pytest.raises(E2eeError, match="blob failed to decrypt"):
        unwrap_sender_key(ALICE, announced(BOB), MEETING_ID, reflected)


def test_unwrap_refuses_a_key_from_another_meeting() -> None:
    with pytest.raises(E2eeError, match="blob failed to decrypt"):
        unwrap_sender_key(BOB, announced(ALICE), OTHER_MEETING_ID, alice_wraps_for_bob())


def test_unwrap_refuses_a_kid_naming_another_sender() -> None:
    body = changed(alice_wraps_for_bob(), kid=kid_of(CAROL.sender_id, 3))
    with pytest.raises(E2eeError, match="names another sender"):
        unwrap_sender_key(BOB, announced(ALICE), MEETING_ID, body)


def test_unwrap_refuses_a_changed_epoch() -> None:
    body = changed(alice_wraps_for_bob(), kid=ALICE_KID + 1)
    with pytest.raises(E2eeError, match="blob failed to decrypt"):
        unwrap_sender_key(BOB, announced(ALICE), MEETING_ID, body)


def test_unwrap_refuses_a_changed_wrapped_key() -> None:
    body = alice_wraps_for_bob()
    body = changed(body, key=flip(json.loads(body)["key"], 20))
    with pytest.raises(E2eeError, match="blob failed to decrypt"):
        unwrap_sender_key(BOB, announced(ALICE), MEETING_ID, body)


def test_unwrap_refuses_a_sender_key_of_the_wrong_length() -> None:
    body = sealed_sender_key(ALICE, BOB, ALICE_KID, bytes(16))
    with pytest.raises(E2eeError, match="wrong length"):
        unwrap_sender_key(BOB, announced(ALICE), MEETING_ID, body)


KEY_MESSAGE = sealed_sender_key(ALICE, BOB, ALICE_KID, SENDER_KEY)

MALFORMED_KEY_MESSAGES: dict[str, tuple[str, str]] = {
    "not JSON": ("sender-key", "key message is not JSON"),
    "array": ("[]", "key message is malformed"),
    "other type": (changed(KEY_MESSAGE, t="chat"), "key message is malformed"),
    "kid text": (changed(KEY_MESSAGE, kid=str(ALICE_KID)), "key message is malformed"),
    "kid fraction": (changed(KEY_MESSAGE, kid=ALICE_KID + 0.5), "key message is malformed"),
    "key missing": (changed(KEY_MESSAGE, key=None), "key message is malformed"),
    "not base64": (changed(KEY_MESSAGE, key="!!!!"), "key message is not base64"),
    "too short": (changed(KEY_MESSAGE, key=b64(bytes(27))), "sealed blob is too short"),
}


@pytest.mark.parametrize(
    ("body", "message"), MALFORMED_KEY_MESSAGES.values(), ids=MALFORMED_KEY_MESSAGES.keys()
)
def test_malformed_key_message_is_refused(body: str, message: str) -> None:
    with pytest.raises(E2eeError, match=message):
        unwrap_sender_key(BOB, announced(ALICE), MEETING_ID, body)


def test_wrap_refuses_our_own_mistakes() -> None:
    with pytest.raises(ValueError):
        alice_wraps_for_bob(kid=kid_of(BOB.sender_id, 0))
    with pytest.raises(ValueError):
        alice_wraps_for_bob(key=bytes(16))


# -- Chat ----------------------------------------------------------------------------


def test_chat_round_trip() -> None:
    body = seal_chat(ALICE_KID, 7, SENDER_KEY, "hello, world 👋")
    assert open_chat(body, SENDER_KEY) == "hello, world 👋"


def test_chat_opens_once_parsed() -> None:
    chat = parse_chat(seal_chat(ALICE_KID, 7, SENDER_KEY, "hi"))
    assert (chat.kid, chat.seq) == (ALICE_KID, 7)
    assert open_chat(chat, SENDER_KEY) == "hi"


def test_chat_is_aes_128_gcm_under_a_key_derived_from_the_sender_key() -> None:
    body = json.loads(seal_chat(ALICE_KID, 7, SENDER_KEY, "hi"))
    assert list(body) == ["kid", "n", "c"]
    sealed = unb64(body["c"])
    chat_key = hkdf_sha256(SENDER_KEY, b"", b"confide/1 chat", 16)
    aad = f"confide/1 chat|{ALICE_KID}|7".encode()
    assert AESGCM(chat_key).decrypt(sealed[:12], sealed[12:], aad) == b"hi"


def test_chat_under_another_key_is_refused() -> None:
    body = seal_chat(ALICE_KID, 7, SENDER_KEY, "hi")
    with pytest.raises(E2eeError, match="blob failed to decrypt"):
        open_chat(body, ratchet(SENDER_KEY))


def test_chat_with_a_changed_kid_or_number_is_refused() -> None:
    chat = parse_chat(seal_chat(ALICE_KID, 7, SENDER_KEY, "hi"))
    with pytest.raises(E2eeError, match="blob failed to decrypt"):
        open_chat(SealedChat(ALICE_KID + 1, 7, chat.sealed), SENDER_KEY)
    with pytest.raises(E2eeError, match="blob failed to decrypt"):
        open_chat(SealedChat(ALICE_KID, 8, chat.sealed), SENDER_KEY)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("hi", "chat message is not JSON"),
        ('{"kid": "1", "n": 0, "c": ""}', "chat message is malformed"),
        ('{"kid": 1, "n": 0}', "chat message is malformed"),
        ('{"kid": 1, "c": ""}', "chat message is malformed"),
        ('{"kid": 1, "n": -1, "c": ""}', "chat message is malformed"),
        ('{"kid": 1e300, "n": 0, "c": ""}', "chat message is malformed"),
        ('{"kid": 1, "n": 0, "c": "A"}', "chat message is not base64"),
        ('{"kid": 1, "n": 0, "c": "AAAA"}', "sealed blob is too short"),
    ],
)
def test_malformed_chat_is_refused(body: str, message: str) -> None:
    with pytest.raises(E2eeError, match=message):
        open_chat(body, SENDER_KEY)


# -- Python and JavaScript agree -----------------------------------------------------


class NodeParticipant:
    """One node process running tests/js/keys_cli.mjs: a JavaScript participant whose
    private keys stay inside WebCrypto, driven one step at a time."""

    def __init__(self, node: str) -> None:
        self._process = subprocess.Popen(
            [node, str(KEYS_CLI)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def ask(self, op: str, **request: Any) -> dict[str, Any]:
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps({"op": op, **request}) + "\n")
        process.stdin.flush()
        watchdog = threading.Timer(30, process.kill)  # a hung node fails the test
        watchdog.start()
        try:
            line = process.stdout.readline()
        finally:
            watchdog.cancel()
        if not line:
            stderr = process.stderr.read() if process.stderr else ""
            raise AssertionError(f"keys_cli.mjs stopped: {stderr}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def run(self, op: str, **request: Any) -> dict[str, Any]:
        answer = self.ask(op, **request)
        assert "error" not in answer, answer
        return answer

    def refuses(self, op: str, **request: Any) -> str:
        """The E2eeError message JavaScript throws for this step."""
        answer = self.ask(op, **request)
        assert answer.get("e2ee") is True, answer
        return str(answer["error"])

    def join(self, link_secret: bytes = LINK_SECRET, meeting_id: str = MEETING_ID) -> int:
        """A fresh JavaScript identity in the meeting; its sender id."""
        answer = self.run("join", linkSecret=link_secret.hex(), meetingId=meeting_id)
        return int(answer["senderId"])

    def close(self) -> None:
        process = self._process
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


@pytest.fixture
def js() -> Iterator[NodeParticipant]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed for the JavaScript tests: ./run test installs it")
    participant = NodeParticipant(node)
    yield participant
    participant.close()


def test_javascript_announcement_opens_in_python(js: NodeParticipant) -> None:
    joined = js.run("join", linkSecret=LINK_SECRET.hex(), meetingId=MEETING_ID)
    profile = js.run("announce", name="Ada Lovelace 🚀")["profile"]
    peer = open_announcement(ROSTER, profile)
    assert peer.name == "Ada Lovelace 🚀"
    assert peer.sender_id == joined["senderId"]
    assert peer.x_public.hex() == joined["xPublic"]
    assert peer.s_public.hex() == joined["sPublic"]
    assert peer.identity == peer.s_public
    # The commitment is to the reveal the JavaScript identity keeps, as Python computes it.
    reveal = bytes.fromhex(joined["reveal"])
    assert peer.commitment == code_commitment(MEETING_ID, peer.s_public, reveal)


def test_javascript_announcement_has_the_python_shape(js: NodeParticipant) -> None:
    js.join()
    profile = js.run("announce", name="Ada")["profile"]
    assert list(json.loads(profile)) == list(GENUINE_FIELDS)
    assert profile == json.dumps(json.loads(profile), separators=(",", ":"))


def test_python_announcement_opens_in_javascript(js: NodeParticipant) -> None:
    js.join()
    peer = js.run("open-announcement", profile=ALICE.announce(ROSTER, "Zoë 🚀"))
    assert peer == {
        "name": "Zoë 🚀",
        "senderId": ALICE.sender_id,
        "xPublic": ALICE.x_public.hex(),
        "sPublic": ALICE.s_public.hex(),
        "identity": ALICE.identity.hex(),
        "commitment": code_commitment(MEETING_ID, ALICE.s_public, ALICE.reveal).hex(),
    }


def test_javascript_refuses_a_python_announcement_from_another_link(js: NodeParticipant) -> None:
    js.join()
    profile = ALICE.announce(RosterKeys.from_link(bytes(32), MEETING_ID), "Ada")
    assert js.refuses("open-announcement", profile=profile) == (
        "announcement MAC does not match the meeting link"
    )


FIELDS = GENUINE_FIELDS
X_TEXT = GENUINE_FIELDS["x"]
UNDECODABLE = b"\xef\xbb\xbfA\xff\xe2\x82B\xc0\x80\xed\xa0\x80"

QUIRKY: dict[str, str] = {
    # On the edge of valid, each made as a link holder could.
    "float sender id": signed(FIELDS | {"id": float(ALICE.sender_id)}, ALICE),
    "spaced unpadded base64": signed(FIELDS | {"x": f" {X_TEXT[:9]}\t{X_TEXT[9:-1]}"}, ALICE),
    "extra field": signed(FIELDS | {"extra": [1, 2]}, ALICE),
    "low-order agreement key": signed(FIELDS | {"x": b64(bytes(32))}, ALICE),
    "undecodable name": signed(FIELDS | {"n": sealed_name(UNDECODABLE, ALICE)}, ALICE),
    "signed by another key": signed(FIELDS | {"s": b64(BOB.s_public)}, ALICE),
    "name for other keys": signed(
        FIELDS | {"n": json.loads(BOB.announce(ROSTER, "B"))["n"]}, ALICE
    ),
    "name too short": signed(FIELDS | {"n": b64(bytes(27))}, ALICE),
    "other link": ALICE.announce(RosterKeys.from_link(bytes(32), MEETING_ID), "Ada"),
    "other meeting": ALICE.announce(RosterKeys.from_link(LINK_SECRET, OTHER_MEETING_ID), "Ada"),
}

SAME_VERDICT: dict[str, str] = {
    "genuine": GENUINE,
    **{f"tampered {key}": profile for key, (profile, _) in TAMPERED.items()},
    **{key: profile for key, (profile, _) in MALFORMED.items()},
    **QUIRKY,
}


@pytest.mark.parametrize("profile", SAME_VERDICT.values(), ids=SAME_VERDICT.keys())
def test_javascript_and_python_give_the_same_verdict(js: NodeParticipant, profile: str) -> None:
    js.join()
    answer = js.ask("open-announcement", profile=profile)
    try:
        peer = open_announcement(ROSTER, profile)
    except E2eeError as error:
        assert answer == {"error": str(error), "e2ee": True}
    else:
        assert answer == {
            "name": peer.name,
            "senderId": peer.sender_id,
            "xPublic": peer.x_public.hex(),
            "sPublic": peer.s_public.hex(),
            "identity": peer.identity.hex(),
            "commitment": peer.commitment.hex(),
        }


def test_sender_key_from_javascript_unwraps_in_python(js: NodeParticipant) -> None:
    sender_id = js.join()
    js_peer = open_announcement(ROSTER, js.run("announce", name="JS")["profile"])
    kid = kid_of(sender_id, 3)
    body = js.run("wrap", peer=BOB.announce(ROSTER, "Bob"), kid=kid, key=SENDER_KEY.hex())["body"]
    assert unwrap_sender_key(BOB, js_peer, MEETING_ID, body) == (kid, SENDER_KEY)
    with pytest.raises(E2eeError):
        unwrap_sender_key(CAROL, js_peer, MEETING_ID, body)


def test_sender_key_from_python_unwraps_in_javascript(js: NodeParticipant) -> None:
    js.join()
    js_peer = open_announcement(ROSTER, js.run("announce", name="JS")["profile"])
    body = wrap_sender_key(BOB, js_peer, MEETING_ID, kid_of(BOB.sender_id, 7), SENDER_KEY)
    answer = js.run("unwrap", peer=BOB.announce(ROSTER, "Bob"), body=body)
    assert answer == {"kid": kid_of(BOB.sender_id, 7), "key": SENDER_KEY.hex()}


def test_javascript_refuses_a_python_key_wrapped_for_someone_else(js: NodeParticipant) -> None:
    js.join()
    body = wrap_sender_key(BOB, announced(CAROL), MEETING_ID, kid_of(BOB.sender_id, 0), SENDER_KEY)
    message = js.refuses("unwrap", peer=BOB.announce(ROSTER, "Bob"), body=body)
    assert message == "blob failed to decrypt"


CHAT_TEXTS = ["hello", "", "Zoë says 👋 名前", "lone \ud800 surrogate", "\ufeffleading BOM"]


@pytest.mark.parametrize("text", CHAT_TEXTS)
def test_chat_from_javascript_opens_in_python(js: NodeParticipant, text: str) -> None:
    body = js.run("seal-chat", kid=ALICE_KID, seq=3, key=SENDER_KEY.hex(), text=text)["body"]
    assert (parse_chat(body).kid, parse_chat(body).seq) == (ALICE_KID, 3)
    # What the JavaScript sender would read back is what Python reads.
    expected = js.run("open-chat", body=body, key=SENDER_KEY.hex())["text"]
    assert open_chat(body, SENDER_KEY) == expected
    assert expected == text.replace("\ud800", "\ufffd").removeprefix("\ufeff")


@pytest.mark.parametrize("text", CHAT_TEXTS)
def test_chat_from_python_opens_in_javascript(js: NodeParticipant, text: str) -> None:
    body = seal_chat(ALICE_KID, 7, SENDER_KEY, text)
    answer = js.run("open-chat", body=body, key=SENDER_KEY.hex())
    assert answer == {"kid": ALICE_KID, "seq": 7, "text": open_chat(body, SENDER_KEY)}


@pytest.mark.parametrize(
    "plaintext",
    [b"\xff", b"\xe2\x82", b"A\xc0\x80B", b"\xed\xa0\x80", b"\xf0\x9f\x98", b"\xf5\x80\x80\x80"],
    ids=["ff", "truncated", "overlong", "surrogate", "truncated-4", "beyond-unicode"],
)
def test_undecodable_chat_reads_the_same_in_both(js: NodeParticipant, plaintext: bytes) -> None:
    iv = bytes(12)
    chat_key = hkdf_sha256(SENDER_KEY, b"", b"confide/1 chat", 16)
    sealed = AESGCM(chat_key).encrypt(iv, plaintext, f"confide/1 chat|{ALICE_KID}|0".encode())
    body = json.dumps({"kid": ALICE_KID, "n": 0, "c": b64(iv + sealed)})
    answer = js.run("open-chat", body=body, key=SENDER_KEY.hex())
    assert answer["text"] == open_chat(body, SENDER_KEY)


def test_javascript_refuses_python_chat_under_another_key(js: NodeParticipant) -> None:
    body = seal_chat(ALICE_KID, 7, SENDER_KEY, "hi")
    assert js.refuses("open-chat", body=body, key=ratchet(SENDER_KEY).hex()) == (
        "blob failed to decrypt"
    )


def test_ratchet_chain_matches_javascript(js: NodeParticipant) -> None:
    chain = js.run("ratchet", key=bytes(range(32)).hex(), steps=3)["chain"]
    assert chain == [key.hex() for key in RATCHET_CHAIN]
    key = SENDER_KEY
    python_chain = []
    for _ in range(5):
        key = ratchet(key)
        python_chain.append(key.hex())
    assert js.run("ratchet", key=SENDER_KEY.hex(), steps=5)["chain"] == python_chain


@pytest.mark.parametrize(("info", "length"), [("confide/1 chat", 16), ("confide/1 é", 42)])
def test_hkdf_matches_javascript(js: NodeParticipant, info: str, length: int) -> None:
    answer = js.run("hkdf", secret=LINK_SECRET.hex(), salt=b"salt".hex(), info=info, length=length)
    assert answer["okm"] == hkdf(LINK_SECRET, b"salt", info, length).hex()


@pytest.mark.parametrize(("sender_id", "epoch"), [(1, 0), (0x0A11CE, 3), (0xFFFFFF, 511)])
def test_kid_matches_javascript(js: NodeParticipant, sender_id: int, epoch: int) -> None:
    assert js.run("kid", senderId=sender_id, epoch=epoch)["kid"] == kid_of(sender_id, epoch)


SECURITY_CODE_SETS = {
    "one": [ALICE.identity],
    "three": IDENTITY_KEYS,
    "three reversed": IDENTITY_KEYS[::-1],
    "shared prefix": [b"\x01\x02\x03", b"\x01\x02", b"\x00" * 64, b"\xff" * 64],
    "none": [],
}


@pytest.mark.parametrize(
    "identity_keys", SECURITY_CODE_SETS.values(), ids=SECURITY_CODE_SETS.keys()
)
def test_security_code_matches_javascript(js: NodeParticipant, identity_keys: list[bytes]) -> None:
    keys = [key.hex() for key in identity_keys]
    answer = js.run("security-code", meetingId=MEETING_ID, keys=keys)
    assert answer["code"] == security_code(MEETING_ID, identity_keys)


@pytest.mark.parametrize("identity", [ALICE, BOB, CAROL], ids=["alice", "bob", "carol"])
def test_fingerprint_matches_javascript(js: NodeParticipant, identity: Identity) -> None:
    answer = js.run("fingerprint", key=identity.identity.hex())
    assert answer["fingerprint"] == fingerprint(identity.identity)
