"""Stopping the server (SIGTERM, as systemd and an operator's upgrade do): every
client is told at once, with WebSocket close 1012 "service restart", and the
process is gone within about a second, not after its handlers time out."""

from __future__ import annotations

import signal
import time

import aiohttp
from bench.loadgen.signalling import create_meeting
from tests.e2e.server_process import start_server
from tests.test_abuse import Member


async def test_sigterm_closes_every_socket_with_service_restart_and_exits() -> None:
    process, server = start_server("shutdown-server.log")
    try:
        async with aiohttp.ClientSession() as http:
            meeting = await create_meeting(http, server.base_url)
            members = [await Member.join(http, server, meeting) for _ in range(3)]
            waiting = await http.ws_connect(server.base_url.replace("http", "ws", 1) + "/ws")
            assert (await waiting.receive_json())["type"] == "challenge"  # not yet joined
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            closing = await waiting.receive(timeout=10)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            for member in members:  # each has a reader of its own, which gets the close
                await member.wait_for(lambda m=member: m.ws.closed, "the close")
            exited = process.wait(timeout=10)
            seconds = time.monotonic() - started
            print(f"SIGTERM to exit: {seconds:.2f} s; exit status {exited}")
            assert {m.ws.close_code for m in members} | {waiting.close_code} == {1012}
            assert exited == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
