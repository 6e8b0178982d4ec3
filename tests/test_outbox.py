"""A socket's outbox: in order, bounded, and never waiting for its reader."""

from __future__ import annotations

import asyncio

from confide.signalling.outbox import MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES, Outbox


class FakeSocket:
    """Stands in for aiohttp's WebSocketResponse: records what is sent; can stall."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed = False
        self.close_code: int | None = None
        self.reading = asyncio.Event()
        self.reading.set()

    async def send_str(self, text: str) -> None:
        await self.reading.wait()  # a reader that stopped: the write never completes
        self.sent.append(text)

    async def close(self, code: int, message: bytes) -> None:
        self.closed, self.close_code = True, code


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_messages_go_out_in_order() -> None:
    socket = FakeSocket()
    outbox = Outbox(socket)  # type: ignore[arg-type]
    for i in range(10):
        assert outbox.put(f"m{i}")
    await settle()
    assert socket.sent == [f"m{i}" for i in range(10)]
    outbox.abandon()


async def test_a_reader_that_stopped_overflows_by_bytes_without_blocking_the_sender() -> None:
    socket = FakeSocket()
    socket.reading.clear()
    outbox = Outbox(socket)  # type: ignore[arg-type]
    chunk = "x" * 16000
    accepted = 0
    while outbox.put(chunk):  # never awaits: a broadcast loop stays free
        accepted += 1
    assert accepted * len(chunk) <= MAX_QUEUED_BYTES < (accepted + 2) * len(chunk)
    outbox.abandon()


async def test_a_reader_that_stopped_overflows_by_count_of_small_messages() -> None:
    socket = FakeSocket()
    socket.reading.clear()
    outbox = Outbox(socket)  # type: ignore[arg-type]
    accepted = 0
    while outbox.put("{}"):
        accepted += 1
    assert MAX_QUEUED_MESSAGES <= accepted <= MAX_QUEUED_MESSAGES + 1
    outbox.abandon()


async def test_close_after_sending_sends_what_is_queued_first() -> None:
    socket = FakeSocket()
    socket.reading.clear()
    outbox = Outbox(socket)  # type: ignore[arg-type]
    outbox.put("error: you are refused")
    outbox.close_after_sending(4403, b"refused")
    assert outbox.put("nothing after the close") is True  # accepted and dropped
    socket.reading.set()
    await outbox.finished()
    assert socket.sent == ["error: you are refused"]
    assert socket.close_code == 4403
