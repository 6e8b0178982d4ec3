"""Garbage sent to the signalling WebSocket and to the media port while a meeting
runs: the sender gets errors, the meeting goes on."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import aiohttp
from playwright.sync_api import Browser

from .participant import Participant, Server


async def send_websocket_garbage(base_url: str) -> list[object]:
    """Sends bad frames on one socket; returns what the server answered."""
    replies: list[object] = []
    url = base_url.replace("http", "ws", 1) + "/ws"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            challenge = json.loads((await ws.receive(timeout=5)).data)
            assert challenge["type"] == "challenge"
            for frame in [
                "not json", "[1, 2, 3]", '{"type": "teleport"}',
                '{"type": "offer", "sdp": "v=0", "mids": {}}',
                '{"type": "hello", "version": 1, "meeting": "nope", "proof": "x", "profile": ""}',
            ]:
                await ws.send_str(frame)
                replies.append(json.loads((await ws.receive(timeout=5)).data))
            await ws.send_str('{"type": "chat", "body": "' + "x" * 300_000 + '"}')
            replies.append((await ws.receive(timeout=5)).type)
        async with session.ws_connect(url) as ws:
            await ws.receive(timeout=5)  # the challenge
            await ws.send_bytes(os.urandom(64))
            replies.append(json.loads((await ws.receive(timeout=5)).data))
    return replies


def send_media_garbage(media_port: int) -> int:
    """Sends every kind of bad datagram; returns how many."""
    rng = random.Random(2)
    target = ("127.0.0.1", media_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        packets = [rng.randbytes(rng.randrange(1, 1500)) for _ in range(300)]
        packets += [b"\x00\x01\x00\x08" + rng.randbytes(20)]  # truncated STUN
        packets += [  # well-formed STUN for a user nobody is
            struct.pack("!HHI12s", 0x0001, 12, 0x2112A442, rng.randbytes(12))
            + struct.pack("!HH", 0x0006, 8) + b"nobody:x"
        ]
        packets += [bytes([22, 254, 253]) + rng.randbytes(60) for _ in range(20)]  # DTLS
        packets += [bytes([0x80, 96]) + rng.randbytes(200) for _ in range(200)]  # RTP
        packets += [bytes([0x80, 200]) + rng.randbytes(50) for _ in range(50)]  # RTCP
        packets += [rng.randbytes(3000)]
        for index, packet in enumerate(packets):
            sender.sendto(packet, target)
            if index % 50 == 49:
                time.sleep(0.01)  # a steady stream of garbage, not one burst the kernel drops
    return len(packets)


def test_garbage_does_not_disturb_a_running_meeting(browser: Browser, server: Server) -> None:
    alice = Participant(browser, server, "Alice")
    link = alice.create_meeting()
    alice.join()
    bob = Participant(browser, server, "Bob")
    bob.join(link)
    assert bob.self_id in alice.wait_for_playing({bob.self_id})
    before = server.metrics()

    # Playwright's sync API owns this thread's event loop; the attacker gets its own.
    with ThreadPoolExecutor(1) as attacker:
        replies = attacker.submit(asyncio.run, send_websocket_garbage(server.base_url)).result()
    sent = send_media_garbage(server.media_port)

    codes = [r["code"] for r in replies if isinstance(r, dict)]
    assert codes[:5] == ["bad-message", "bad-message", "bad-message", "not-joined", "bad-message"]
    assert replies[5] in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                          aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR)
    assert codes[-1] == "bad-message"

    def dropped_since_before() -> int:
        after = server.metrics()
        return sum(after.get(k, 0) - before.get(k, 0) for k in after if "dropped" in k)

    deadline = time.monotonic() + 10
    while dropped_since_before() < sent and time.monotonic() < deadline:
        time.sleep(0.2)
    # Every bad datagram is dropped and counted, none passes as media.
    assert dropped_since_before() >= sent, f"garbage was not counted: {server.metrics()}"
    # The meeting is undisturbed: both still see live video from the other.
    assert bob.self_id in alice.wait_for_playing({bob.self_id})
    assert alice.self_id in bob.wait_for_playing({alice.self_id})
    alice.close()
    bob.close()
