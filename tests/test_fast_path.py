"""The SFU behind its real media socket, both ways it reads it: the C fast path
(`_fanout.drain` forwards the packets of learned routes without Python) and the
pure-Python DatagramProtocol. The in-test browsers of test_sfu.py talk to it over
UDP on loopback, so ICE, DTLS, SRTP and RTCP cross the same code as in a meeting.

Each test runs both ways and asserts the same outcome: whatever C forwards must be
what Python would have forwarded, counted the same, and kept for NACKs the same.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from confide.sfu import fanout
from confide.sfu.endpoint import Endpoint
from confide.sfu.rtp import Nack
from confide.sfu.sfu import Sfu
from confide.sfu.transport import FastMediaReader, open_media_socket
from test_sfu import (
    AUDIO_SSRC,
    CAMERA_SSRC,
    MEETING,
    OPUS_PT,
    VP8_PT,
    Browser,
    OfferedSection,
    rtp_packet,
    rtp_sequence,
)


def ways() -> list[bool]:
    return [False, True] if fanout.NATIVE is not None else [False]


class SocketNetwork:
    """Each browser has its own UDP socket on 127.0.0.1; the SFU has its media socket."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.sockets: dict[int, socket.socket] = {}

    def open(self) -> Browser:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        browser = Browser(sock.getsockname())
        self.sockets[id(browser)] = sock
        return browser

    def move(self, browser: Browser) -> None:
        """The browser's network changed: same keys, a new address."""
        self.sockets.pop(id(browser)).close()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        browser.address = sock.getsockname()
        self.sockets[id(browser)] = sock

    def send(self, browser: Browser, data: bytes) -> None:
        self.sockets[id(browser)].sendto(data, self.server)

    async def deliver(self, browsers: list[Browser]) -> None:
        """Let the server's loop read what was sent; then each browser reads its socket."""
        for _ in range(5):
            await asyncio.sleep(0.01)
        for browser in browsers:
            sock = self.sockets[id(browser)]
            while True:
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    break
                browser.datagram_received(data)

    async def discard(self, browser: Browser) -> None:
        await asyncio.sleep(0.05)
        sock = self.sockets[id(browser)]
        while True:
            try:
                sock.recv(4096)
            except BlockingIOError:
                return

    async def connect(self, browser: Browser) -> None:
        self.send(browser, browser.binding_request())
        await self.deliver([browser])
        for _ in range(10):
            datagrams = browser.dtls_flight()
            if browser.handshake_done and not datagrams:
                return
            for datagram in datagrams:
                self.send(browser, datagram)
            await self.deliver([browser])
        raise AssertionError("DTLS did not finish")

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()


@dataclass
class Call:
    """A publishes audio and camera; B (and C, once joined) receive both."""

    sfu: Sfu
    network: SocketNetwork
    reader: object
    a: Browser
    b: Browser
    endpoint_a: Endpoint
    endpoint_b: Endpoint

    def publish(self, packet: bytes) -> None:
        self.network.send(self.a, self.a.protect_rtp(packet))

    async def join_receiver(self, name: str) -> tuple[Browser, Endpoint]:
        return await join_receiver(self.sfu, self.network, name)

    def learned(self) -> int:
        """Routes the C path knows (0 for the Python path)."""
        if isinstance(self.reader, FastMediaReader):
            return len(self.reader.routes)
        return 0


async def join_receiver(sfu: Sfu, network: SocketNetwork, name: str) -> tuple[Browser, Endpoint]:
    browser = network.open()
    endpoint = sfu.add_endpoint(name, MEETING)
    offer = browser.offer([OfferedSection("0", "audio", "recvonly"),
                           OfferedSection("1", "video", "recvonly")])
    answer, _ = sfu.negotiate(
        endpoint, offer, {"0": ("recv", "a:audio"), "1": ("recv", "a:camera")}, 0.0)
    browser.take_answer(answer)
    await network.connect(browser)
    return browser, endpoint


@pytest.fixture(params=ways(), ids=lambda native: "c" if native else "python")
async def call(request: pytest.FixtureRequest) -> AsyncIterator[Call]:
    sfu = Sfu(public_ip="127.0.0.1", media_port=0)
    reader = await open_media_socket(sfu, "127.0.0.1", 0, native=request.param)
    assert isinstance(reader, FastMediaReader) == request.param
    sock = reader.sock if isinstance(reader, FastMediaReader) else reader.get_extra_info("socket")
    network = SocketNetwork(sock.getsockname())
    a = network.open()
    endpoint_a = sfu.add_endpoint("a", MEETING)
    offer_a = a.offer([OfferedSection("0", "audio", "sendonly", AUDIO_SSRC),
                       OfferedSection("1", "video", "sendonly", CAMERA_SSRC)])
    answer_a, _ = sfu.negotiate(
        endpoint_a, offer_a, {"0": ("send", "audio"), "1": ("send", "camera")}, 0.0)
    a.take_answer(answer_a)
    await network.connect(a)
    b, endpoint_b = await join_receiver(sfu, network, "b")
    call = Call(sfu, network, reader, a, b, endpoint_a, endpoint_b)
    await network.deliver([a])
    a.rtcp.clear()  # the keyframe requests of joining
    yield call
    reader.close()
    network.close()


