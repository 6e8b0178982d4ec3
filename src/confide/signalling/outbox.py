"""What the server has to say to one WebSocket, sent by that socket's own writer.

A broadcast only puts text here and never waits for a receiver, so a participant
who stops reading slows nobody else. Their queue is bounded in messages and in
bytes; once it overflows, `put` says so and the hub lets that one receiver go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from aiohttp import web

logger = logging.getLogger(__name__)

MAX_QUEUED_MESSAGES = 4096
MAX_QUEUED_BYTES = 4 * 1024 * 1024
"""Beyond what the kernel's socket buffer already holds (up to a few MiB): many
minutes of a busy meeting's signalling. A reader this far behind is gone."""
CLOSE_TIMEOUT = 5.0
"""How long a closing handshake may take before the connection is cut."""


class Outbox:
    def __init__(self, socket: web.WebSocketResponse) -> None:
        self.socket = socket
        self._queue: deque[str] = deque()
        self._queued_bytes = 0
        self._ready = asyncio.Event()
        self._closing: tuple[int, bytes] | None = None
        self._writer = asyncio.get_running_loop().create_task(self._write())

    @property
    def queued(self) -> int:
        return len(self._queue)

    def put(self, text: str) -> bool:
        """Queue one message; False if the receiver is too far behind to take it."""
        if self._closing is not None or self._writer.done():
            return True  # on its way out: nothing more will be sent anyway
        size = len(text)
        if len(self._queue) >= MAX_QUEUED_MESSAGES or self._queued_bytes + size > MAX_QUEUED_BYTES:
            return False
        self._queue.append(text)
        self._queued_bytes += size
        self._ready.set()
        return True

    def close_after_sending(self, code: int, message: bytes) -> None:
        """Send what is queued, then close with this code (a last error, say)."""
        if self._closing is None:
            self._closing = (code, message)
            self._ready.set()

    async def finished(self) -> None:
        """Wait for the writer to send what it has and close, within a bound."""
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._writer), CLOSE_TIMEOUT * 2)
        self.abandon()

    def abandon(self) -> None:
        """Stop at once: the socket is closed or being cut by someone else."""
        self._writer.cancel()
        self._queue.clear()
        self._queued_bytes = 0

    async def close_now(self, code: int, message: bytes) -> None:
        """Drop what is queued and close, within a bound, whatever the other end does."""
        self.abandon()
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
            await asyncio.wait_for(self.socket.close(code=code, message=message), CLOSE_TIMEOUT)

    async def _write(self) -> None:
        try:
            while True:
                await self._ready.wait()
                while self._queue:
                    text = self._queue.popleft()
                    self._queued_bytes -= len(text)
                    if self.socket.closed:
                        return
                    await self.socket.send_str(text)
                self._ready.clear()
                if self._closing is not None:
                    code, message = self._closing
                    await asyncio.wait_for(
                        self.socket.close(code=code, message=message), CLOSE_TIMEOUT)
                    return
        except (TimeoutError, ConnectionError, RuntimeError):
            # The other end is gone or stuck; its own handler cleans up.
            return
