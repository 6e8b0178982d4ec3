"""An insider copies the server during a meeting: its memory and every file it
wrote. Nothing in the copy names a participant, quotes the chat, or holds a key.

During a three-person meeting with chat, the server process's memory is read
through /proc/PID/mem (every writable mapping: heap, arenas, stacks) and every
file it wrote (its log and its SQLite store) is read. They are searched for each
display name, each chat text, the link secret, every sender key and the SFrame
keys derived from them, the join key's private seed and the host key's seed,
each as raw bytes, text, base64, base64url and hex. The only key material allowed
is what docs/design.md, 'What the server stores', lets the server hold: the public
join and host keys.

The search is shown to work: a plain client then sends the same values to the
same server in the clear, as a Confide without end-to-end encryption would, and
the same search of a new dump finds them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import aiohttp
import pytest
from playwright.sync_api import Browser

from confide.e2ee.link import (
    decode_link_secret,
    derive_from_link,
    derive_join_key,
    encode_base64url,
    join_key_public,
)
from confide.e2ee.sframe import derive_key_salt
from confide.rooms.meeting import join_challenge

from .memory import read_process_memory
from .participant import RECORD_KEYS, Participant, Server
from .server_process import start_server

NAMES = ["Philippa Okonkwo-Brandt", "Teodoro Villanueva", "Marguerite Solberg"]
CHAT = ["the source inside the ministry is Kestrel", "meet at the Wexford depot"]
AES_128_GCM_SHA256_128 = 0x0004


@dataclass
class Secrets:
    texts: dict[str, str] = field(default_factory=dict)
    """Label to text that must not appear (names, chat)."""
    keys: dict[str, bytes] = field(default_factory=dict)
    """Label to key bytes that must not appear in any encoding."""

    def patterns(self) -> dict[bytes, str]:
        found: dict[bytes, str] = {}
        for label, text in self.texts.items():
            found[text.encode()] = label
            found[text.encode("utf-16-le")] = f"{label} (UTF-16)"
        for label, key in self.keys.items():
            found[key] = f"{label} (raw)"
            found[key.hex().encode()] = f"{label} (hex)"
            found[base64.b64encode(key).rstrip(b"=")] = f"{label} (base64)"
            found[base64.urlsafe_b64encode(key).rstrip(b"=")] = f"{label} (base64url)"
        return found


def search(blob: bytes, secrets: Secrets) -> set[str]:
    patterns = secrets.patterns()
    longest_first = sorted(patterns, key=len, reverse=True)
    expression = re.compile(b"|".join(re.escape(p) for p in longest_first))
    return {patterns[m.group(0)] for m in expression.finditer(blob)}


def secrets_of_the_meeting(link: str, people: list[Participant]) -> Secrets:
    meeting_id = link.split("/m/", 1)[1].split("#", 1)[0]
    link_secret = decode_link_secret(link.split("#", 1)[1].split(".")[0])
    found = Secrets()
    host_seed = people[0].page.evaluate("() => Array.from(window.confideClient.hostKey.seed)")
    found.keys["host key seed"] = bytes(host_seed)
    for index, name in enumerate(NAMES):
        found.texts[f"name {index}"] = name
    for index, text in enumerate(CHAT):
        found.texts[f"chat {index}"] = text
    found.keys["link secret"] = link_secret
    found.keys["join key seed"] = derive_from_link(link_secret, meeting_id, "join-key")
    found.keys["roster key"] = derive_from_link(link_secret, meeting_id, "roster-key")
    for person in people:
        for record in person.page.evaluate("() => window.__sendKeys"):
            key = bytes(record["key"])
            found.keys[f"sender key {record['kid']}"] = key
            sframe_key, sframe_salt = derive_key_salt(key, record["kid"], AES_128_GCM_SHA256_128)
            found.keys[f"SFrame key {record['kid']}"] = sframe_key
            found.keys[f"SFrame salt {record['kid']}"] = sframe_salt
    return found


@dataclass
class Breach:
    server: Server
    pid: int
    link: str
    secrets: Secrets
    memory: bytes
    files: bytes


@pytest.fixture(scope="module")
def breach(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Breach]:
    store = tmp_path_factory.mktemp("store") / "confide.sqlite3"
    # Sweeps each second, so that a departed visitor's address is gone in seconds.
    process, server = start_server("breach-server.log", "--store", str(store),
                                   "--expiry-interval", "1")
    people = [Participant(browser, server, name) for name in NAMES]
    try:
        for person in people:
            person.context.add_init_script(RECORD_KEYS)
        link = people[0].create_meeting()
        people[0].join()
        for person in people[1:]:
            person.join(link)
        ids = {p.self_id for p in people}
        for person in people:
            person.wait_for_playing(ids - {person.self_id})
        people[0].send_chat(CHAT[0])
        people[1].send_chat(CHAT[1])
        for reader, text in ((people[1], CHAT[0]), (people[2], CHAT[1])):
            reader.page.wait_for_selector(f".chat-message:has-text('{text}')", state="attached")
        time.sleep(1)
        secrets = secrets_of_the_meeting(link, people)
        # The copy is taken while the meeting runs.
        memory = read_process_memory(process.pid)
        written = [server.log_path, *store.parent.iterdir()]  # the log, the store, its journal
        files = b"".join(path.read_bytes() for path in written)
        yield Breach(server, process.pid, link, secrets, memory, files)
    finally:
        for person in people:
            person.close()
        process.terminate()
        process.wait(timeout=10)


def test_the_memory_dump_is_large_enough_to_mean_something(breach: Breach) -> None:
    assert len(breach.memory) > 10_000_000
    # What the server may hold is in it: the meeting id and the public join key.
    meeting_id = breach.link.split("/m/", 1)[1].split("#", 1)[0]
    link_secret = decode_link_secret(breach.link.split("#", 1)[1].split(".")[0])
    public = join_key_public(derive_join_key(link_secret, meeting_id))
    assert meeting_id.encode() in breach.memory
    assert public in breach.memory


def test_no_name_chat_text_or_key_is_in_the_servers_memory(breach: Breach) -> None:
    assert search(breach.memory, breach.secrets) == set()


def test_no_name_chat_text_or_key_is_in_any_file_the_server_wrote(breach: Breach) -> None:
    assert b"joined meeting=" in breach.files  # the log was written
    assert b"SQLite format 3" in breach.files  # and the store
    meeting_id = breach.link.split("/m/", 1)[1].split("#", 1)[0]
    assert meeting_id.encode() in breach.files
    assert search(breach.files, breach.secrets) == set()


async def until_relayed(ws: aiohttp.ClientWebSocketResponse, body: str) -> None:
    async with asyncio.timeout(60):
        while True:
            message = await ws.receive_json()
            if message.get("type") == "chat" and message.get("body") == body:
                return


async def send_in_the_clear(base_url: str, pid: int, secrets: Secrets) -> bytes:
    """What clients of a server without end-to-end encryption would send it; returns
    the copy of the server's memory taken a second later, while they are still in."""
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url + "/api/meetings") as created:
            meeting_id = (await created.json())["meeting_id"]
        link_secret = bytes(32)
        join_key = derive_join_key(link_secret, meeting_id)
        await session.put(f"{base_url}/api/meetings/{meeting_id}/join-key",
                          json={"join_key": encode_base64url(join_key_public(join_key))})
        sockets = []
        for index in range(len(NAMES)):
            ws = await session.ws_connect(base_url.replace("http", "ws", 1) + "/ws")
            nonce = base64.urlsafe_b64decode((await ws.receive_json())["nonce"] + "==")
            proof = join_key.sign(join_challenge(meeting_id, nonce))
            await ws.send_json({
                "type": "hello", "version": 1, "meeting": meeting_id,
                "proof": encode_base64url(proof),
                "profile": json.dumps({"name": secrets.texts[f"name {index}"]}),
            })
            sockets.append(ws)
        for label, key in secrets.keys.items():
            await sockets[0].send_json({"type": "chat", "body": f"{label}: {key.hex()}"})
            await sockets[0].send_json({"type": "chat", "body": base64.b64encode(key).decode()})
        # The chat goes last, just before the copy, as in the meeting above.
        for index, text in enumerate(CHAT):
            await sockets[index].send_json({"type": "chat", "body": text})
        # Each socket's messages are handled in order: once each chat line has reached
        # someone, everything sent before it has been handled too.
        for index, text in enumerate(CHAT):
            await until_relayed(sockets[(index + 1) % len(sockets)], text)
        memory = read_process_memory(pid)
        for ws in sockets:
            await ws.close()
        return memory


