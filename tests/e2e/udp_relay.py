"""A UDP relay in front of the SFU's media port that impairs chosen browsers' media,
for browser tests and benchmarks.

The server runs with `--host 127.0.0.1 --public-ip 127.0.0.2`, so browsers send media
to 127.0.0.2:<media port>, where the relay listens. For each browser address the relay
opens a socket of its own toward the server (a "flow"), and sends the server's replies
back from the listening socket, so the browser sees the address it expected.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, TypeVar

from .impairment import (
    DIRECTIONS,
    NO_IMPAIRMENT,
    DeliveryQueue,
    Direction,
    DuplexLink,
    Impairment,
    LinkCounters,
)

Address = tuple[str, int]
T = TypeVar("T")

UDP_IPV4_OVERHEAD = 28
"""Header bytes (IPv4 20, UDP 8) a bottleneck carries along with each payload."""

READS_PER_WAKEUP = 64
"""Datagrams read from one socket before the loop serves the others."""

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Flow:
    """One browser's media: its address, the relay's socket toward the server, and
    what the link does each way."""

    browser: Address
    server_socket: socket.socket
    link: DuplexLink

    @property
    def local_port(self) -> int:
        """The browser's port, as its selected local candidate reports it in getStats."""
        return self.browser[1]


class UdpRelay:
    """The relay on the running event loop. Not thread-safe: from other threads, use
    RelayThread."""

    def __init__(self, media_port: int, *, listen_host: str = "127.0.0.2",
                 server_host: str = "127.0.0.1", default: Impairment = NO_IMPAIRMENT,
                 seed: int = 0) -> None:
        self.media_port = media_port
        self.listen_host = listen_host
        self.server: Address = (server_host, media_port)
        self.seed = seed
        self.defaults: dict[Direction, Impairment] = {"up": default, "down": default}
        """What new flows start with."""
        self._flows: dict[Address, Flow] = {}
        self._flows_opened = 0
        self._in_flight: DeliveryQueue[tuple[socket.socket, bytes, Address]] = DeliveryQueue()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: socket.socket | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._listener = self._open_socket((self.listen_host, self.media_port),
                                           self._read_from_browsers)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._in_flight.clear()
        sockets = [flow.server_socket for flow in self._flows.values()]
        if self._listener is not None:
            sockets.append(self._listener)
        for each in sockets:
            assert self._loop is not None
            self._loop.remove_reader(each.fileno())
            each.close()
        self._flows.clear()
        self._listener = None

    def flows(self) -> dict[Address, Flow]:
        """The flows so far, by browser address; a copy."""
        return dict(self._flows)

    def flow_for_port(self, port: int) -> Flow | None:
        """The flow from the browser's local port, whatever its IP."""
        return next((flow for flow in self._flows.values() if flow.local_port == port), None)

    def set(self, flow: Flow | None, direction: Direction | Literal["both"],
            impairment: Impairment) -> None:
        """Impairs one flow, or with None every flow now and every flow to come."""
        directions = DIRECTIONS if direction == "both" else (direction,)
        targets = [flow] if flow is not None else list(self._flows.values())
        for each in directions:
            if flow is None:
                self.defaults[each] = impairment
            for target in targets:
                target.link.set(each, impairment)

    def counters(self, flow: Flow) -> dict[Direction, LinkCounters]:
        return flow.link.counters()

    def _open_socket(self, address: Address, on_readable: Callable[[], None]) -> socket.socket:
        opened = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            opened.setblocking(False)
            opened.bind(address)
            assert self._loop is not None
            self._loop.add_reader(opened.fileno(), on_readable)
        except BaseException:
            opened.close()
            raise
        return opened

    def _open_flow(self, browser: Address) -> Flow:
        server_socket = self._open_socket((self.server[0], 0),
                                          lambda: self._read_from_server(self._flows[browser]))
        link = DuplexLink(self.defaults["up"], self.defaults["down"],
                          seed=f"{self.seed}:{self._flows_opened}")
        self._flows_opened += 1
        flow = self._flows[browser] = Flow(browser, server_socket, link)
        return flow

    def _read_from_browsers(self) -> None:
        assert self._listener is not None
        for data, browser in _drain(self._listener):
            flow = self._flows.get(browser) or self._open_flow(browser)
            self._admit(flow, "up", data)

    def _read_from_server(self, flow: Flow) -> None:
        for data, source in _drain(flow.server_socket):
            if source == self.server:  # anyone else's datagram is not the server's reply
                self._admit(flow, "down", data)

    def _admit(self, flow: Flow, direction: Direction, data: bytes) -> None:
        assert self._loop is not None and self._listener is not None
        deliver_at = flow.link.admit(self._loop.time(), direction, len(data) + UDP_IPV4_OVERHEAD)
        if deliver_at is None:
            return
        if direction == "up":
            self._in_flight.push(deliver_at, (flow.server_socket, data, self.server))
        else:
            self._in_flight.push(deliver_at, (self._listener, data, flow.browser))
        self._deliver_due()

    def _deliver_due(self) -> None:
        assert self._loop is not None
        for sender, data, destination in self._in_flight.pop_due(self._loop.time()):
            _transmit(sender, data, destination)
        next_time = self._in_flight.next_time()
        if next_time is None or (self._timer is not None and self._timer.when() <= next_time):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(next_time, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._deliver_due()


def _drain(readable: socket.socket) -> list[tuple[bytes, Address]]:
    datagrams = []
    for _ in range(READS_PER_WAKEUP):
        try:
            data, source = readable.recvfrom(65536)
        except OSError:  # nothing more (BlockingIOError), or an ICMP error for an earlier send
            break
        datagrams.append((data, source))
    return datagrams


def _transmit(sender: socket.socket, data: bytes, destination: Address) -> None:
    try:
        sender.sendto(data, destination)
    except OSError as error:  # a full send buffer drops the packet, as a network would
        logger.debug("relay could not send %d bytes to %s: %s", len(data), destination, error)


class RelayThread:
    """Runs a UdpRelay on an event loop in a thread of its own, for synchronous tests:

        with RelayThread(UdpRelay(server.media_port)) as relay:
            relay.wait_for_flow(port)
            relay.set(port, "up", Impairment(loss=0.1))

    Flows are named by the browser's local port. Every method is safe from any thread.
    """

    def __init__(self, relay: UdpRelay) -> None:
        self.relay = relay
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="udp-relay")

    def __enter__(self) -> RelayThread:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.relay.start(), self._loop).result(timeout=10)
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        try:
            self._call(self.relay.close)
        finally:
            self._stop()

    def ports(self) -> list[int]:
        """The browsers' local ports, one per flow."""
        return self._call(lambda: [flow.local_port for flow in self.relay.flows().values()])

    def wait_for_flow(self, port: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while port not in self.ports():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no media from local port {port} in {timeout} s")
            time.sleep(0.05)

    def set(self, port: int | None, direction: Direction | Literal["both"],
            impairment: Impairment) -> None:
        """Impairs the flow from a browser's local port, or with None every flow now and
        every flow to come."""
        self._call(lambda: self.relay.set(
            None if port is None else self._flow(port), direction, impairment))

    def counters(self, port: int) -> dict[Direction, LinkCounters]:
        return self._call(lambda: self.relay.counters(self._flow(port)))

    def _flow(self, port: int) -> Flow:
        flow = self.relay.flow_for_port(port)
        if flow is None:
            raise KeyError(f"no flow from local port {port}")
        return flow

    def _call(self, function: Callable[[], T]) -> T:
        async def on_loop() -> T:
            return function()
        return asyncio.run_coroutine_threadsafe(on_loop(), self._loop).result(timeout=10)

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
