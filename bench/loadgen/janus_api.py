"""A client of Janus's HTTP API (https://janus.conf.meetecho.com/docs/rest.html):
one session, many plugin handles, and one long poll that hands each event to
whoever waits for its transaction or handle."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import defaultdict
from typing import Any

import aiohttp


class JanusError(RuntimeError):
    pass


class JanusSession:
    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.session_id = 0
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.trickled: dict[int, list[str]] = defaultdict(list)
        """Candidates Janus trickled, per handle."""
        self.up: set[int] = set()
        """Handles whose PeerConnection Janus reported up ('webrtcup')."""
        self._poll: asyncio.Task[None] | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": body.get("transaction") or secrets.token_hex(8)}
        async with self.http.post(f"{self.base_url}{path}", json=body) as reply:
            reply.raise_for_status()
            data: dict[str, Any] = await reply.json()
        if data.get("janus") == "error":
            raise JanusError(str(data.get("error")))
        return data

    async def open(self) -> None:
        data = await self._post("", {"janus": "create"})
        self.session_id = data["data"]["id"]
        self._poll = asyncio.create_task(self._long_poll())

    async def close(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll
        with contextlib.suppress(Exception):
            await self._post(f"/{self.session_id}", {"janus": "destroy"})

    async def attach(self, plugin: str = "janus.plugin.videoroom") -> int:
        data = await self._post(f"/{self.session_id}", {"janus": "attach", "plugin": plugin})
        return int(data["data"]["id"])

    async def request(self, handle: int, body: dict[str, Any]) -> dict[str, Any]:
        """A plugin request answered at once ('success'); returns its plugin data."""
        data = await self._post(f"/{self.session_id}/{handle}",
                                {"janus": "message", "body": body})
        result: dict[str, Any] = data["plugindata"]["data"]
        if "error" in result:
            raise JanusError(result["error"])
        return result

    async def message(self, handle: int, body: dict[str, Any],
                      jsep: dict[str, Any] | None = None,
                      timeout: float = 30) -> dict[str, Any]:
        """A plugin request answered by a later event; returns that whole event
        (plugindata, and jsep if there is one)."""
        transaction = secrets.token_hex(8)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[transaction] = future
        message: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
        if jsep is not None:
            message["jsep"] = jsep
        try:
            await self._post(f"/{self.session_id}/{handle}", message)
            event = await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(transaction, None)
        data = event.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(data["error"])
        return event

    async def trickle(self, handle: int, candidate: str | None) -> None:
        """One of our candidates, or None for 'no more'."""
        body: dict[str, Any] = (
            {"completed": True} if candidate is None
            else {"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0})
        await self._post(f"/{self.session_id}/{handle}", {"janus": "trickle", "candidate": body})

    async def webrtc_up(self, handle: int, timeout: float = 15) -> None:
        """Janus refuses subscriptions to a feed ('No such feed') until it is up."""
        async with asyncio.timeout(timeout):
            while handle not in self.up:
                await asyncio.sleep(0.02)

    async def _long_poll(self) -> None:
        url = f"{self.base_url}/{self.session_id}"
        while True:
            try:
                async with self.http.get(url, params={"maxev": "50"}) as reply:
                    events = await reply.json()
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.1)
                continue
            for event in events if isinstance(events, list) else [events]:
                self._dispatch(event)

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("janus")
        if kind == "webrtcup":
            self.up.add(int(event["sender"]))
            return
        if kind == "trickle":
            candidate = event.get("candidate", {})
            if isinstance(candidate, dict) and candidate.get("candidate"):
                self.trickled[int(event["sender"])].append(candidate["candidate"])
            return
        future = self._waiting.get(event.get("transaction", ""))
        if kind == "event" and future is not None and not future.done():
            future.set_result(event)
