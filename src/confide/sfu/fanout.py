"""Sending one forwarded RTP packet (or one sender report) to many receivers:
protect a copy under each receiver's SRTP session and send it from the media socket.

Two ways, with the same behaviour: the C extension `_fanout` (built by pip from
_fanout.c) protects in a loop and sends each batch with one sendmmsg call; the
pure-Python way protects and sends one copy at a time. The C way is used when it
was built, unless CONFIDE_PURE_PYTHON=1 is set.

With C, known streams also skip Python on the way in: `learn` puts a stream's
route in a table keyed by the sender's address and the SSRC, and `_fanout.drain`
forwards that stream's packets by itself (see transport.py).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Sequence
from types import ModuleType
from typing import cast

import pylibsrtp

Address = tuple[str, int]
Target = tuple[pylibsrtp.Session, Address]
LIBSRTP2_PROTECT = "<ctype 'srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)'>"


def _load_native() -> ModuleType | None:
    if os.environ.get("CONFIDE_PURE_PYTHON") == "1":
        return None
    try:
        from pylibsrtp._binding import ffi, lib

        from . import _fanout  # type: ignore[attr-defined]
    except ImportError:
        return None
    # _fanout.c calls libsrtp 2's `srtp_protect(ctx, buffer, int *length)`; libsrtp 3
    # changed it, and calling that through this signature would corrupt memory.
    names = ("srtp_protect", "srtp_protect_rtcp", "srtp_unprotect")
    for name in names:
        if str(ffi.typeof(getattr(lib, name))) != LIBSRTP2_PROTECT:
            return None
    _fanout.set_protect(*(int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))
                          for name in names))
    return _fanout  # type: ignore[no-any-return]


NATIVE = _load_native()


def python_fan_out(sock: socket.socket, packet: bytes, targets: Sequence[Target],
                   rtcp: bool = False) -> tuple[int, int]:
    """Returns (copies that failed to protect, copies the socket dropped)."""
    failed = dropped = 0
    for session, address in targets:
        try:
            data = session.protect_rtcp(packet) if rtcp else session.protect(packet)
        except (pylibsrtp.Error, ValueError):  # ValueError: longer than pylibsrtp takes
            failed += 1
            continue
        try:
            sock.sendto(data, address)
        except OSError:  # a full buffer or a dead route: UDP drops, so do we
            dropped += 1
    return failed, dropped


def packed_address(family: int, address: Address) -> bytes:
    """A struct sockaddr for the socket's family (IPv4 mapped into IPv6 if need be)."""
    host, port = address[0], address[1]
    if family == socket.AF_INET:
        return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + (
            socket.inet_aton(host) + bytes(8))
    if ":" not in host:
        host = "::ffff:" + host
    return (struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, 0)
            + socket.inet_pton(socket.AF_INET6, host) + struct.pack("=I", 0))


class FanOut:
    """Bound to one socket; `native` None means: use C if it was built.

    `prepare(targets)` is called once per change in who receives a stream; the
    result goes to `__call__` with every packet."""

    def __init__(self, sock: socket.socket, native: bool | None = None) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.native = NATIVE if native is not False else None
        if native and NATIVE is None:
            raise RuntimeError("the C fan-out (_fanout) was not built")
        self.routes: dict[bytes, tuple[object, ...]] = {}
        """Known streams for `_fanout.drain`: packed sender address + SSRC -> entry."""

    def prepare(self, targets: Sequence[Target]) -> object:
        if self.native is None:
            return list(targets)
        from pylibsrtp._binding import ffi

        # Each entry also holds its session, so the srtp_t stays alive while used.
        prepared = []
        for session, address in targets:
            try:
                packed = packed_address(self.sock.family, address)
            except (OSError, ValueError, struct.error):
                continue  # an address this socket cannot send to: that receiver only
            prepared.append((int(ffi.cast("uintptr_t", session._srtp[0])), packed, session))
        return prepared

    def __call__(self, packet: bytes, prepared: object, rtcp: bool = False) -> tuple[int, int]:
        """`rtcp`: the packet is RTCP, protected as SRTCP."""
        if self.native is None:
            return python_fan_out(self.sock, packet, cast(list[Target], prepared), rtcp)
        result: tuple[int, int] = self.native.fan_out(self.fd, packet, prepared, rtcp)
        return result

    def send_each(self, packets: Sequence[bytes], session: pylibsrtp.Session,
                  address: Address) -> tuple[int, int]:
        """Many packets to one receiver (the answer to a NACK), protected and sent
        in batches. Returns (failed to protect, dropped)."""
        if self.native is None:
            failed = dropped = 0
            for packet in packets:
                one_failed, one_dropped = python_fan_out(self.sock, packet, [(session, address)])
                failed += one_failed
                dropped += one_dropped
            return failed, dropped
        prepared = self.prepare([(session, address)])
        if not prepared:
            return 0, len(packets)
        result: tuple[int, int] = self.native.send_each(
            self.fd, packets, cast(list[object], prepared)[0])
        return result

    def learn(self, address: Address, ssrc: int, inbound: pylibsrtp.Session, targets: object,
              stream: object, blocked: set[str], keep_plain: bool) -> None:
        """From now on `drain` forwards this sender's packets of this SSRC to `targets`
        (a route `prepare` made) by itself. `blocked` is the sender's set of kinds the
        host stopped, watched in place: while it is not empty, Python decides."""
        if self.native is None:
            return
        from pylibsrtp._binding import ffi

        try:
            key = packed_address(self.sock.family, address) + ssrc.to_bytes(4, "big")
        except (OSError, ValueError, struct.error):
            return
        context = int(ffi.cast("uintptr_t", inbound._srtp[0]))
        self.routes[key] = (context, targets, stream, blocked, keep_plain, inbound)

    def forget(self) -> None:
        """Who receives what, or a key or address, changed: Python decides again,
        and learns the routes anew."""
        self.routes.clear()
