"""Admission passes (rooms.admission): someone the host let in comes back after any
reconnect, a server restart included, without the lobby and without the server
remembering them; a removal revokes the pass, and a block keeps them from knocking."""

from __future__ import annotations

import base64
import json
import secrets
import time as clock
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from confide.e2ee.link import derive_join_key, encode_base64url, join_key_public
from confide.rooms.admission import (
    AdmissionPass,
    SignedAction,
    check_pass,
    identity_challenge,
)
from confide.rooms.meeting import host_challenge, join_challenge
from confide.rooms.moderation import ModerationError, action_bytes
from test_moderation import b64, public
from test_store import app_settings, running

MEETING = "mfrggzdfmztwq2lknnwg23tpoa"
HOST = Ed25519PrivateKey.generate()
_nonces = iter(range(10**6))


def sign(kind: str, target: str | None, params: dict[str, Any], key: Ed25519PrivateKey = HOST,
         meeting: str = MEETING, time_ms: int | None = None) -> SignedAction:
    text = json.dumps({"v": 1, "meeting": meeting, "kind": kind, "target": target,
                       "params": params, "time": time_ms or int(clock.time() * 1000),
                       "nonce": f"nonce-{next(_nonces):06d}", "signer": b64(public(key))})
    return SignedAction(text, key.sign(action_bytes(text)))


def admit(identity: Ed25519PrivateKey, key: Ed25519PrivateKey = HOST,
          meeting: str = MEETING) -> SignedAction:
    return sign("admit", "lobby-id", {"identity": b64(public(identity))}, key, meeting)


# --- The pass itself ------------------------------------------------------------------------

def test_a_host_signed_admit_is_a_pass_for_the_identity_it_names() -> None:
    guest = Ed25519PrivateKey.generate()
    check_pass(AdmissionPass(admit(guest)), MEETING, public(HOST), public(guest))


def test_a_pass_years_old_still_admits() -> None:
    guest = Ed25519PrivateKey.generate()
    old = sign("admit", "x", {"identity": b64(public(guest))}, time_ms=1)
    check_pass(AdmissionPass(old), MEETING, public(HOST), public(guest))


def refusal(admission: AdmissionPass, identity: bytes) -> str:
    with pytest.raises(ModerationError) as caught:
        check_pass(admission, MEETING, public(HOST), identity)
    return caught.value.code


def test_a_pass_admits_nobody_else_and_nowhere_else() -> None:
    guest, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    assert refusal(AdmissionPass(admit(guest)), public(other)) == "bad-pass"
    elsewhere = admit(guest, meeting="nbswy3dpeb3w64tmmqqgc3tbnm")
    assert refusal(AdmissionPass(elsewhere), public(guest)) == "bad-pass"
    mute = sign("mute", "x", {"identity": b64(public(guest))})
    assert refusal(AdmissionPass(mute), public(guest)) == "bad-pass"


def test_a_pass_signed_by_anyone_but_the_host_is_refused() -> None:
    guest, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    assert refusal(AdmissionPass(admit(guest, key=stranger)), public(guest)) == "bad-pass"
    forged = SignedAction(admit(guest).text, stranger.sign(action_bytes(admit(guest).text)))
    assert refusal(AdmissionPass(forged), public(guest)) == "bad-pass"


def test_a_cohost_pass_holds_with_the_hosts_delegation_only() -> None:
    guest, cohost, stranger = (Ed25519PrivateKey.generate() for _ in range(3))
    delegation = sign("cohost", "carol", {"key": b64(public(cohost)), "identity": "x"})
    by_cohost = admit(guest, key=cohost)
    check_pass(AdmissionPass(by_cohost, delegation), MEETING, public(HOST), public(guest))
    assert refusal(AdmissionPass(by_cohost), public(guest)) == "bad-pass"
    self_named = sign("cohost", "carol", {"key": b64(public(cohost))}, key=cohost)
    assert refusal(AdmissionPass(by_cohost, self_named), public(guest)) == "bad-pass"
    other = sign("cohost", "carol", {"key": b64(public(stranger))})
    assert refusal(AdmissionPass(by_cohost, other), public(guest)) == "bad-pass"


