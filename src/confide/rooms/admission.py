"""Admission passes: the host's signed word that a person may be in the meeting.

A pass is the signed `admit` host action whose `params.identity` names the
person's identity key: the one the host's page signed when it let them in from
the lobby, or one a host's page signs for itself. It is good for the rest of the
meeting, so a person the host admitted comes back after any reconnect, server
restarts included, without the host and without the server remembering them.
An admit a co-host signed travels with the host-signed `cohost` action that named
the co-host's key (the delegation), so it too checks out with nothing but the host
key. The person proves the identity key on each connection (hello's
`identity_proof`), so a pass is worth nothing to anyone else.

    pass: {"action": TEXT, "signature": B64URL, "delegation"?: {"action", "signature"}}

Revocation is the meeting's: a verified `remove` puts the identity in
`Moderation.revoked`, which the store keeps (rooms.store).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .moderation import HostAction, ModerationError, action_bytes, decode_key, parse_host_action


@dataclass(frozen=True)
class SignedAction:
    """A host action as it travels: the exact signed text and its signature."""

    text: str
    signature: bytes


@dataclass(frozen=True)
class AdmissionPass:
    admit: SignedAction
    delegation: SignedAction | None = None


def identity_challenge(meeting_id: str, nonce: bytes) -> bytes:
    """What a browser's identity key signs in hello: this meeting, this connection."""
    return b"confide/1 identity|" + meeting_id.encode("ascii") + b"|" + nonce


def signed_by(signed: SignedAction, key: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signed.signature, action_bytes(signed.text))
    except (InvalidSignature, ValueError):
        return False
    return True


def check_identity_proof(meeting_id: str, nonce: bytes, identity: bytes, proof: bytes) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(identity).verify(
            proof, identity_challenge(meeting_id, nonce))
    except (InvalidSignature, ValueError):
        raise ModerationError("bad-identity-proof",
                              "the identity proof does not match the identity key") from None


def check_delegation(delegation: SignedAction, meeting_id: str, host_key: bytes) -> HostAction:
    """A host-signed `cohost` action for this meeting; returns it parsed."""
    action = parse_host_action(delegation.text)
    if (action.kind != "cohost" or action.meeting != meeting_id
            or action.signer != host_key or not signed_by(delegation, host_key)):
        raise ModerationError("bad-pass", "the co-host delegation is not the host's")
    return action


def check_pass(admission: AdmissionPass, meeting_id: str, host_key: bytes,
               identity: bytes) -> None:
    """Accept a pass that admits `identity` to this meeting, signed by the host or
    by a co-host whose delegation the host signed. No freshness: a pass lasts the
    meeting (its revocation is the meeting's `revoked` set)."""
    admit = parse_host_action(admission.admit.text)
    if admit.kind != "admit" or admit.meeting != meeting_id:
        raise ModerationError("bad-pass", "a pass is an admit action for this meeting")
    if decode_key(admit.params.get("identity"), "pass identity") != identity:
        raise ModerationError("bad-pass", "the pass names another identity")
    if admit.signer != host_key:
        if admission.delegation is None:
            raise ModerationError("bad-pass", "the pass is not signed by the host")
        named = check_delegation(admission.delegation, meeting_id, host_key)
        if decode_key(named.params.get("key"), "co-host key") != admit.signer:
            raise ModerationError("bad-pass", "the pass's signer is not the co-host named")
    if not signed_by(admission.admit, admit.signer):
        raise ModerationError("bad-pass", "the pass's signature is wrong")
