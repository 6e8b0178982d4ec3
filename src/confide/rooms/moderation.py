"""Host powers, as pure state: signed host actions and the meeting policy they set.

A host action is a JSON text signed with Ed25519 by the host key (registered when
the meeting was created) or by a co-host the host delegated. The server checks
the signature before it acts and relays the signed text unchanged, so every
client checks it again (docs/design.md, 'Host authority'). The server cannot make one.

    action text: {"v":1,"meeting":ID,"kind":K,"target":T|null,"params":{...},
                  "time":MS,"nonce":N,"signer":B64URL(public key)}
    signed bytes: "confide/1 host-action|" + action text

An action that changes the policy (lock, unlock, lobby, permissions) carries the
whole policy it leads to with a version that only goes up:

    params.policy: {"v":N,"locked":B,"lobby":B,"screen":"host"|"everyone","chat":B}

The server keeps the latest such action as signed and hands it to newcomers and
to its store, so the policy survives a restart on the host's signature, never on
the server's word alone; a client refuses a version older than one it has seen.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MAX_ACTION_CHARS = 2048
MAX_CLOCK_SKEW_MS = 5 * 60 * 1000
MAX_REMEMBERED_NONCES = 4096
MAX_REVOKED = 1024
"""Identities a meeting keeps refusing (removed, or removed and blocked)."""
POLICY_KINDS = {"lock", "unlock", "lobby", "permissions"}
TARGETED = {"admit", "deny", "remove", "mute", "allow-unmute", "stop-camera", "stop-screen",
            "cohost", "revoke-cohost"}
UNTARGETED = {"lock", "unlock", "permissions", "end", "lobby", "rekey-link"}
KINDS = TARGETED | UNTARGETED


class ModerationError(Exception):
    """A host action the meeting refuses; `code` goes back to the sender."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def action_bytes(text: str) -> bytes:
    return b"confide/1 host-action|" + text.encode("utf-8")


def decode_key(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) > 64:
        raise ModerationError("bad-action", f"{what} must be a base64url Ed25519 key")
    try:
        key = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ModerationError("bad-action", f"{what} must be base64url") from None
    if len(key) != 32:
        raise ModerationError("bad-action", f"{what} must be 32 bytes")
    return key


@dataclass(frozen=True)
class HostAction:
    text: str
    """Exactly the signed JSON text, relayed unchanged."""
    kind: str
    meeting: str
    target: str | None
    params: dict[str, Any]
    time_ms: int
    nonce: str
    signer: bytes


def parse_host_action(text: str) -> HostAction:
    if len(text) > MAX_ACTION_CHARS:
        raise ModerationError("bad-action", f"a host action is at most {MAX_ACTION_CHARS} chars")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise ModerationError("bad-action", "a host action is JSON") from None
    if not isinstance(obj, dict) or obj.get("v") != 1:
        raise ModerationError("bad-action", "a host action is a version 1 object")
    kind, target, params = obj.get("kind"), obj.get("target"), obj.get("params", {})
    if kind not in KINDS:
        raise ModerationError("bad-action", "unknown host action")
    if (kind in TARGETED) != isinstance(target, str) or (target is not None and len(target) > 64):
        needs = "a target" if kind in TARGETED else "no target"
        raise ModerationError("bad-action", f"'{kind}' needs {needs}")
    if not isinstance(params, dict) or not isinstance(obj.get("meeting"), str):
        raise ModerationError("bad-action", "a host action names its meeting and has params")
    time_ms, nonce = obj.get("time"), obj.get("nonce")
    if not isinstance(time_ms, int) or isinstance(time_ms, bool):
        raise ModerationError("bad-action", "a host action has a time in ms")
    if not isinstance(nonce, str) or not 8 <= len(nonce) <= 64:
        raise ModerationError("bad-action", "a host action has a nonce")
    return HostAction(text, kind, obj["meeting"], target, params, time_ms, nonce,
                      decode_key(obj.get("signer"), "signer"))