# --- Through the server ------------------------------------------------------------------------

def wire(signed: SignedAction) -> dict[str, str]:
    return {"action": signed.text, "signature": encode_base64url(signed.signature)}


class Browser:
    """What a browser holding the link does in hello, with an identity key of its own."""

    def __init__(self, client: TestClient[Any, Any], meeting_id: str, link_secret: bytes,
                 host: bool = False) -> None:
        self.client, self.meeting_id, self.link_secret = client, meeting_id, link_secret
        self.identity = Ed25519PrivateKey.generate()
        self.host = host
        self.admission: dict[str, Any] | None = None

    async def hello(self) -> tuple[Any, dict[str, Any]]:
        socket = await self.client.ws_connect("/ws")
        challenge = await socket.receive_json(timeout=5)
        nonce = base64.urlsafe_b64decode(challenge["nonce"] + "==")
        meeting_id = self.meeting_id
        join_key = derive_join_key(self.link_secret, meeting_id)
        proof = join_key.sign(join_challenge(meeting_id, nonce))
        hello: dict[str, Any] = {
            "type": "hello", "version": 1, "meeting": meeting_id, "profile": "opaque",
            "proof": encode_base64url(proof), "identity": b64(public(self.identity)),
            "identity_proof": b64(self.identity.sign(identity_challenge(meeting_id, nonce))),
        }
        if self.host:
            hello["host_proof"] = b64(HOST.sign(host_challenge(meeting_id, nonce)))
        if self.admission:
            hello["pass"] = self.admission
        await socket.send_json(hello)
        return socket, await socket.receive_json(timeout=5)

    async def act(self, socket: Any, kind: str, target: str | None, **params: Any) -> None:
        signed = sign(kind, target, params, meeting=self.meeting_id)
        await socket.send_json({"type": "host-action", **wire(signed)})


async def create_hosted_meeting(client: TestClient[Any, Any], link_secret: bytes) -> str:
    meeting_id = str((await (await client.post("/api/meetings")).json())["meeting_id"])
    join_key = join_key_public(derive_join_key(link_secret, meeting_id))
    registered = await client.put(f"/api/meetings/{meeting_id}/join-key", json={
        "join_key": encode_base64url(join_key), "host_key": b64(public(HOST))})
    assert registered.status == 204
    return meeting_id


async def next_of(socket: Any, kind: str) -> dict[str, Any]:
    while True:
        message = await socket.receive_json(timeout=5)
        if message["type"] == kind:
            return dict(message)


async def let_in(host: Browser, host_socket: Any, guest: Browser) -> tuple[Any, dict[str, Any]]:
    """The guest knocks and the host admits them: returns the guest's welcome."""
    socket, lobby = await guest.hello()
    assert lobby["type"] == "lobby"
    knock = await next_of(host_socket, "knock")
    await host.act(host_socket, "admit", knock["id"], identity=b64(public(guest.identity)))
    welcome = await next_of(socket, "welcome")
    guest.admission = welcome["pass"]
    return socket, welcome


async def test_someone_admitted_comes_back_without_the_lobby_even_when_locked(
        tmp_path: Path) -> None:
    link_secret = secrets.token_bytes(32)
    async with running(app_settings(tmp_path / "meetings.db")) as client:
        meeting_id = await create_hosted_meeting(client, link_secret)
        host, bob = Browser(client, meeting_id, link_secret, host=True), Browser(
            client, meeting_id, link_secret)
        host_socket, welcome = await host.hello()
        assert welcome["type"] == "welcome"
        bob_socket, bob_welcome = await let_in(host, host_socket, bob)
        assert json.loads(bob_welcome["pass"]["action"])["kind"] == "admit"
        policy = {"v": 1, "locked": True, "lobby": True, "screen": "host", "chat": True}
        await host.act(host_socket, "lock", None, policy=policy)
        await next_of(host_socket, "host-action")
        await bob_socket.close()
        # Back, past the lobby and the lock; the others get the pass to check.
        bob_socket, again = await bob.hello()
        assert again["type"] == "welcome", again
        joined = await next_of(host_socket, "joined")
        assert joined["participant"]["pass"] == bob.admission
        # A newcomer without a pass meets the lock.
        _, refused = await Browser(client, meeting_id, link_secret).hello()
        assert refused["code"] == "meeting-locked"
        await bob_socket.close()
    # After a restart the server knows nobody, and the pass still admits Bob.
    async with running(app_settings(tmp_path / "meetings.db")) as client:
        bob.client = client
        _, after_restart = await bob.hello()
        assert after_restart["type"] == "welcome", after_restart
        assert after_restart["policy"]["locked"] is True
        assert json.loads(after_restart["policy_signed"]["action"])["kind"] == "lock"


