"""Signed host actions: only the host (or a co-host it named) can act, for this
meeting, recently and once; and the policy each action sets."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from confide.rooms.moderation import (
    MAX_CLOCK_SKEW_MS,
    Moderation,
    ModerationError,
    action_bytes,
    parse_host_action,
)

MEETING = "mfrggzdfmztwq2lknnwg23tpoa"
NOW = 1_800_000_000_000
HOST = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


_nonces = iter(range(10**6))


def signed(kind: str, target: str | None = None, key: Ed25519PrivateKey = HOST,
           **fields: Any) -> tuple[str, bytes]:
    action = {"v": 1, "meeting": MEETING, "kind": kind, "target": target, "params": {},
              "time": NOW, "nonce": f"nonce-{next(_nonces):06d}", "signer": b64(public(key))}
    action.update(fields)
    text = json.dumps(action)
    return text, key.sign(action_bytes(text))


_versions = iter(range(1, 10**6))


def policy(**changes: Any) -> dict[str, Any]:
    """The whole policy a policy action carries, with the next version."""
    whole = {"v": next(_versions), "locked": False, "lobby": True, "screen": "host",
             "chat": True}
    return {"policy": {**whole, **changes}}


def moderation() -> Moderation:
    return Moderation(meeting_id=MEETING, host_key=public(HOST))


def act(meeting: Moderation, text: str, signature: bytes, now: int = NOW) -> None:
    action = parse_host_action(text)
    meeting.authorize(action, signature, now)
    meeting.apply(action)


def refused(meeting: Moderation, text: str, signature: bytes, now: int = NOW) -> str:
    with pytest.raises(ModerationError) as caught:
        act(meeting, text, signature, now)
    return caught.value.code


def test_the_host_can_lock_and_unlock() -> None:
    meeting = moderation()
    act(meeting, *signed("lock", params=policy(locked=True)))
    assert meeting.locked
    act(meeting, *signed("unlock", params=policy()))
    assert not meeting.locked


def test_a_participant_cannot_forge_a_host_action_with_their_own_key() -> None:
    meeting = moderation()
    assert refused(meeting, *signed("end", key=Ed25519PrivateKey.generate())) == "not-host"
    assert not meeting.ended


def test_a_participant_cannot_claim_the_host_key_without_its_signature() -> None:
    meeting = moderation()
    text, _ = signed("end")
    forged = Ed25519PrivateKey.generate().sign(action_bytes(text))
    assert refused(meeting, text, forged) == "bad-signature"
    assert not meeting.ended


def test_a_changed_action_no_longer_matches_its_signature() -> None:
    meeting = moderation()
    text, signature = signed("mute", target="alice")
    assert refused(meeting, text.replace("alice", "bobby"), signature) == "bad-signature"


def test_an_action_for_another_meeting_is_refused() -> None:
    assert refused(moderation(), *signed("end", meeting="nbswy3dpeb3w64tmmqqgc3tbnm")) == (
        "bad-action")


def test_a_replayed_action_is_refused() -> None:
    meeting = moderation()
    text, signature = signed("lock", params=policy(locked=True))
    act(meeting, text, signature)
    act(meeting, *signed("unlock", params=policy()))
    assert refused(meeting, text, signature) == "replayed-action"
    assert not meeting.locked


def test_a_policy_older_than_the_one_in_force_is_refused() -> None:
    meeting = moderation()
    older = signed("lock", params=policy(locked=True))
    act(meeting, *signed("unlock", params=policy()))
    assert refused(meeting, *older) == "stale-policy"
    assert not meeting.locked and meeting.policy_signed is None


def test_the_signed_policy_in_force_is_kept_as_it_travels() -> None:
    meeting = moderation()
    text, signature = signed("lobby", params=policy(lobby=False))
    action = parse_host_action(text)
    meeting.authorize(action, signature, NOW)
    meeting.apply(action, {"action": text, "signature": b64(signature)})
    assert not meeting.lobby
    assert meeting.policy_signed == {"action": text, "signature": b64(signature)}


@pytest.mark.parametrize("bad", [
    None, {"v": 1}, {**policy()["policy"], "v": 0}, {**policy()["policy"], "v": True},
    {**policy()["policy"], "locked": "yes"}, {**policy()["policy"], "screen": "all"},
    {**policy()["policy"], "extra": 1},
])
def test_a_policy_action_must_carry_a_whole_valid_policy(bad: Any) -> None:
    assert refused(moderation(), *signed("lock", params={"policy": bad})) == "bad-action"


def test_remove_revokes_the_identity_and_remove_with_block_blocks_it() -> None:
    meeting = moderation()
    bob, eve = bytes(range(32)), bytes(range(1, 33))
    act(meeting, *signed("remove", target="bob", params={"identity": b64(bob)}))
    act(meeting, *signed("remove", target="eve", params={"identity": b64(eve), "block": True}))
    assert meeting.revoked == {bob, eve}
    assert meeting.blocked == {eve}
    # Someone unverified has no identity to revoke; removing them still works.
    act(meeting, *signed("remove", target="mallory", params={"identity": ""}))
    assert meeting.revoked == {bob, eve}


def test_the_signed_state_survives_a_round_trip() -> None:
    meeting = moderation()
    text, signature = signed("lock", params=policy(locked=True, chat=False))
    action = parse_host_action(text)
    meeting.authorize(action, signature, NOW)
    meeting.apply(action, {"action": text, "signature": b64(signature)})
    act(meeting, *signed("remove", target="eve", params={"identity": b64(bytes(32)),
                                                           "block": True}))
    restored = moderation()
    restored.restore_signed_state(str(meeting.signed_state()))
    assert (restored.locked, restored.chat, restored.policy_version) == (
        True, False, meeting.policy_version)
    assert restored.policy_signed == meeting.policy_signed
    assert restored.revoked == restored.blocked == {bytes(32)}
    assert moderation().signed_state() is None


def test_a_stale_action_is_refused() -> None:
    assert refused(moderation(), *signed("end"), now=NOW + MAX_CLOCK_SKEW_MS + 1) == (
        "stale-action")


def test_a_meeting_without_a_host_key_takes_no_host_action() -> None:
    assert refused(Moderation(meeting_id=MEETING), *signed("end")) == "not-host"


def test_a_named_cohost_can_act_until_revoked() -> None:
    meeting = moderation()
    cohost = Ed25519PrivateKey.generate()
    act(meeting, *signed("cohost", target="carol", params={"key": b64(public(cohost))}))
    assert meeting.is_host("carol")
    act(meeting, *signed("mute", target="dave", key=cohost))
    assert "dave" in meeting.muted_by_host
    act(meeting, *signed("revoke-cohost", target="carol"))
    assert not meeting.is_host("carol")
    assert refused(meeting, *signed("end", key=cohost)) == "not-host"


def test_a_cohost_cannot_name_cohosts() -> None:
    meeting = moderation()
    cohost = Ed25519PrivateKey.generate()
    act(meeting, *signed("cohost", target="carol", params={"key": b64(public(cohost))}))
    other = Ed25519PrivateKey.generate()
    code = refused(meeting, *signed("cohost", target="eve", key=cohost,
                                    params={"key": b64(public(other))}))
    assert code == "not-host"
    assert not meeting.is_host("eve")


def test_permissions_open_screen_share_and_close_chat() -> None:
    meeting = moderation()
    assert not meeting.may_share_screen("alice")
    act(meeting, *signed("permissions", params=policy(screen="everyone", chat=False)))
    assert meeting.may_share_screen("alice")
    assert not meeting.may_chat("alice")
    meeting.hosts_present.add("host")
    assert meeting.may_chat("host")


def test_mute_sticks_until_the_host_allows_unmuting() -> None:
    meeting = moderation()
    act(meeting, *signed("mute", target="alice"))
    assert "alice" in meeting.muted_by_host
    act(meeting, *signed("allow-unmute", target="alice"))
    assert "alice" not in meeting.muted_by_host


@pytest.mark.parametrize("change", [
    {"v": 2}, {"kind": "explode"}, {"target": None, "kind": "mute"},
    {"target": "x", "kind": "lock"}, {"time": "now"}, {"time": True}, {"nonce": "short"},
    {"signer": "AAAA"}, {"params": []}, {"meeting": 5},
])
def test_malformed_actions_are_refused_as_bad_action(change: dict[str, Any]) -> None:
    action = json.loads(signed("mute", target="alice")[0])
    action.update(change)
    with pytest.raises(ModerationError) as caught:
        parse_host_action(json.dumps(action))
    assert caught.value.code == "bad-action"


@pytest.mark.parametrize("text", ["", "[]", "{", "x" * 5000, '{"v": 1}'])
def test_garbage_is_a_bad_action(text: str) -> None:
    with pytest.raises(ModerationError):
        parse_host_action(text)


def test_the_cohost_role_outlives_a_reconnect_until_revoked() -> None:
    meeting = moderation()
    carol = Ed25519PrivateKey.generate()
    key = public(carol)
    act(meeting, *signed("cohost", target="carol", params={"key": b64(key)}))
    meeting.forget("carol")  # her connection dropped
    assert not meeting.is_host("carol")
    act(meeting, *signed("end", key=carol))  # her key still signs while she is away
    meeting.ended = False
    meeting.arrived("carol-again", key)
    assert meeting.is_host("carol-again")
    act(meeting, *signed("revoke-cohost", target="carol-again", params={"identity": b64(key)}))
    meeting.forget("carol-again")
    meeting.arrived("carol-third", key)
    assert not meeting.is_host("carol-third")
    assert refused(meeting, *signed("end", key=carol)) == "not-host"
    meeting.arrived("stranger", public(Ed25519PrivateKey.generate()))
    assert not meeting.is_host("stranger")