def camera(sequence: int) -> bytes:
    return rtp_packet(CAMERA_SSRC, VP8_PT, sequence, 3000 * sequence,
                      sequence.to_bytes(2, "big") * 300)


def audio(sequence: int) -> bytes:
    return rtp_packet(AUDIO_SSRC, OPUS_PT, sequence, 960 * sequence, b"\x01" * 80)


async def test_every_packet_arrives_decrypted_and_is_counted_once(call: Call) -> None:
    sent = []
    for sequence in range(1, 41):
        sent += [camera(sequence), audio(sequence)]
        call.publish(sent[-2])
        call.publish(sent[-1])
    await call.network.deliver([call.a, call.b])
    assert call.b.rtp == sent
    counters = call.sfu.counters
    if isinstance(call.reader, FastMediaReader):
        assert call.learned() == 2  # the first of each stream taught C its route
        # The first batch read (32) found no route; from then on C forwarded.
        assert counters["rtp_received_fast_path"] >= 40
    assert counters["rtp_received"] == 80
    assert counters["rtp_forwarded"] == 80
    camera_stream = call.endpoint_a.published["camera"]
    assert camera_stream.stats.received == 40
    assert camera_stream.stats.max_sequence == 40
    assert camera_stream.forwarded_packets == 40
    assert call.endpoint_a.last_packet_at is not None


async def test_a_nack_is_answered_with_a_packet_the_fast_path_forwarded(call: Call) -> None:
    for sequence in range(1, 7):
        call.publish(camera(sequence))
    await call.network.deliver([call.b])
    call.publish(camera(7))
    await call.network.discard(call.b)  # lost on the way to B
    for sequence in range(8, 11):
        call.publish(camera(sequence))
    await call.network.deliver([call.b])
    assert [rtp_sequence(p) for p in call.b.rtp] == [1, 2, 3, 4, 5, 6, 8, 9, 10]
    nack = Nack(call.b.rtcp_ssrc, CAMERA_SSRC, [7])
    call.network.send(call.b, call.b.protect_rtcp([nack]))
    await call.network.deliver([call.b])
    assert call.b.rtp[-1] == camera(7)
    assert call.sfu.counters["nack_answered"] == 1


async def test_someone_who_joins_later_gets_the_next_packets(call: Call) -> None:
    for sequence in range(1, 6):
        call.publish(audio(sequence))
    await call.network.deliver([call.b])
    c, _ = await call.join_receiver("c")
    for sequence in range(6, 11):
        call.publish(audio(sequence))
    await call.network.deliver([call.b, c])
    assert [rtp_sequence(p) for p in c.rtp] == [6, 7, 8, 9, 10]
    assert [rtp_sequence(p) for p in call.b.rtp] == list(range(1, 11))


async def test_someone_who_leaves_gets_nothing_more(call: Call) -> None:
    c, endpoint_c = await call.join_receiver("c")
    call.publish(audio(1))
    await call.network.deliver([call.b, c])
    call.sfu.remove_endpoint(endpoint_c)
    call.publish(audio(2))
    await call.network.deliver([call.b, c])
    assert [rtp_sequence(p) for p in c.rtp] == [1]
    assert [rtp_sequence(p) for p in call.b.rtp] == [1, 2]


async def test_a_receiver_that_moves_gets_the_next_packets_at_its_new_address(
        call: Call) -> None:
    call.publish(audio(1))
    await call.network.deliver([call.b])
    call.network.move(call.b)
    call.network.send(call.b, call.b.binding_request())
    await call.network.deliver([call.b])
    call.publish(audio(2))
    await call.network.deliver([call.b])
    assert [rtp_sequence(p) for p in call.b.rtp] == [1, 2]


async def test_a_kind_the_host_stopped_is_dropped_until_allowed_again(call: Call) -> None:
    call.publish(audio(1))
    call.publish(camera(1))
    await call.network.deliver([call.b])
    call.endpoint_a.blocked.add("audio")  # as hosting.py does, in place
    call.publish(audio(2))
    call.publish(camera(2))
    await call.network.deliver([call.b])
    call.endpoint_a.blocked.clear()
    call.publish(audio(3))
    await call.network.deliver([call.b])
    assert [(p[1] & 0x7F, rtp_sequence(p)) for p in call.b.rtp] == [
        (OPUS_PT, 1), (VP8_PT, 1), (VP8_PT, 2), (OPUS_PT, 3)]
    assert call.sfu.counters["dropped_blocked_by_host"] == 1


