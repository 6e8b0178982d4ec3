"""A UDP relay between one peer and the server that loses a fraction of datagrams
(seeded, so runs repeat) and delays the rest by a fixed time, both directions.
A stand-in for tc netem, which needs privileges.

With `media_only`, only SRTP and SRTCP are lost; STUN and DTLS still take the
delay. DTLS retransmission backs off (1, 2, 4, 8 s...), so a few lost handshake
datagrams can hold a join up for many seconds; `media_only` keeps joins quick
when only the media measurement matters.
"""

from __future__ import annotations

import asyncio
import random


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay, from_server: bool) -> None:
        self.relay = relay
        self.from_server = from_server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay.carry(data, addr, self.from_server)


class Relay:
    """Listens on `address` for the peer; sends to `server` from a second socket."""

    def __init__(self, server: tuple[str, int], loss: float = 0.0, delay: float = 0.0,
                 seed: int = 1, media_only: bool = False) -> None:
        self.server = server
        self.media_only = media_only
        self.loss = loss
        self.delay = delay
        self.random = random.Random(seed)
        self.peer: tuple[str, int] | None = None
        self.dropped = 0
        self.carried = 0
        self._front: asyncio.DatagramTransport | None = None
        self._back: asyncio.DatagramTransport | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self._front is not None
        host, port = self._front.get_extra_info("sockname")[:2]
        return host, port

    async def start(self, host: str = "127.0.0.1") -> None:
        loop = asyncio.get_running_loop()
        self._front, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self, False), local_addr=(host, 0))
        self._back, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self, True), local_addr=(host, 0))

    def close(self) -> None:
        for transport in (self._front, self._back):
            if transport is not None:
                transport.close()

    def carry(self, data: bytes, addr: tuple[str, int], from_server: bool) -> None:
        if from_server:
            if self.peer is None or self._front is None:
                return
            transport, destination = self._front, self.peer
        else:
            if self._back is None:
                return
            self.peer = addr
            transport, destination = self._back, self.server
        lossy = not self.media_only or 128 <= data[0] < 192
        if lossy and self.random.random() < self.loss:
            self.dropped += 1
            return
        self.carried += 1
        if self.delay > 0:
            asyncio.get_running_loop().call_later(self.delay, transport.sendto, data, destination)
        else:
            transport.sendto(data, destination)
