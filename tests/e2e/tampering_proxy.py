"""A malicious server for tests: it serves the real Confide server's pages and
API, but rewrites the signalling it relays with a function of the test's choice.
Media still goes to the real SFU (its ICE candidate is in the SDP)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

Tamper = Callable[[dict[str, Any]], dict[str, Any] | list[dict[str, Any]] | None]
"""Rewrites a message from the server to a client; None drops it, and a list sends
several in its place (to replay or forge messages)."""


class TamperingProxy:
    def __init__(self, upstream: str, tamper: Tamper) -> None:
        self.upstream = upstream
        self.tamper = tamper
        self.loop = asyncio.new_event_loop()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.base_url = f"http://localhost:{self.port}"
        self.runner: web.AppRunner | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)

    def stop(self) -> None:
        if self.runner is not None:
            cleanup = asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop)
            try:
                cleanup.result(timeout=10)
            except TimeoutError:
                cleanup.cancel()  # a page still holds a socket; the thread dies with the test run
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/ws", self._websocket)
        app.router.add_route("*", "/{path:.*}", self._http)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _http(self, request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as session:
            async with session.request(
                request.method, self.upstream + request.path_qs,
                data=await request.read(), headers={"Content-Type": request.content_type},
            ) as upstream:
                body = await upstream.read()
                headers = {k: v for k, v in upstream.headers.items()
                           if k.lower() not in ("content-length", "transfer-encoding",
                                                "content-encoding", "connection")}
                return web.Response(status=upstream.status, body=body, headers=headers)

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        client = web.WebSocketResponse(max_msg_size=1 << 20)
        await client.prepare(request)
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(self.upstream.replace("http", "ws", 1) + "/ws",
                                          max_msg_size=1 << 20) as server:
                async def down() -> None:
                    async for message in server:
                        if message.type == aiohttp.WSMsgType.TEXT:
                            tampered = self.tamper(json.loads(message.data))
                            if isinstance(tampered, dict):
                                tampered = [tampered]
                            for each in tampered or []:
                                await client.send_str(json.dumps(each))
                    await client.close()

                relay_down = asyncio.create_task(down())
                async for message in client:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        await server.send_str(message.data)
                await server.close()
                relay_down.cancel()
        return client
