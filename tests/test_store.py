"""The SQLite meeting store (`confide serve --store`): meetings survive a restart
and stay joinable, expired ones are erased from the file, and the file holds the
meeting id, the public keys, two times and what the host signed, and nothing else
(docs/design.md, 'What the server stores')."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from confide.config import Settings
from confide.e2ee.link import derive_join_key, encode_base64url, join_key_public
from confide.rooms.meeting import Meeting, join_challenge
from confide.rooms.store import LAST_USE_SAVE_INTERVAL, MeetingStore, StoredMeeting
from confide.web.app import DIRECTORY, create_app

JOIN_KEY = bytes(range(32))
OTHER_JOIN_KEY = bytes(range(100, 132))
MEETING_ID = "mfrggzdfmztwq2lknnwg23tpoa"
OTHER_MEETING_ID = "nbswy3dpeb3w64tmmqqgc3tbnm"


def meeting(meeting_id: str = MEETING_ID, join_key: bytes | None = JOIN_KEY,
            created_at: float = 1000.5, last_used_at: float = 2000.5) -> Meeting:
    return Meeting(id=meeting_id, created_at=created_at, last_used_at=last_used_at,
                   join_key=join_key)


def rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as connection:
        return list(connection.execute("SELECT * FROM meetings ORDER BY id"))


def file_bytes(directory: Path) -> bytes:
    """Every byte of the store and any journal beside it."""
    return b"".join(path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file())


# --- The store on its own --------------------------------------------------------------------


def test_a_saved_meeting_reads_back_with_whole_second_times(tmp_path: Path) -> None:
    store = MeetingStore(tmp_path / "meetings.db")
    assert store.open() == []
    store.save(meeting(), now=2001.0)
    store.save(meeting(OTHER_MEETING_ID, join_key=None, created_at=3000.0), now=3000.0)
    store.close()

    reopened = MeetingStore(tmp_path / "meetings.db")
    assert reopened.open() == [
        StoredMeeting(id=MEETING_ID, join_key=JOIN_KEY, host_key=None, created_at=1000,
                      last_used_at=2000),
        StoredMeeting(id=OTHER_MEETING_ID, join_key=None, host_key=None, created_at=3000,
                      last_used_at=2000),
    ]
    reopened.close()


def test_saving_again_updates_the_join_key_and_last_use_but_not_creation(tmp_path: Path) -> None:
    store = MeetingStore(tmp_path / "meetings.db")
    store.open()
    unclaimed = meeting(join_key=None)
    store.save(unclaimed, now=2000.0)
    unclaimed.join_key, unclaimed.created_at, unclaimed.last_used_at = JOIN_KEY, 5.0, 2500.0
    store.save(unclaimed, now=2500.0)
    store.close()
    assert rows(tmp_path / "meetings.db") == [(MEETING_ID, JOIN_KEY, None, 1000, 2500, None)]


def test_the_store_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    store = MeetingStore(tmp_path / "meetings.db")
    store.open()
    store.close()
    assert stat.S_IMODE((tmp_path / "meetings.db").stat().st_mode) == 0o600


def test_last_use_is_written_at_most_once_a_minute_per_meeting(tmp_path: Path) -> None:
    store = MeetingStore(tmp_path / "meetings.db")
    store.open()
    used = meeting(last_used_at=1000.0)
    store.save(used, now=1000.0)
    used.last_used_at = 1010.0
    assert store.save_last_uses([used], now=1010.0) == 0
    assert rows(tmp_path / "meetings.db")[0][4] == 1000
    assert store.save_last_uses([used], now=1000.0 + LAST_USE_SAVE_INTERVAL) == 1
    assert rows(tmp_path / "meetings.db")[0][4] == 1010
    assert store.save_last_uses([used], now=2000.0) == 0, "unchanged: nothing to write"
    used.last_used_at = 2001.0
    assert store.save_last_uses([used], now=2001.0, throttle=False) == 1
    assert rows(tmp_path / "meetings.db")[0][4] == 2001
    store.close()


def test_an_occupied_meeting_is_written_as_used_now(tmp_path: Path) -> None:
    """After a crash during a long meeting, its lifetime counts from when it was last
    seen occupied, not from the last join."""
    store = MeetingStore(tmp_path / "meetings.db")
    store.open()
    busy = meeting(last_used_at=1000.0)
    store.save(busy, now=1000.0)
    busy.join("opaque", 1000.0, max_participants=4)
    assert store.save_last_uses([busy], now=90_000.0) == 1
    store.close()
    assert rows(tmp_path / "meetings.db")[0][4] == 90_000


def test_an_erased_meeting_leaves_no_bytes_in_the_file(tmp_path: Path) -> None:
    store = MeetingStore(tmp_path / "meetings.db")
    store.open()
    store.save(meeting(), now=2000.0)
    store.save(meeting(OTHER_MEETING_ID, join_key=OTHER_JOIN_KEY), now=2000.0)
    store.delete([MEETING_ID])
    store.close()
    assert rows(tmp_path / "meetings.db") == [
        (OTHER_MEETING_ID, OTHER_JOIN_KEY, None, 1000, 2000, None)
    ]
    raw = file_bytes(tmp_path)
    assert OTHER_MEETING_ID.encode() in raw and OTHER_JOIN_KEY in raw
    assert MEETING_ID.encode() not in raw, "secure_delete must zero the erased row"
    assert JOIN_KEY not in raw


# --- The store under the running app ---------------------------------------------------------


def app_settings(store: Path, **changes: Any) -> Settings:
    return Settings(media_port=0, store=store, **changes)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The app with its cleanup contexts: started on entry, shut down on exit."""
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