def _key_or_none(value: Any) -> bytes | None:
    try:
        return decode_key(value, "key")
    except ModerationError:
        return None


def parse_policy(value: Any) -> dict[str, Any]:
    """The whole policy a policy action sets, checked field by field."""
    if not isinstance(value, dict) or set(value) != {"v", "locked", "lobby", "screen", "chat"}:
        raise ModerationError("bad-action", "a policy action carries the whole policy")
    version = value["v"]
    if not isinstance(version, int) or isinstance(version, bool) or not 0 < version < 2**53:
        raise ModerationError("bad-action", "the policy version is a positive integer")
    if not all(isinstance(value[k], bool) for k in ("locked", "lobby", "chat")) or (
            value["screen"] not in ("host", "everyone")):
        raise ModerationError("bad-action", "the policy's fields have the wrong types")
    return value


@dataclass
class Moderation:
    """One meeting's host keys and policy."""

    meeting_id: str
    host_key: bytes | None = None
    """The creator's Ed25519 public key; None if the meeting has no host."""
    cohosts: dict[str, bytes] = field(default_factory=dict)
    """Participant id to the key the host delegated to them, while they are here."""
    cohost_keys: set[bytes] = field(default_factory=set)
    """Every key the host delegated and did not take back: the role outlives a
    reconnect, and goes to whoever proves the key again (`arrived`)."""
    hosts_present: set[str] = field(default_factory=set)
    """Participant ids that proved the host key when they joined."""
    lobby: bool = True
    locked: bool = False
    ended: bool = False
    screen_share: str = "host"
    """'host' (host and co-hosts only) or 'everyone'."""
    chat: bool = True
    muted_by_host: set[str] = field(default_factory=set)
    seen_nonces: list[str] = field(default_factory=list)
    policy_version: int = 0
    policy_signed: dict[str, str] | None = None
    """The signed action that set the policy in force, as it travels; None: defaults."""
    delegations: dict[bytes, dict[str, str]] = field(default_factory=dict)
    """Co-host key to the signed `cohost` action that named it, as it travels."""
    revoked: set[bytes] = field(default_factory=set)
    """Identity keys whose admission a verified `remove` took back."""
    blocked: set[bytes] = field(default_factory=set)
    """Identity keys that may not even knock (remove with `block`)."""

    def is_host(self, participant_id: str) -> bool:
        return participant_id in self.hosts_present or participant_id in self.cohosts

    @property
    def host_here(self) -> bool:
        return bool(self.hosts_present or self.cohosts)

    def authorize(self, action: HostAction, signature: bytes, now_ms: int) -> None:
        """Check that the host (or a co-host) signed this action, for this meeting,
        recently and once. Raises ModerationError otherwise."""
        if action.meeting != self.meeting_id:
            raise ModerationError("bad-action", "the action is for another meeting")
        allowed = [k for k in (self.host_key, *self.cohost_keys) if k is not None]
        if action.signer not in allowed:
            raise ModerationError("not-host", "only the host can do that")
        try:
            signer = Ed25519PublicKey.from_public_bytes(action.signer)
            signer.verify(signature, action_bytes(action.text))
        except (InvalidSignature, ValueError):
            raise ModerationError("bad-signature", "the host action's signature is wrong") from None
        if abs(now_ms - action.time_ms) > MAX_CLOCK_SKEW_MS:
            raise ModerationError("stale-action", "the host action is too old or from the future")
        if action.nonce in self.seen_nonces:
            raise ModerationError("replayed-action", "that host action was already done")
        self.seen_nonces.append(action.nonce)
        del self.seen_nonces[:-MAX_REMEMBERED_NONCES]
        if action.kind in ("cohost", "revoke-cohost", "rekey-link") and (
                action.signer != self.host_key):
            raise ModerationError("not-host", "only the host can do that")
        if action.kind == "rekey-link":
            decode_key(action.params.get("join_key"), "new join key")
        if action.kind in POLICY_KINDS:
            version = parse_policy(action.params.get("policy"))["v"]
            if version <= self.policy_version:
                raise ModerationError("stale-policy", "a newer policy is already in force")

    def apply(self, action: HostAction, signed: dict[str, str] | None = None) -> None:
        """Change the policy an authorized action sets; lobby moves and removals are
        the caller's, as they move people. `signed` is the action as it travels."""
        kind, target, params = action.kind, action.target, action.params
        if kind in POLICY_KINDS:
            self.set_policy(parse_policy(params.get("policy")), signed)
        elif kind == "end":
            self.ended = True
        elif kind == "admit":
            # Let in again after a removal: their new pass holds.
            admitted = _key_or_none(params.get("identity"))
            self.revoked.discard(admitted or b"")
        elif kind == "remove":
            # Someone whose keys never verified has no identity to revoke.
            identity = _key_or_none(params.get("identity"))
            if identity is not None and len(self.revoked) < MAX_REVOKED:
                self.revoked.add(identity)
                if params.get("block") is True:
                    self.blocked.add(identity)
        elif kind == "mute" and target is not None:
            self.muted_by_host.add(target)
        elif kind == "allow-unmute" and target is not None:
            self.muted_by_host.discard(target)
        elif kind == "cohost" and target is not None:
            key = decode_key(params.get("key"), "co-host key")
            self.cohosts[target] = key
            self.cohost_keys.add(key)
            if signed is not None:
                self.delegations[key] = signed
        elif kind == "revoke-cohost" and target is not None:
            taken = self.cohosts.pop(target, None) or _key_or_none(params.get("identity"))
            if taken is not None:
                self.cohost_keys.discard(taken)
                self.delegations.pop(taken, None)

    def set_policy(self, policy: dict[str, Any], signed: dict[str, str] | None) -> None:
        self.policy_version = policy["v"]
        self.locked, self.lobby = policy["locked"], policy["lobby"]
        self.screen_share, self.chat = policy["screen"], policy["chat"]
        self.policy_signed = signed

    def signed_state(self) -> str | None:
        """What the store keeps of what the host signed: the policy action in force and
        the identities removed and blocked (random public keys, nothing about people)."""
        if self.policy_signed is None and not self.revoked:
            return None
        def encode(keys: set[bytes]) -> list[str]:
            return sorted(base64.urlsafe_b64encode(k).decode().rstrip("=") for k in keys)
        return json.dumps({"policy": self.policy_signed, "revoked": encode(self.revoked),
                           "blocked": encode(self.blocked)})

    def restore_signed_state(self, text: str) -> None:
        """Take back what `signed_state` wrote; the clients check the policy's signature."""
        state = json.loads(text)
        self.revoked = {decode_key(k, "revoked") for k in state.get("revoked", [])}
        self.blocked = {decode_key(k, "blocked") for k in state.get("blocked", [])}
        signed = state.get("policy")
        if isinstance(signed, dict) and isinstance(signed.get("action"), str):
            action = parse_host_action(signed["action"])
            self.set_policy(parse_policy(action.params.get("policy")), signed)

    def may_share_screen(self, participant_id: str) -> bool:
        return self.screen_share == "everyone" or self.is_host(participant_id)

    def may_chat(self, participant_id: str) -> bool:
        return self.chat or self.is_host(participant_id)

    def arrived(self, participant_id: str, identity: bytes | None) -> None:
        """Someone came in having proven this identity key: a co-host again if the host
        delegated that key (they reconnected, or reloaded the page)."""
        if identity is not None and identity in self.cohost_keys:
            self.cohosts[participant_id] = identity

    def forget(self, participant_id: str) -> None:
        self.hosts_present.discard(participant_id)
        self.cohosts.pop(participant_id, None)
        self.muted_by_host.discard(participant_id)
