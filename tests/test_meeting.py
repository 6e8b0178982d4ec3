"""Meetings and the directory of meetings: ids, join proofs, capacity, expiry."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from confide.rooms.meeting import (
    UNCLAIMED_MEETING_LIFETIME,
    Directory,
    MeetingError,
    is_meeting_id,
    join_challenge,
    new_meeting_id,
)

JOIN_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
NONCE = bytes(16)
LIFETIME = 3600.0


def public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def claimed_meeting(directory: Directory, now: float = 0.0) -> str:
    meeting = directory.create(now)
    directory.register_join_key(meeting.id, public(JOIN_KEY), now)
    return meeting.id


def proof(meeting_id: str, key: Ed25519PrivateKey = JOIN_KEY, nonce: bytes = NONCE) -> bytes:
    return key.sign(join_challenge(meeting_id, nonce))


# --- Ids -------------------------------------------------------------------------------------


def test_meeting_id_is_26_lower_case_base32_characters() -> None:
    meeting_id = new_meeting_id()
    assert len(meeting_id) == 26
    assert set(meeting_id) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert is_meeting_id(meeting_id)


def test_meeting_ids_are_distinct() -> None:
    assert len({new_meeting_id() for _ in range(1000)}) == 1000


def test_directory_creates_meetings_with_distinct_ids() -> None:
    directory = Directory(LIFETIME)
    ids = {directory.create(0.0).id for _ in range(100)}
    assert len(ids) == 100
    assert all(is_meeting_id(meeting_id) for meeting_id in ids)


def test_is_meeting_id_refuses_wrong_length_and_alphabet() -> None:
    assert not is_meeting_id("a" * 25)
    assert not is_meeting_id("a" * 27)
    assert not is_meeting_id("A" * 26)
    assert not is_meeting_id("0" * 26)  # 0, 1, 8, 9 are not base32
    assert not is_meeting_id("a" * 25 + "=")


def test_get_of_an_unknown_meeting_is_meeting_not_found() -> None:
    with pytest.raises(MeetingError) as caught:
        Directory(LIFETIME).get(new_meeting_id())
    assert caught.value.code == "meeting-not-found"


# --- Join proof ------------------------------------------------------------------------------


def test_the_challenge_binds_the_meeting_and_the_nonce() -> None:
    assert join_challenge("abc", b"\x01\x02") == b"confide/1 join|abc|\x01\x02"


def test_check_proof_accepts_a_signature_by_the_registered_key() -> None:
    directory = Directory(LIFETIME)
    meeting = directory.get(claimed_meeting(directory))
    meeting.check_proof(NONCE, proof(meeting.id))  # does not raise


def test_check_proof_refuses_another_key() -> None:
    directory = Directory(LIFETIME)
    meeting = directory.get(claimed_meeting(directory))
    with pytest.raises(MeetingError) as caught:
        meeting.check_proof(NONCE, proof(meeting.id, key=Ed25519PrivateKey.generate()))
    assert caught.value.code == "bad-token"


def test_check_proof_refuses_a_proof_for_another_nonce() -> None:
    """A proof seen once (a replay) does not answer another connection's challenge."""
    directory = Directory(LIFETIME)
    meeting = directory.get(claimed_meeting(directory))
    with pytest.raises(MeetingError) as caught:
        meeting.check_proof(b"\x01" * 16, proof(meeting.id))
    assert caught.value.code == "bad-token"


def test_check_proof_refuses_a_proof_for_another_meeting() -> None:
    directory = Directory(LIFETIME)
    meeting = directory.get(claimed_meeting(directory))
    with pytest.raises(MeetingError):
        meeting.check_proof(NONCE, proof(new_meeting_id()))


def test_check_proof_refuses_garbage() -> None:
    directory = Directory(LIFETIME)
    meeting = directory.get(claimed_meeting(directory))
    for bad in (b"", bytes(64), b"x" * 63):
        with pytest.raises(MeetingError):
            meeting.check_proof(NONCE, bad)


def test_check_proof_refuses_everything_while_no_join_key_is_registered() -> None:
    meeting = Directory(LIFETIME).create(0.0)
    with pytest.raises(MeetingError) as caught:
        meeting.check_proof(NONCE, proof(meeting.id))
    assert caught.value.code == "bad-token"


def test_join_key_can_be_registered_once_only() -> None:
    directory = Directory(LIFETIME)
    meeting_id = claimed_meeting(directory)
    with pytest.raises(MeetingError) as caught:
        directory.register_join_key(meeting_id, public(Ed25519PrivateKey.generate()), 1.0)
    assert caught.value.code == "already-registered"
    directory.get(meeting_id).check_proof(NONCE, proof(meeting_id))  # the first one still holds