async def create_claimed_meeting(client: TestClient[Any, Any], link_secret: bytes) -> str:
    created = await client.post("/api/meetings")
    assert created.status == 201
    meeting_id = str((await created.json())["meeting_id"])
    join_key = join_key_public(derive_join_key(link_secret, meeting_id))
    registered = await client.put(f"/api/meetings/{meeting_id}/join-key",
                                  json={"join_key": encode_base64url(join_key)})
    assert registered.status == 204
    return meeting_id


async def join(client: TestClient[Any, Any], meeting_id: str, link_secret: bytes,
               profile: str = "opaque") -> tuple[Any, dict[str, Any]]:
    """Answers the challenge as a browser holding the link would; returns the socket
    and the server's reply to hello."""
    socket = await client.ws_connect("/ws")
    challenge = await socket.receive_json(timeout=5)
    assert challenge["type"] == "challenge"
    nonce = base64.urlsafe_b64decode(challenge["nonce"] + "==")
    proof = derive_join_key(link_secret, meeting_id).sign(join_challenge(meeting_id, nonce))
    await socket.send_json({"type": "hello", "version": 1, "meeting": meeting_id,
                            "proof": encode_base64url(proof), "profile": profile})
    return socket, await socket.receive_json(timeout=5)


async def test_a_meeting_survives_a_restart_and_its_link_still_admits(tmp_path: Path) -> None:
    link_secret = secrets.token_bytes(32)
    settings = app_settings(tmp_path / "meetings.db")
    async with running(settings) as client:
        meeting_id = await create_claimed_meeting(client, link_secret)

    async with running(settings) as client:
        info = await client.get(f"/api/meetings/{meeting_id}")
        assert await info.json() == {"meeting_id": meeting_id, "ready": True}
        restored = client.app[DIRECTORY].get(meeting_id)
        nonce = secrets.token_bytes(16)
        restored.check_proof(nonce, derive_join_key(link_secret, meeting_id).sign(
            join_challenge(meeting_id, nonce)))
        socket, reply = await join(client, meeting_id, link_secret)
        assert reply["type"] == "welcome"
        await socket.close()
        socket, reply = await join(client, meeting_id, secrets.token_bytes(32))
        assert (reply["type"], reply["code"]) == ("error", "bad-token")
        await socket.close()


async def test_without_a_store_a_restart_forgets_meetings(tmp_path: Path) -> None:
    async with running(Settings(media_port=0)) as client:
        meeting_id = await create_claimed_meeting(client, secrets.token_bytes(32))
    async with running(Settings(media_port=0)) as client:
        assert (await client.get(f"/api/meetings/{meeting_id}")).status == 404
    assert list(tmp_path.iterdir()) == []


async def test_expiry_erases_the_meeting_from_memory_and_from_the_file(tmp_path: Path) -> None:
    store = tmp_path / "meetings.db"
    settings = app_settings(store, meeting_lifetime=1.0, expiry_interval=0.1)
    async with running(settings) as client:
        meeting_id = await create_claimed_meeting(client, secrets.token_bytes(32))
        assert [row[0] for row in rows(store)] == [meeting_id]
        deadline = time.monotonic() + 10
        while rows(store) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert rows(store) == []
        assert (await client.get(f"/api/meetings/{meeting_id}")).status == 404
        assert meeting_id not in client.app[DIRECTORY].meetings
    assert meeting_id.encode() not in file_bytes(tmp_path)


