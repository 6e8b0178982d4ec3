"""SFrame (RFC 9605): confide.e2ee.sframe against the Appendix C test vectors in
tests/vectors/sframe_rfc9605.json, the frames a receiver must refuse, and frames
crossing between Python and static/sframe.js (run under node)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from confide.e2ee.sframe import (
    MAX_VALUE,
    REPLAY_WINDOW,
    SFRAME_KEY_LABEL,
    SFRAME_SALT_LABEL,
    CipherSuite,
    CounterExhaustedError,
    SFrameError,
    SFrameReceiver,
    SFrameSender,
    decode_header,
    derive_key_salt,
    encode_header,
    new_aead,
)

TESTS = Path(__file__).parent
VECTORS = json.loads((TESTS / "vectors" / "sframe_rfc9605.json").read_text())
HEADER_VECTORS = VECTORS["header"]["vectors"]
AES_CTR_HMAC_VECTORS = VECTORS["aes_ctr_hmac"]["vectors"]
SFRAME_VECTORS = VECTORS["sframe"]["vectors"]

BASE_KEY = bytes(range(16))
OTHER_KEY = bytes(range(16, 32))
METADATA = b"VP8 payload header"
PLAINTEXT = b"a video frame"


def header_id(vector: dict[str, str]) -> str:
    return f"kid={vector['kid']},ctr={vector['ctr']}"


def suite_id(vector: dict[str, str]) -> str:
    return f"suite={vector['cipher_suite']}"


def pair(kid: int = 7) -> tuple[SFrameSender, SFrameReceiver]:
    receiver = SFrameReceiver()
    receiver.add_key(kid, BASE_KEY)
    return SFrameSender(BASE_KEY, kid), receiver


def refused(reason: str) -> Any:
    """pytest.raises for an SFrameError (a ValueError) with this reason."""
    return pytest.raises(ValueError, check=lambda error: getattr(error, "reason", None) == reason)


# -- RFC 9605 Appendix C.1 ------------------------------------------------------------


def test_appendix_c1_has_every_header_vector() -> None:
    """RFC 9605 Appendix C.1 lists 289 KID/CTR pairs (17 KIDs x 17 CTRs)."""
    assert len(HEADER_VECTORS) == 289


@pytest.mark.parametrize("vector", HEADER_VECTORS, ids=header_id)
def test_encode_header_matches_appendix_c1(vector: dict[str, str]) -> None:
    """RFC 9605 Appendix C.1 (section 4.3): encoding KID and CTR gives the header."""
    kid, ctr = int(vector["kid"], 16), int(vector["ctr"], 16)
    assert encode_header(kid, ctr).hex() == vector["header"]


@pytest.mark.parametrize("vector", HEADER_VECTORS, ids=header_id)
def test_decode_header_matches_appendix_c1(vector: dict[str, str]) -> None:
    """RFC 9605 Appendix C.1 (section 4.3): decoding the header gives KID and CTR."""
    header = bytes.fromhex(vector["header"])
    kid, ctr = int(vector["kid"], 16), int(vector["ctr"], 16)
    assert decode_header(header + b"payload") == (kid, ctr, len(header))


# -- RFC 9605 Appendix C.2 ------------------------------------------------------------


@pytest.mark.parametrize("vector", AES_CTR_HMAC_VECTORS, ids=suite_id)
def test_aes_ctr_hmac_matches_appendix_c2(vector: dict[str, str]) -> None:
    """RFC 9605 Appendix C.2 (section 4.5.1): AEAD.Encrypt gives ct, AEAD.Decrypt pt."""
    aead = new_aead(int(vector["cipher_suite"], 16), bytes.fromhex(vector["key"]))
    nonce, aad = bytes.fromhex(vector["nonce"]), bytes.fromhex(vector["aad"])
    assert aead.encrypt(nonce, aad, bytes.fromhex(vector["pt"])).hex() == vector["ct"]
    assert aead.decrypt(nonce, aad, bytes.fromhex(vector["ct"])).hex() == vector["pt"]


# -- RFC 9605 Appendix C.3 ------------------------------------------------------------


def test_appendix_c3_covers_every_suite() -> None:
    """RFC 9605 Appendix C.3 has one vector per registered suite (section 8.1)."""
    assert sorted(int(v["cipher_suite"], 16) for v in SFRAME_VECTORS) == list(CipherSuite)


@pytest.mark.parametrize("vector", SFRAME_VECTORS, ids=suite_id)
def test_labels_match_appendix_c3(vector: dict[str, str]) -> None:
    """RFC 9605 Appendix C.3 (section 4.4.2): label = prefix, KID in 8 bytes, suite in 2."""
    suffix = int(vector["kid"], 16).to_bytes(8, "big") + int(vector["cipher_suite"], 16).to_bytes(
        2, "big"
    )
    assert (SFRAME_KEY_LABEL + suffix).hex() == vector["sframe_key_label"]
    assert (SFRAME_SALT_LABEL + suffix).hex() == vector["sframe_salt_label"]


@pytest.mark.parametrize("vector", SFRAME_VECTORS, ids=suite_id)
def test_derive_key_salt_matches_appendix_c3(vector: dict[str, str]) -> None:
    """RFC 9605 Appendix C.3 (section 4.4.2): derive_key_salt gives sframe_key, sframe_salt."""
    key, salt = derive_key_salt(
        bytes.fromhex(vector["base_key"]), int(vector["kid"], 16), int(vector["cipher_suite"], 16)
    )
    assert key.hex() == vector["sframe_key"]
    assert salt.hex() == vector["sframe_salt"]


@pytest.mark.parametrize("vector", SFRAME_VECTORS, ids=suite_id)
def test_encrypt_matches_appendix_c3(vector: dict[str, str]) -> None:
    """RFC 9605 Appendix C.3 (section 4.4.3): encrypt(ctr, kid, metadata, pt) == ct."""
    sender = SFrameSender(
        bytes.fromhex(vector["base_key"]),
        int(vector["kid"], 16),
        int(vector["cipher_suite"], 16),
        ctr=int(vector["ctr"], 16),
    )
    frame = sender.encrypt(bytes.fromhex(vector["pt"]), bytes.fromhex(vector["metadata"]))
    assert frame.hex() == vector["ct"]


@pytest.mark.parametrize("vector", SFRAME_VECTORS, ids=suite_id)
def test_decrypt_matches_appendix_c3(vector: dict[str, str]) -> None:
    """RFC 9605 Appendix C.3 (section 4.4.4): decrypt(metadata, ct) == pt."""
    receiver = SFrameReceiver(int(vector["cipher_suite"], 16))
    receiver.add_key(int(vector["kid"], 16), bytes.fromhex(vector["base_key"]))
    plaintext = receiver.decrypt(bytes.fromhex(vector["ct"]), bytes.fromhex(vector["metadata"]))
    assert plaintext.hex() == vector["pt"]


# -- Header edge cases (section 4.3) --------------------------------------------------


def test_decode_header_refuses_empty_input() -> None:
    with refused("malformed"):
        decode_header(b"")


def test_decode_header_refuses_truncated_kid_and_ctr() -> None:
    header = encode_header(0x123, 0x4567)
    for length in range(1, len(header)):
        with refused("malformed"):
            decode_header(header[:length])


@pytest.mark.parametrize("header", ["8805", "0805", "890012", "09000f"])
def test_decode_header_refuses_non_minimal_values(header: str) -> None:
    """Section 4.3: values below 8 go in the config byte, others in the fewest bytes."""
    with refused("malformed"):
        decode_header(bytes.fromhex(header))


@pytest.mark.parametrize(("kid", "ctr"), [(-1, 0), (0, -1), (MAX_VALUE + 1, 0), (0, 2**64)])
def test_encode_header_refuses_values_outside_64_bits(kid: int, ctr: int) -> None:
    with pytest.raises(ValueError):
        encode_header(kid, ctr)


# -- Sender and receiver --------------------------------------------------------------


def test_round_trip_with_metadata_uses_successive_counters() -> None:
    sender, receiver = pair(kid=0x1234)
    for ctr in range(10):
        frame = sender.encrypt(PLAINTEXT, METADATA)
        assert decode_header(frame)[:2] == (0x1234, ctr)
        assert receiver.decrypt(frame, METADATA) == PLAINTEXT
    assert sender.next_ctr == 10


def test_default_suite_is_aes_128_gcm_with_16_byte_tag() -> None:
    sender, _ = pair(kid=7)
    assert len(sender.encrypt(PLAINTEXT)) == 1 + len(PLAINTEXT) + 16


def test_sender_stops_after_the_last_counter() -> None:
    """Section 7.4: never encrypt twice with the same key and nonce."""
    sender = SFrameSender(BASE_KEY, 1, ctr=MAX_VALUE)
    sender.encrypt(PLAINTEXT)
    assert sender.next_ctr is None
    with pytest.raises(CounterExhaustedError):
        sender.encrypt(PLAINTEXT)


def test_unknown_kid_is_refused() -> None:
    sender = SFrameSender(BASE_KEY, 7)
    receiver = SFrameReceiver()
    receiver.add_key(8, BASE_KEY)
    with refused("unknown-kid"):
        receiver.decrypt(sender.encrypt(PLAINTEXT))


def test_removed_key_is_refused() -> None:
    sender, receiver = pair()
    receiver.remove_key(7)
    receiver.remove_key(7)
    with refused("unknown-kid"):
        receiver.decrypt(sender.encrypt(PLAINTEXT))


def test_flipped_tag_bit_is_refused() -> None:
    sender, receiver = pair()
    frame = bytearray(sender.encrypt(PLAINTEXT, METADATA))
    frame[-1] ^= 0x01
    with refused("auth-failed"):
        receiver.decrypt(bytes(frame), METADATA)


def test_flipped_ciphertext_bit_is_refused() -> None:
    sender, receiver = pair()
    frame = bytearray(sender.encrypt(PLAINTEXT, METADATA))
    frame[2] ^= 0x80
    with refused("auth-failed"):
        receiver.decrypt(bytes(frame), METADATA)


def test_flipped_header_bit_is_refused() -> None:
    """Section 4.4.3: the header is AAD; here CTR 1 becomes CTR 0, which has a key."""
    sender, receiver = pair(kid=0x1234)
    sender.encrypt(PLAINTEXT)
    frame = bytearray(sender.encrypt(PLAINTEXT))
    assert frame[:3].hex() == "911234"
    frame[0] ^= 0x01
    with refused("auth-failed"):
        receiver.decrypt(bytes(frame))


def test_other_metadata_is_refused() -> None:
    """Section 4.4.3: metadata is AAD, so it must match on both ends."""
    sender, receiver = pair()
    with refused("auth-failed"):
        receiver.decrypt(sender.encrypt(PLAINTEXT, METADATA), b"other")


def test_same_kid_under_another_key_is_refused() -> None:
    _, receiver = pair()
    with refused("auth-failed"):
        receiver.decrypt(SFrameSender(OTHER_KEY, 7).encrypt(PLAINTEXT))


def test_truncated_header_is_refused() -> None:
    _, receiver = pair()
    for frame in (b"", bytes.fromhex("9912")):
        with refused("malformed"):
            receiver.decrypt(frame)


def test_frame_shorter_than_tag_is_refused() -> None:
    sender, receiver = pair()
    with refused("auth-failed"):
        receiver.decrypt(sender.encrypt(PLAINTEXT)[:10])


# -- Replay window --------------------------------------------------------------------


def frames_from(count: int, kid: int = 3) -> tuple[list[bytes], SFrameReceiver]:
    sender = SFrameSender(BASE_KEY, kid)
    frames = [sender.encrypt(PLAINTEXT) for _ in range(count)]
    receiver = SFrameReceiver()
    receiver.add_key(kid, BASE_KEY)
    return frames, receiver


def test_replayed_ctr_is_refused() -> None:
    frames, receiver = frames_from(1)
    receiver.decrypt(frames[0])
    with refused("replayed"):
        receiver.decrypt(frames[0])


def test_out_of_order_frames_within_the_window_are_accepted_once() -> None:
    frames, receiver = frames_from(REPLAY_WINDOW)
    receiver.decrypt(frames[REPLAY_WINDOW - 1])
    receiver.decrypt(frames[0])  # 127 behind: the oldest the window holds
    receiver.decrypt(frames[60])
    for index in (0, 60, REPLAY_WINDOW - 1):
        with refused("replayed"):
            receiver.decrypt(frames[index])


def test_ctr_older_than_the_window_is_refused() -> None:
    frames, receiver = frames_from(REPLAY_WINDOW + 1)
    receiver.decrypt(frames[REPLAY_WINDOW])
    with refused("too-old"):
        receiver.decrypt(frames[0])


def test_window_slides_past_large_jumps() -> None:
    sender = SFrameSender(BASE_KEY, 3, ctr=10**6)
    frames, receiver = frames_from(2)
    receiver.decrypt(frames[1])
    receiver.decrypt(sender.encrypt(PLAINTEXT))
    with refused("too-old"):
        receiver.decrypt(frames[0])


def test_each_kid_has_its_own_window() -> None:
    frames, receiver = frames_from(1, kid=3)
    receiver.add_key(4, OTHER_KEY)
    receiver.decrypt(frames[0])
    receiver.decrypt(SFrameSender(OTHER_KEY, 4).encrypt(PLAINTEXT))  # CTR 0, other KID


def test_forged_frame_does_not_move_the_window() -> None:
    frames, receiver = frames_from(1)
    forged = SFrameSender(OTHER_KEY, 3, ctr=1000).encrypt(PLAINTEXT)
    with refused("auth-failed"):
        receiver.decrypt(forged)
    receiver.decrypt(frames[0])


def test_adding_the_same_key_again_keeps_the_window() -> None:
    frames, receiver = frames_from(1)
    receiver.decrypt(frames[0])
    receiver.add_key(3, BASE_KEY)
    with refused("replayed"):
        receiver.decrypt(frames[0])


def test_a_new_key_for_the_kid_starts_a_new_window() -> None:
    frames, receiver = frames_from(1)
    receiver.decrypt(frames[0])
    receiver.add_key(3, OTHER_KEY)
    receiver.decrypt(SFrameSender(OTHER_KEY, 3).encrypt(PLAINTEXT))  # CTR 0 again


# -- Python and JavaScript agree ------------------------------------------------------


def run_js(request: dict[str, Any]) -> bytes:
    """One encrypt or decrypt by static/sframe.js, through tests/js/sframe_cli.mjs."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed for the JavaScript tests: ./run test installs it")
    result = subprocess.run(
        [node, str(TESTS / "js" / "sframe_cli.mjs")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise SFrameError("js", result.stderr.strip())
    return bytes.fromhex(result.stdout.strip())


CROSS_CASES = [
    pytest.param(CipherSuite.AES_128_GCM_SHA256_128, 5, 0, id="gcm128-short-header"),
    pytest.param(CipherSuite.AES_128_GCM_SHA256_128, 0x0102, 0x4567, id="gcm128"),
    pytest.param(CipherSuite.AES_128_GCM_SHA256_128, MAX_VALUE, 2**53 + 1, id="gcm128-64bit"),
    pytest.param(CipherSuite.AES_256_GCM_SHA512_128, 300, 9, id="gcm256"),
    pytest.param(CipherSuite.AES_128_CTR_HMAC_SHA256_80, 300, 9, id="ctr-hmac-80"),
]


@pytest.mark.parametrize(("suite", "kid", "ctr"), CROSS_CASES)
def test_frame_from_python_decrypts_in_javascript(suite: int, kid: int, ctr: int) -> None:
    frame = SFrameSender(BASE_KEY, kid, suite, ctr=ctr).encrypt(PLAINTEXT, METADATA)
    request = {"op": "decrypt", "suite": suite, "key": BASE_KEY.hex(), "kid": str(kid)}
    request |= {"metadata": METADATA.hex(), "data": frame.hex()}
    assert run_js(request) == PLAINTEXT


@pytest.mark.parametrize(("suite", "kid", "ctr"), CROSS_CASES)
def test_frame_from_javascript_decrypts_in_python(suite: int, kid: int, ctr: int) -> None:
    request = {"op": "encrypt", "suite": suite, "key": BASE_KEY.hex(), "kid": str(kid)}
    request |= {"ctr": str(ctr), "metadata": METADATA.hex(), "data": PLAINTEXT.hex()}
    frame = run_js(request)
    assert decode_header(frame)[:2] == (kid, ctr)
    receiver = SFrameReceiver(suite)
    receiver.add_key(kid, BASE_KEY)
    assert receiver.decrypt(frame, METADATA) == PLAINTEXT
    assert frame == SFrameSender(BASE_KEY, kid, suite, ctr=ctr).encrypt(PLAINTEXT, METADATA)


def test_javascript_refuses_a_tampered_python_frame() -> None:
    frame = bytearray(SFrameSender(BASE_KEY, 7).encrypt(PLAINTEXT))
    frame[-1] ^= 0x01
    request = {"op": "decrypt", "key": BASE_KEY.hex(), "kid": 7, "data": frame.hex()}
    with pytest.raises(SFrameError, match="authentication failed"):
        run_js(request)