def test_the_search_finds_the_same_values_sent_in_the_clear(breach: Breach) -> None:
    """Without end-to-end encryption the same copy would give everything away."""
    with ThreadPoolExecutor(1) as client:
        memory = client.submit(asyncio.run, send_in_the_clear(
            breach.server.base_url, breach.pid, breach.secrets)).result()
    found = search(memory, breach.secrets)
    for label in breach.secrets.texts:
        assert label in found, f"{label} was sent in the clear but not found"
    assert any(label.startswith("sender key") for label in found)
    assert any(label.startswith("SFrame key") for label in found)


VISITOR_ADDRESS = "127.0.0.213"
"""A loopback address no one else in the suite uses: where a visitor comes from."""


async def visit(base_url: str, link: str, pid: int) -> bytes:
    """Someone with the link knocks from VISITOR_ADDRESS, waits in the lobby, and
    leaves; returns a copy of the server's memory taken while they were there."""
    meeting_id = link.split("/m/", 1)[1].split("#", 1)[0]
    join_key = derive_join_key(decode_link_secret(link.split("#", 1)[1].split(".")[0]),
                               meeting_id)
    connector = aiohttp.TCPConnector(local_addr=(VISITOR_ADDRESS, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        ws = await session.ws_connect(base_url.replace("http", "ws", 1) + "/ws")
        nonce = base64.urlsafe_b64decode((await ws.receive_json())["nonce"] + "==")
        await ws.send_json({
            "type": "hello", "version": 1, "meeting": meeting_id,
            "proof": encode_base64url(join_key.sign(join_challenge(meeting_id, nonce))),
            "profile": "opaque",
        })
        assert (await ws.receive_json())["type"] in ("lobby", "welcome")
        memory = read_process_memory(pid)
        await ws.send_json({"type": "leave"})
        await ws.close()
    return memory


def test_a_departed_visitors_address_is_gone_from_memory_within_seconds(breach: Breach) -> None:
    """docs/design.md, 'What the server sees': client addresses are seen while
    connected, not kept. The review found them in memory after people had left, as
    rate-limit keys and in freed memory. The copy shows the address while the visitor is
    there (so the search works), and no trace of it once the server's sweep has run
    after they left."""
    needle = VISITOR_ADDRESS.encode()
    with ThreadPoolExecutor(1) as client:
        while_there = client.submit(asyncio.run, visit(
            breach.server.base_url, breach.link, breach.pid)).result()
    assert needle in while_there
    deadline = time.monotonic() + 60
    while needle in read_process_memory(breach.pid):
        assert time.monotonic() < deadline, "the visitor's address is still in memory"
        time.sleep(0.5)
