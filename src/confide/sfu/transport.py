"""The SFU's one UDP socket: the only place media touches the network."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import cast

from .fanout import FanOut
from .sfu import Sfu

logger = logging.getLogger(__name__)

TIMER_INTERVAL = 0.1
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
"""Room for bursts (keyframes from many publishers at once) while the loop is busy."""


# The SFU's `now` is time.monotonic(): uvloop's loop.time() counts whole
# milliseconds, cached per loop turn, too coarse for jitter in receiver reports.


class MediaProtocol(asyncio.DatagramProtocol):
    def __init__(self, sfu: Sfu, sock: socket.socket) -> None:
        self.sfu = sfu
        self.sock = sock
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.sfu.transmit = self.transmit
        # Forwarded media goes straight to the socket, batched where C is built.
        fan_out = FanOut(self.sock)
        self.sfu.prepare_targets = fan_out.prepare
        self.sfu.fan_out = fan_out

    def transmit(self, data: bytes, address: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, address)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        # IPv6 addresses come with flow info and scope; IPv4 ones are used as they are
        # (no new tuple per packet: fewer young objects, fewer collector pauses).
        if len(addr) != 2:
            addr = (addr[0], addr[1])
        self.sfu.datagram_received(data, addr, time.monotonic())

    def error_received(self, exc: Exception) -> None:
        # ICMP unreachable from a peer that went away; its timeout removes it.
        logger.debug("media socket error: %s", exc)


async def run_timer(sfu: Sfu) -> None:
    while True:
        await asyncio.sleep(TIMER_INTERVAL)
        try:
            sfu.handle_timer(time.monotonic())
        except Exception:
            logger.exception("SFU timer failed")


def media_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        for option, name in ((socket.SO_RCVBUF, "rmem_max"), (socket.SO_SNDBUF, "wmem_max")):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
            except OSError:
                pass
            # The kernel caps the size silently (net.core.*mem_max, 208 kB by default):
            # say so, as a large webinar's bursts then overflow it.
            if sock.getsockopt(socket.SOL_SOCKET, option) < SOCKET_BUFFER_BYTES:
                logger.warning("media socket buffer is smaller than %d bytes; raise "
                               "net.core.%s for large meetings", SOCKET_BUFFER_BYTES, name)
        sock.bind(address)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def open_media_socket(sfu: Sfu, host: str, port: int) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    sock = media_socket(host, port)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: MediaProtocol(sfu, sock), sock=sock
    )
    return transport
