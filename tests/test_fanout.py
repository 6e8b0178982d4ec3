"""The SFU's fan-out, both ways it can run: the C extension (sendmmsg in batches)
and the pure-Python loop. Real UDP sockets on loopback; every receiver must be
able to decrypt its own copy, and only its own."""

from __future__ import annotations

import os
import secrets
import socket
import struct
from collections.abc import Iterator

import pylibsrtp
import pytest

from confide.sfu import fanout
from confide.sfu.fanout import FanOut, packed_address

PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM


def session_pair() -> tuple[pylibsrtp.Session, pylibsrtp.Session]:
    key = secrets.token_bytes(28)
    out = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                           srtp_profile=PROFILE)
    out.allow_repeat_tx = True
    inbound = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                               srtp_profile=PROFILE)
    return pylibsrtp.Session(out), pylibsrtp.Session(inbound)


def rtp(sequence: int, size: int = 1100) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, sequence, 90000, 0x1234) + secrets.token_bytes(size)


def ways() -> list[bool]:
    return [False, True] if fanout.NATIVE is not None else [False]


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def receivers(count: int) -> list[tuple[socket.socket, pylibsrtp.Session, pylibsrtp.Session]]:
    made = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2)
        made.append((sock, *session_pair()))
    return made


def test_the_c_fan_out_is_built_where_a_compiler_is() -> None:
    """CI builds it (gcc and the Python headers are there), so the fast path is what
    the e2e tests exercise; the pure-Python path has its own runs below."""
    if os.environ.get("CONFIDE_PURE_PYTHON") == "1":
        pytest.skip("pure Python asked for")
    assert fanout.NATIVE is not None


@pytest.mark.parametrize("native", ways())
def test_every_receiver_decrypts_its_own_copy(sender: socket.socket, native: bool) -> None:
    people = receivers(150)  # more than one sendmmsg batch (64)
    send = FanOut(sender, native=native)
    prepared = send.prepare([(out, sock.getsockname()) for sock, out, _ in people])
    for sequence in (1, 2):
        packet = rtp(sequence)
        failed, dropped = send(packet, prepared)
        assert (failed, dropped) == (0, 0)
        for sock, _, inbound in people:
            data = sock.recv(4096)
            assert data != packet and packet[12:] not in data  # encrypted on the wire
            assert inbound.unprotect(data) == packet
    for sock, _, _ in people:
        sock.close()


@pytest.mark.parametrize("native", ways())
def test_a_copy_does_not_open_under_another_receivers_key(sender: socket.socket,
                                                          native: bool) -> None:
    (sock_a, out_a, in_a), (sock_b, out_b, in_b) = receivers(2)
    send = FanOut(sender, native=native)
    send(rtp(7), send.prepare([(out_a, sock_a.getsockname()), (out_b, sock_b.getsockname())]))
    with pytest.raises(pylibsrtp.Error):
        in_b.unprotect(sock_a.recv(4096))
    assert in_b.unprotect(sock_b.recv(4096))[2:4] == b"\x00\x07"
    sock_a.close()
    sock_b.close()


def test_c_fan_out_skips_a_malformed_target_and_sends_the_rest(sender: socket.socket) -> None:
    if fanout.NATIVE is None:
        pytest.skip("C fan-out not built")
    (sock, out, inbound), = receivers(1)
    (wire,) = FanOut(sender, native=True).prepare([(out, sock.getsockname())])  # type: ignore
    failed, dropped = fanout.NATIVE.fan_out(sender.fileno(), rtp(3), ["junk", (1, 2), wire])
    assert (failed, dropped) == (2, 0)
    assert inbound.unprotect(sock.recv(4096))[2:4] == b"\x00\x03"
    with pytest.raises(ValueError):
        fanout.NATIVE.fan_out(sender.fileno(), b"short", [wire])
    sock.close()


def test_ipv4_addresses_are_mapped_for_a_dual_stack_socket() -> None:
    mapped = packed_address(socket.AF_INET6, ("127.0.0.1", 5000))
    assert len(mapped) == 28 and mapped[8:24] == socket.inet_pton(socket.AF_INET6,
                                                                   "::ffff:127.0.0.1")
    plain = packed_address(socket.AF_INET, ("127.0.0.1", 5000))
    assert len(plain) == 16 and plain[2:4] == b"\x13\x88" and plain[4:8] == b"\x7f\x00\x00\x01"


@pytest.mark.parametrize("native", ways())
def test_a_sender_report_goes_out_as_srtcp(sender: socket.socket, native: bool) -> None:
    people = receivers(3)
    send = FanOut(sender, native=native)
    report = struct.pack("!BBHIQIII", 0x80, 200, 6, 0x1234, 0xE8E1234580000000, 9000, 5, 500)
    failed, dropped = send(report, send.prepare([(out, s.getsockname()) for s, out, _ in people]),
                           rtcp=True)
    assert (failed, dropped) == (0, 0)
    for sock, _, inbound in people:
        data = sock.recv(4096)
        assert data[:8] == report[:8] and data[8:28] != report[8:]  # header clear, body not
        assert inbound.unprotect_rtcp(data) == report
        sock.close()


@pytest.mark.parametrize("native", ways())
def test_a_bad_address_costs_only_its_own_copy(sender: socket.socket, native: bool) -> None:
    """A participant can make its checks come from port 0 (or a broadcast address);
    sendmmsg stops at that message, and the others in the batch must still go."""
    people = receivers(13)
    targets = [(out, sock.getsockname()) for sock, out, _ in people]
    bad_out, _ = session_pair()
    targets.insert(1, (bad_out, ("127.0.0.1", 0)))
    targets.insert(5, (bad_out, ("255.255.255.255", 5000)))
    send = FanOut(sender, native=native)
    failed, dropped = send(rtp(9), send.prepare(targets))
    assert failed == 0 and dropped == 2
    for sock, _, inbound in people:
        assert inbound.unprotect(sock.recv(4096))[2:4] == b"\x00\x09"
        sock.close()


@pytest.mark.parametrize("native", ways())
def test_many_packets_to_one_receiver_arrive_in_order_and_decrypt(sender: socket.socket,
                                                                  native: bool) -> None:
    """The answer to a NACK: 150 packets (more than one sendmmsg batch) for one
    receiver, each protected under its key, in the order asked."""
    [(sock, out, inbound)] = receivers(1)
    packets = [rtp(sequence, size=200) for sequence in range(150)]
    failed, dropped = FanOut(sender, native=native).send_each(packets, out,
                                                              sock.getsockname())
    assert (failed, dropped) == (0, 0)
    got = [inbound.unprotect(sock.recv(2048)) for _ in packets]
    assert got == packets
    sock.close()


@pytest.mark.parametrize("native", ways())
def test_a_packet_too_short_to_protect_costs_only_itself(sender: socket.socket,
                                                         native: bool) -> None:
    [(sock, out, inbound)] = receivers(1)
    packets = [rtp(1, size=100), b"\x80\x60\x00", rtp(2, size=100)]
    failed, dropped = FanOut(sender, native=native).send_each(packets, out,
                                                              sock.getsockname())
    assert (failed, dropped) == (1, 0)
    assert [inbound.unprotect(sock.recv(2048)) for _ in range(2)] == [packets[0], packets[2]]
    sock.close()
