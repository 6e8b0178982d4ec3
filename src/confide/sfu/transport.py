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
    """The media socket without the C extension: every datagram goes to the SFU."""

    def __init__(self, sfu: Sfu, sock: socket.socket, fan_out: FanOut) -> None:
        self.sfu = sfu
        self.sock = sock
        self.fan_out = fan_out
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.sfu.transmit = self.transmit
        # Forwarded media goes straight to the socket.
        self.sfu.prepare_targets = self.fan_out.prepare
        self.sfu.fan_out = self.fan_out
        self.sfu.send_each = self.fan_out.send_each

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


class FastMediaReader:
    """The media socket with the C extension: on each wakeup `_fanout.drain` reads a
    batch, forwards the packets of learned routes itself, and hands the rest (and
    a record per forwarded packet) to the SFU. Saves the Python work of the common
    case: the same SRTP stream's next packet."""

    def __init__(self, sfu: Sfu, sock: socket.socket, fan_out: FanOut) -> None:
        assert fan_out.native is not None
        self.sfu = sfu
        self.sock = sock
        self.fd = sock.fileno()
        self.drain = fan_out.native.drain
        self.routes = fan_out.routes
        self.loop = asyncio.get_running_loop()
        sfu.transmit = self.transmit
        sfu.prepare_targets = fan_out.prepare
        sfu.fan_out = fan_out
        sfu.send_each = fan_out.send_each
        sfu.learn_route = fan_out.learn
        sfu.forget_routes = fan_out.forget
        self.loop.add_reader(self.fd, self.readable)

    def transmit(self, data: bytes, address: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, address)
        except OSError:  # a full buffer or a dead route: UDP drops, so do we
            self.sfu.counters["dropped_send_buffer_full"] += 1

    def readable(self) -> None:
        # One batch per wakeup: the loop polls level-triggered and calls again
        # while more wait, so other work (signalling, timers) takes its turn.
        try:
            records, others, copies, failed, dropped, unauthentic = self.drain(
                self.fd, self.routes)
        except Exception:  # A bug here must not take down other participants.
            self.sfu.counters["errors"] += 1
            logger.exception("error reading media")
            return
        self.sfu.forwarded_by_transport(records, copies, failed, dropped, unauthentic)
        for data, address, now in others:
            self.sfu.datagram_received(data, address, now)

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        self.sfu.forget_routes()
        self.sock.close()


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


async def open_media_socket(
    sfu: Sfu, host: str, port: int, native: bool | None = None
) -> asyncio.DatagramTransport | FastMediaReader:
    """The SFU's socket, read by C where it was built (`native` as for FanOut);
    either way `close()` ends it."""
    loop = asyncio.get_running_loop()
    sock = media_socket(host, port)
    fan_out = FanOut(sock, native)
    if fan_out.native is not None:
        return FastMediaReader(sfu, sock, fan_out)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: MediaProtocol(sfu, sock, fan_out), sock=sock
    )
    return transport