async def test_meetings_that_expired_while_the_server_was_down_are_erased_at_start(
    tmp_path: Path,
) -> None:
    store = MeetingStore(tmp_path / "meetings.db")
    store.open()
    long_ago = time.time() - 3 * 24 * 3600
    store.save(meeting(created_at=long_ago, last_used_at=long_ago), now=long_ago)
    store.close()
    async with running(app_settings(tmp_path / "meetings.db")) as client:
        assert (await client.get(f"/api/meetings/{MEETING_ID}")).status == 404
        assert rows(tmp_path / "meetings.db") == []


async def test_the_file_holds_only_ids_join_keys_and_times(tmp_path: Path) -> None:
    """A meeting with two people who chat, then a restart: the file has one table of
    six columns, one row, and no participant id, profile, chat or link secret."""
    store = tmp_path / "meetings.db"
    link_secret = secrets.token_bytes(32)
    profile_marker = "profile-of-Zebulon-Quartermaine"
    chat_marker = "chat-about-the-blue-folder"
    participant_ids: list[str] = []
    async with running(app_settings(store)) as client:
        meeting_id = await create_claimed_meeting(client, link_secret)
        first, welcome = await join(client, meeting_id, link_secret, profile_marker + "-1")
        second, second_welcome = await join(client, meeting_id, link_secret, profile_marker + "-2")
        participant_ids += [welcome["you"], second_welcome["you"]]
        await first.send_json({"type": "chat", "body": chat_marker})
        await first.send_json({"type": "relay", "to": second_welcome["you"], "body": chat_marker})
        await asyncio.sleep(0.2)
        await first.close()
        await second.close()
    async with running(app_settings(store)):
        pass

    with sqlite3.connect(store) as connection:
        schema = list(connection.execute("SELECT type, name FROM sqlite_master ORDER BY name"))
        assert schema == [("table", "meetings"), ("index", "sqlite_autoindex_meetings_1")]
        columns = [row[1] for row in connection.execute("PRAGMA table_info(meetings)")]
        assert columns == ["id", "join_key", "host_key", "created_at", "last_used_at",
                           "signed_state"]
        stored = list(connection.execute("SELECT * FROM meetings"))
    join_key = join_key_public(derive_join_key(link_secret, meeting_id))
    assert len(stored) == 1
    stored_id, stored_key, _host_key, created_at, last_used_at, signed_state = stored[0]
    assert (stored_id, stored_key, signed_state) == (meeting_id, join_key, None)
    assert isinstance(created_at, int) and isinstance(last_used_at, int)
    assert created_at <= last_used_at <= time.time()

    raw = file_bytes(tmp_path)
    secrets_and_people = [
        *(pid.encode() for pid in participant_ids),
        profile_marker.encode(), b"Zebulon", chat_marker.encode(), b"blue-folder",
        link_secret, encode_base64url(link_secret).encode(), b"profile", b"participant",
        json.dumps(welcome).encode()[:40],
    ]
    for needle in secrets_and_people:
        assert needle not in raw, needle


def test_a_store_from_before_signed_state_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "meetings.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE meetings (id TEXT PRIMARY KEY NOT NULL, join_key BLOB,"
                           " host_key BLOB, created_at INTEGER NOT NULL,"
                           " last_used_at INTEGER NOT NULL) STRICT")
        connection.execute("INSERT INTO meetings VALUES (?, ?, NULL, 1000, 2000)",
                           (MEETING_ID, JOIN_KEY))
    store = MeetingStore(path)
    kept = store.open()
    store.close()
    assert [(m.id, m.join_key, m.signed_state) for m in kept] == [(MEETING_ID, JOIN_KEY, None)]


def test_what_the_host_signed_is_kept_across_a_restart(tmp_path: Path) -> None:
    store = MeetingStore(tmp_path / "meetings.db")
    store.open()
    kept = meeting()
    kept.moderation.revoked = {bytes(32)}
    store.save(kept, now=2000.0)
    store.close()
    [stored] = MeetingStore(tmp_path / "meetings.db").open()
    assert stored.signed_state == kept.moderation.signed_state()