async def test_a_forged_packet_on_a_known_stream_is_dropped_and_counted(call: Call) -> None:
    call.publish(audio(1))
    await call.network.deliver([call.b])
    forged = bytearray(call.a.protect_rtp(audio(2)))
    forged[-1] ^= 1  # the authentication tag no longer matches
    call.network.send(call.a, bytes(forged))
    replayed = call.a.protect_rtp(audio(3))
    call.network.send(call.a, replayed)
    call.network.send(call.a, replayed)
    call.publish(audio(4))
    await call.network.deliver([call.b])
    assert [rtp_sequence(p) for p in call.b.rtp] == [1, 3, 4]
    assert call.sfu.counters["dropped_srtp_auth"] == 2
    assert call.sfu.counters["errors"] == 0


async def test_oversize_and_unknown_datagrams_are_dropped_and_counted(call: Call) -> None:
    call.publish(audio(1))
    await call.network.deliver([call.b])
    call.network.send(call.a, b"\x80" + bytes(3000))
    call.network.send(call.a, b"\xff" * 40)
    call.publish(audio(2))
    await call.network.deliver([call.b])
    assert [rtp_sequence(p) for p in call.b.rtp] == [1, 2]
    assert call.sfu.counters["dropped_oversize"] == 1
    assert call.sfu.counters["dropped_unknown"] == 1


async def test_rtp_from_another_address_with_a_known_ssrc_is_not_forwarded(call: Call) -> None:
    """The route is the sender's address and SSRC: a stranger reusing the SSRC
    from elsewhere is unknown, whatever C has learned."""
    call.publish(audio(1))
    await call.network.deliver([call.b])
    stranger = call.network.open()
    call.network.send(stranger, call.a.protect_rtp(audio(2)))
    await call.network.deliver([call.b])
    assert [rtp_sequence(p) for p in call.b.rtp] == [1]
    assert call.sfu.counters["dropped_srtp_unknown"] == 1


def protect_any_length(browser: Browser, packet: bytes) -> bytes:
    """SRTP as a modified client could send it: longer than pylibsrtp's 1500 bytes."""
    from pylibsrtp._binding import ffi, lib

    assert browser.srtp_tx is not None
    buffer = ffi.new("char[]", len(packet) + 200)
    ffi.buffer(buffer)[0:len(packet)] = packet
    length = ffi.new("int *", len(packet))
    assert lib.srtp_protect(browser.srtp_tx._srtp[0], buffer, length) == 0
    return bytes(ffi.buffer(buffer)[0:length[0]])


async def test_srtp_longer_than_python_takes_is_dropped_on_a_known_route(call: Call) -> None:
    """Both ways draw the line at 1500 bytes, what pylibsrtp can unprotect."""
    call.publish(camera(1))
    await call.network.deliver([call.b])
    long_packet = rtp_packet(CAMERA_SSRC, VP8_PT, 2, 6000, b"\x07" * 1900)
    call.network.send(call.a, protect_any_length(call.a, long_packet))
    call.publish(camera(3))
    await call.network.deliver([call.b])
    assert [rtp_sequence(p) for p in call.b.rtp] == [1, 3]
    assert call.sfu.counters["dropped_malformed"] == 1


async def test_a_packet_that_fails_for_one_receiver_costs_no_one_else_anything(
        call: Call) -> None:
    """C receives the camera under another payload type number, so it gets a copy
    rewritten in Python, which cannot protect a packet this long. In the same
    batch: B's consent check and more media, which must all be handled."""
    c = call.network.open()
    endpoint_c = call.sfu.add_endpoint("c", MEETING)
    offer = c.offer([OfferedSection("1", "video", "recvonly", vp8_payload_type=100)])
    answer, _ = call.sfu.negotiate(endpoint_c, offer, {"1": ("recv", "a:camera")}, 0.0)
    c.take_answer(answer)
    await call.network.connect(c)
    call.publish(camera(1))
    await call.network.deliver([call.b, c])
    call.b.stun_responses.clear()
    long_packet = rtp_packet(CAMERA_SSRC, VP8_PT, 2, 6000, b"\x07" * 1400)
    call.network.send(call.a, protect_any_length(call.a, long_packet))
    call.network.send(call.b, call.b.binding_request())
    call.publish(camera(3))
    call.publish(audio(1))
    await call.network.deliver([call.b, c])
    assert len(call.b.stun_responses) == 1
    assert [rtp_sequence(p) for p in c.rtp] == [1, 3]
    assert (OPUS_PT, 1) in [(p[1] & 0x7F, rtp_sequence(p)) for p in call.b.rtp]
    assert call.endpoint_a.published["camera"].stats.received == 3


async def test_a_move_takes_effect_for_the_packets_right_behind_it(call: Call) -> None:
    """The consent check that moves B and A's next packets reach the server
    together: none of those packets may go to B's old address."""
    call.publish(audio(1))
    await call.network.deliver([call.b])
    call.network.move(call.b)
    call.network.send(call.b, call.b.binding_request())
    call.publish(audio(2))
    call.publish(audio(3))
    await call.network.deliver([call.b])
    assert [rtp_sequence(p) for p in call.b.rtp] == [1, 2, 3]