def test_registering_a_join_key_for_an_unknown_meeting_is_meeting_not_found() -> None:
    with pytest.raises(MeetingError) as caught:
        Directory(LIFETIME).register_join_key(new_meeting_id(), bytes(32), 0.0)
    assert caught.value.code == "meeting-not-found"


# --- Joining and leaving ---------------------------------------------------------------------


def test_join_adds_a_participant_with_its_profile() -> None:
    directory = Directory(LIFETIME)
    meeting = directory.get(claimed_meeting(directory))
    participant = meeting.join("opaque profile", 5.0, max_participants=4)
    assert meeting.participants == {participant.id: participant}
    assert participant.profile == "opaque profile"
    assert meeting.last_used_at == 5.0


def test_participant_ids_in_a_meeting_are_distinct() -> None:
    directory = Directory(LIFETIME)
    meeting = directory.get(claimed_meeting(directory))
    for _ in range(50):
        meeting.join("", 0.0, max_participants=100)
    assert len(meeting.participants) == 50


def test_join_beyond_max_participants_is_meeting_full() -> None:
    directory = Directory(LIFETIME)
    meeting = directory.get(claimed_meeting(directory))
    for _ in range(3):
        meeting.join("", 0.0, max_participants=3)
    with pytest.raises(MeetingError) as caught:
        meeting.join("", 0.0, max_participants=3)
    assert caught.value.code == "meeting-full"
    assert len(meeting.participants) == 3


def test_a_place_freed_by_leaving_can_be_taken() -> None:
    directory = Directory(LIFETIME)
    meeting = directory.get(claimed_meeting(directory))
    first = meeting.join("", 0.0, max_participants=1)
    assert meeting.leave(first.id, 1.0) is first
    meeting.join("", 2.0, max_participants=1)  # does not raise


def test_leave_of_an_unknown_participant_returns_none() -> None:
    directory = Directory(LIFETIME)
    meeting = directory.get(claimed_meeting(directory))
    assert meeting.leave("nobody", 0.0) is None


# --- Expiry ----------------------------------------------------------------------------------


def test_expire_keeps_an_empty_meeting_within_its_lifetime() -> None:
    directory = Directory(LIFETIME)
    meeting_id = claimed_meeting(directory, now=100.0)
    assert directory.expire(100.0 + LIFETIME) == []
    assert directory.get(meeting_id).id == meeting_id


def test_expire_forgets_an_empty_meeting_past_its_lifetime() -> None:
    directory = Directory(LIFETIME)
    meeting_id = claimed_meeting(directory, now=100.0)
    assert directory.expire(100.0 + LIFETIME + 1) == [meeting_id]
    with pytest.raises(MeetingError):
        directory.get(meeting_id)


def test_expire_counts_lifetime_from_the_last_use() -> None:
    directory = Directory(LIFETIME)
    meeting_id = claimed_meeting(directory, now=0.0)
    meeting = directory.get(meeting_id)
    participant = meeting.join("", 1000.0, max_participants=4)
    meeting.leave(participant.id, 2000.0)
    assert directory.expire(2000.0 + LIFETIME - 1) == []
    assert directory.expire(2000.0 + LIFETIME + 1) == [meeting_id]


def test_expire_keeps_an_occupied_meeting_past_its_lifetime() -> None:
    directory = Directory(LIFETIME)
    meeting_id = claimed_meeting(directory, now=0.0)
    directory.get(meeting_id).join("", 0.0, max_participants=4)
    assert directory.expire(10 * LIFETIME) == []
    assert meeting_id in directory.meetings


def test_expire_forgets_an_unclaimed_meeting_after_ten_minutes() -> None:
    directory = Directory(LIFETIME)
    meeting = directory.create(0.0)
    assert UNCLAIMED_MEETING_LIFETIME == 600.0
    assert directory.expire(599.0) == []
    assert directory.expire(601.0) == [meeting.id]
    assert meeting.id not in directory.meetings


def test_expire_keeps_a_claimed_meeting_after_ten_minutes() -> None:
    directory = Directory(LIFETIME)
    meeting_id = claimed_meeting(directory, now=0.0)
    assert directory.expire(601.0) == []
    assert meeting_id in directory.meetings


def test_expire_removes_only_the_expired_meetings() -> None:
    directory = Directory(LIFETIME)
    unclaimed = directory.create(0.0).id
    claimed = claimed_meeting(directory, now=0.0)
    assert directory.expire(700.0) == [unclaimed]
    assert list(directory.meetings) == [claimed]