async def test_a_pass_for_someone_else_does_not_open_the_door(tmp_path: Path) -> None:
    link_secret = secrets.token_bytes(32)
    async with running(app_settings(tmp_path / "meetings.db")) as client:
        meeting_id = await create_hosted_meeting(client, link_secret)
        host, bob = (Browser(client, meeting_id, link_secret, host=True),
                     Browser(client, meeting_id, link_secret))
        host_socket, _ = await host.hello()
        await let_in(host, host_socket, bob)
        thief = Browser(client, meeting_id, link_secret)
        thief.admission = bob.admission
        socket, reply = await thief.hello()
        assert reply["code"] == "bad-pass" and not reply["fatal"]
        assert (await next_of(socket, "lobby"))["position"] == 1


async def test_removal_revokes_the_pass_and_a_block_keeps_them_from_knocking(
        tmp_path: Path) -> None:
    link_secret = secrets.token_bytes(32)
    async with running(app_settings(tmp_path / "meetings.db")) as client:
        meeting_id = await create_hosted_meeting(client, link_secret)
        host = Browser(client, meeting_id, link_secret, host=True)
        bob = Browser(client, meeting_id, link_secret)
        eve = Browser(client, meeting_id, link_secret)
        host_socket, _ = await host.hello()
        _, bob_welcome = await let_in(host, host_socket, bob)
        _, eve_welcome = await let_in(host, host_socket, eve)
        await host.act(host_socket, "remove", bob_welcome["you"],
                       identity=b64(public(bob.identity)))
        await host.act(host_socket, "remove", eve_welcome["you"],
                       identity=b64(public(eve.identity)), block=True)
        bob_socket, bob_back = await bob.hello()
        # Removed, not blocked: the pass no longer holds, and they may knock again.
        assert bob_back["code"] == "pass-revoked" and not bob_back["fatal"]
        assert (await next_of(bob_socket, "lobby"))["position"] == 1
        eve.admission = None
        _, eve_back = await eve.hello()
        assert eve_back["code"] == "blocked" and eve_back["fatal"]
    async with running(app_settings(tmp_path / "meetings.db")) as client:
        bob.client = eve.client = client
        assert (await bob.hello())[1]["code"] == "pass-revoked"  # still, after a restart
        assert (await eve.hello())[1]["code"] == "blocked"


async def test_an_identity_proof_by_another_key_is_refused(tmp_path: Path) -> None:
    link_secret = secrets.token_bytes(32)
    async with running(app_settings(tmp_path / "meetings.db")) as client:
        meeting_id = await create_hosted_meeting(client, link_secret)
        claimed, signer = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        socket = await client.ws_connect("/ws")
        nonce = base64.urlsafe_b64decode((await socket.receive_json(timeout=5))["nonce"] + "==")
        proof = derive_join_key(link_secret, meeting_id).sign(join_challenge(meeting_id, nonce))
        await socket.send_json({
            "type": "hello", "version": 1, "meeting": meeting_id, "profile": "p",
            "proof": encode_base64url(proof), "identity": b64(public(claimed)),
            "identity_proof": b64(signer.sign(identity_challenge(meeting_id, nonce)))})
        reply = await socket.receive_json(timeout=5)
        assert reply["code"] == "bad-identity-proof" and reply["fatal"]
