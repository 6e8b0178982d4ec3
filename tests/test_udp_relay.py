"""The impairing UDP relay of tests/e2e/udp_relay.py on loopback, with plain sockets
standing in for the browsers and the SFU: it forwards both ways, answers from the
address the browser sent to, and impairs each flow and direction on its own."""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from tests.e2e.impairment import Impairment
from tests.e2e.udp_relay import Address, RelayThread, UdpRelay

TIMEOUT = 10.0
PUBLIC_IP = "127.0.0.2"


def udp_socket() -> socket.socket:
    opened = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    opened.bind(("127.0.0.1", 0))
    opened.settimeout(TIMEOUT)
    return opened


@pytest.fixture
def server() -> Iterator[socket.socket]:
    """Where the SFU would be: 127.0.0.1 on the media port."""
    with udp_socket() as bound:
        yield bound


@pytest.fixture
def browsers() -> Iterator[tuple[socket.socket, socket.socket]]:
    with udp_socket() as first, udp_socket() as second:
        yield first, second


@pytest.fixture
def relay(server: socket.socket) -> Iterator[RelayThread]:
    with RelayThread(UdpRelay(port_of(server), seed=1)) as running:
        yield running


def port_of(bound: socket.socket) -> int:
    return int(bound.getsockname()[1])


def public_address(server: socket.socket) -> Address:
    """Where the server tells browsers to send media."""
    return (PUBLIC_IP, port_of(server))


def open_flow(browser: socket.socket, server: socket.socket) -> Address:
    """Sends one datagram through the relay and echoes it back; returns the address
    the server sees for this browser (the relay's socket for its flow)."""
    browser.sendto(b"hello", public_address(server))
    data, (host, port) = server.recvfrom(2048)
    server.sendto(data, (host, port))
    assert browser.recvfrom(2048)[0] == b"hello"
    return str(host), int(port)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {TIMEOUT} s")
        time.sleep(0.01)


def nothing_waiting(receiver: socket.socket) -> bool:
    readable, _, _ = select.select([receiver], [], [], 0)
    return not readable


def test_replies_come_from_the_address_the_browser_sent_to(
        relay: RelayThread, server: socket.socket,
        browsers: tuple[socket.socket, socket.socket]) -> None:
    browser = browsers[0]
    browser.sendto(b"ping", public_address(server))
    data, relay_side = server.recvfrom(2048)
    assert data == b"ping"
    assert relay_side[0] == "127.0.0.1"
    assert relay_side != browser.getsockname()  # the relay's own socket, not the browser's
    server.sendto(b"pong", relay_side)
    assert browser.recvfrom(2048) == (b"pong", public_address(server))


def test_each_browser_address_gets_a_flow_of_its_own(
        relay: RelayThread, server: socket.socket,
        browsers: tuple[socket.socket, socket.socket]) -> None:
    first, second = browsers
    first.sendto(b"from first", public_address(server))
    second.sendto(b"from second", public_address(server))
    seen = dict(server.recvfrom(2048) for _ in range(2))
    assert seen.keys() == {b"from first", b"from second"}
    assert seen[b"from first"] != seen[b"from second"]
    assert sorted(relay.ports()) == sorted([port_of(first), port_of(second)])
    server.sendto(b"to second", seen[b"from second"])
    server.sendto(b"to first", seen[b"from first"])
    assert first.recvfrom(2048)[0] == b"to first"
    assert second.recvfrom(2048)[0] == b"to second"


def test_blocking_up_drops_what_the_browser_sends_and_still_delivers_the_replies(
        relay: RelayThread, server: socket.socket,
        browsers: tuple[socket.socket, socket.socket]) -> None:
    browser = browsers[0]
    relay_side = open_flow(browser, server)
    relay.set(port_of(browser), "up", Impairment(blocked=True))
    browser.sendto(b"blocked", public_address(server))
    wait_until(lambda: relay.counters(port_of(browser))["up"].blocked == 1, "blocked")
    assert nothing_waiting(server)
    server.sendto(b"down is open", relay_side)
    assert browser.recvfrom(2048)[0] == b"down is open"


def test_blocking_down_drops_what_the_server_sends_and_still_delivers_the_browsers(
        relay: RelayThread, server: socket.socket,
        browsers: tuple[socket.socket, socket.socket]) -> None:
    browser = browsers[0]
    relay_side = open_flow(browser, server)
    relay.set(port_of(browser), "down", Impairment(blocked=True))
    browser.sendto(b"up is open", public_address(server))
    assert server.recvfrom(2048)[0] == b"up is open"
    server.sendto(b"blocked", relay_side)
    wait_until(lambda: relay.counters(port_of(browser))["down"].blocked == 1, "blocked")
    assert nothing_waiting(browser)


def test_a_delayed_packet_arrives_after_one_sent_later_without_delay(
        relay: RelayThread, server: socket.socket,
        browsers: tuple[socket.socket, socket.socket]) -> None:
    browser = browsers[0]
    open_flow(browser, server)
    relay.set(port_of(browser), "up", Impairment(delay_ms=1500))
    browser.sendto(b"delayed", public_address(server))
    wait_until(lambda: relay.counters(port_of(browser))["up"].passed == 2, "admitted")
    relay.set(port_of(browser), "up", Impairment())
    browser.sendto(b"prompt", public_address(server))
    assert [server.recvfrom(2048)[0] for _ in range(2)] == [b"prompt", b"delayed"]


def test_impairing_one_flow_leaves_the_others_alone(
        relay: RelayThread, server: socket.socket,
        browsers: tuple[socket.socket, socket.socket]) -> None:
    impaired, other = browsers
    open_flow(impaired, server)
    open_flow(other, server)
    relay.set(port_of(impaired), "both", Impairment(blocked=True))
    impaired.sendto(b"blocked", public_address(server))
    other.sendto(b"open", public_address(server))
    assert server.recvfrom(2048)[0] == b"open"
    wait_until(lambda: relay.counters(port_of(impaired))["up"].blocked == 1, "blocked")
    assert relay.counters(port_of(other))["up"].blocked == 0


def test_impairing_one_flow_leaves_flows_that_come_later_alone(
        relay: RelayThread, server: socket.socket,
        browsers: tuple[socket.socket, socket.socket]) -> None:
    impaired, late = browsers
    open_flow(impaired, server)
    relay.set(port_of(impaired), "both", Impairment(blocked=True))
    late.sendto(b"open", public_address(server))
    assert server.recvfrom(2048)[0] == b"open"


def test_impairing_every_flow_covers_flows_that_come_later(
        relay: RelayThread, server: socket.socket,
        browsers: tuple[socket.socket, socket.socket]) -> None:
    early, late = browsers
    open_flow(early, server)
    relay.set(None, "up", Impairment(blocked=True))
    early.sendto(b"early", public_address(server))
    late.sendto(b"late", public_address(server))
    wait_until(lambda: port_of(late) in relay.ports(), "a flow for the late browser")
    wait_until(lambda: relay.counters(port_of(early))["up"].blocked == 1, "early blocked")
    wait_until(lambda: relay.counters(port_of(late))["up"].blocked == 1, "late blocked")
    assert nothing_waiting(server)


def test_a_default_impairment_applies_to_new_flows(
        server: socket.socket, browsers: tuple[socket.socket, socket.socket]) -> None:
    browser = browsers[0]
    lossy = Impairment(loss=1.0)
    with RelayThread(UdpRelay(port_of(server), default=lossy)) as relay:
        browser.sendto(b"lost", public_address(server))
        relay.wait_for_flow(port_of(browser), timeout=TIMEOUT)
        wait_until(lambda: relay.counters(port_of(browser))["up"].lost == 1, "lost")
        assert nothing_waiting(server)


async def test_the_relay_runs_on_the_callers_event_loop(
        server: socket.socket, browsers: tuple[socket.socket, socket.socket]) -> None:
    loop = asyncio.get_running_loop()
    browser = browsers[0]
    server.setblocking(False)
    browser.setblocking(False)
    relay = UdpRelay(port_of(server))
    await relay.start()
    try:
        await loop.sock_sendto(browser, b"ping", public_address(server))
        data, relay_side = await asyncio.wait_for(loop.sock_recvfrom(server, 2048), TIMEOUT)
        await loop.sock_sendto(server, data, relay_side)
        reply = await asyncio.wait_for(loop.sock_recvfrom(browser, 2048), TIMEOUT)
        assert reply == (b"ping", public_address(server))
        flow = relay.flow_for_port(port_of(browser))
        assert flow is not None
        assert relay.flows() == {browser.getsockname(): flow}
        assert relay.counters(flow)["up"].passed == relay.counters(flow)["down"].passed == 1
    finally:
        relay.close()
