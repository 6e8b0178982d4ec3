"""One fuzz harness for every parser that reads network input: a seeded mutation
loop over a corpus of real inputs. Each target states the one rule it checks:
any input either parses or raises the parser's documented rejection.

    python -m tests.fuzz --seconds 60 [--seed 1] [TARGET ...]

runs each target for that long; tests/test_fuzz.py runs a short bounded round
of every target in the suite. A failure prints the seed and the input.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aioice import stun
from OpenSSL import SSL

from confide.sfu.dtls import (
    MAX_DTLS_RECORD_BYTES,
    DtlsCertificate,
    DtlsRecordRejected,
    DtlsServerSession,
    check_handshake_datagram,
    self_signed_certificate,
)
from confide.sfu.ice import parse_stun
from confide.sfu.rtp import (
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtpHeader,
    SenderReport,
    parse_compound,
    serialize_compound,
)
from confide.sfu.sdp import parse_offer
from confide.signalling.messages import RemoteProtocolError, parse_client_message

VECTORS = Path(__file__).parent / "vectors"


@dataclass(frozen=True)
class Target:
    name: str
    corpus: Callable[[], list[bytes]]
    run: Callable[[bytes], None]
    """Parses one input; returns normally or raises `rejection`."""
    rejection: tuple[type[BaseException], ...]


# --- Corpora of real inputs ------------------------------------------------------------------


def rtp_corpus() -> list[bytes]:
    header = struct.pack("!BBHII", 0x80, 0x60, 4660, 90000, 0x0C0C0C0C)
    with_extension = struct.pack("!BBHII", 0x90, 0xE0, 1, 2, 3) + bytes.fromhex(
        "bede0001" "10ff0000")
    padded = struct.pack("!BBHII", 0xA0, 0x6F, 7, 8, 9) + b"opus" + bytes([0, 0, 0, 4])
    return [header + bytes(100), with_extension + b"vp8 frame", padded]


def rtcp_corpus() -> list[bytes]:
    block = ReportBlock(ssrc=1, fraction_lost=3, packets_lost=5, highest_sequence=70000,
                        jitter=12, last_sr=0x1234, delay_since_last_sr=99)
    return [
        serialize_compound([ReceiverReport(ssrc=9, reports=[block]), Pli(9, 0x0C0C0C0C)]),
        serialize_compound([SenderReport(ssrc=7, ntp_timestamp=1 << 40, rtp_timestamp=3,
                                         packet_count=4, octet_count=5, reports=[]),
                            Nack(9, 7, [1, 2, 3, 40, 41]), Remb(9, 250_000, [7])]),
    ]


def stun_corpus() -> list[bytes]:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, transaction_id=bytes(12))
    request.attributes["USERNAME"] = "serverufrag:browser"
    request.attributes["PRIORITY"] = 1853817087
    request.attributes["ICE-CONTROLLING"] = 5
    request.attributes["USE-CANDIDATE"] = None
    request.add_message_integrity(b"serverpassword0000000000")
    request.add_fingerprint()
    return [bytes(request)]


def sdp_corpus() -> list[bytes]:
    return [(VECTORS / name).read_bytes() for name in ("chrome_offer.sdp", "firefox_offer.sdp")]


def dtls_corpus() -> list[bytes]:
    """A real ClientHello, as a browser's first flight."""
    cert, key, _ = self_signed_certificate()
    context = SSL.Context(SSL.DTLS_METHOD)
    context.use_certificate(cert)
    context.use_privatekey(key)
    context.set_tlsext_use_srtp(b"SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80")
    client = SSL.Connection(context, None)
    client.set_connect_state()
    try:
        client.do_handshake()
    except SSL.WantReadError:
        pass
    return [client.bio_read(MAX_DTLS_RECORD_BYTES)]


def message_corpus() -> list[bytes]:
    messages = [
        {"type": "hello", "version": 1, "meeting": "a" * 26, "proof": "A" * 86, "profile": "p"},
        {"type": "offer", "sdp": "v=0\r\n", "mids": {"0": {"send": "audio"}, "1": {"recv": "x"}}},
        {"type": "chat", "body": "ciphertext"},
        {"type": "relay", "to": "0123456789abcdef", "body": "{}"},
        {"type": "media", "audio": True, "camera": False, "screen": False},
        {"type": "host-action", "action": "{}", "signature": "A" * 86},
        {"type": "ping"}, {"type": "leave"},
    ]
    return [json.dumps(m).encode() for m in messages]


# --- Targets ---------------------------------------------------------------------------------


_CERTIFICATE: list[DtlsCertificate] = []


def dtls_handshake(data: bytes) -> None:
    """The check before OpenSSL, then OpenSSL itself on what passes, in a fresh session."""
    check_handshake_datagram(data)
    if not _CERTIFICATE:
        _CERTIFICATE.append(DtlsCertificate())
    DtlsServerSession(_CERTIFICATE[0], ["00"]).receive(data)


TARGETS = [
    Target("rtp", rtp_corpus, lambda data: RtpHeader.parse(data) and None, (ValueError,)),
    Target("rtcp", rtcp_corpus, lambda data: parse_compound(data) and None, (ValueError,)),
    Target("stun", stun_corpus, lambda data: parse_stun(data) and None, (ValueError,)),
    Target("sdp", sdp_corpus, lambda data: parse_offer(data.decode("utf-8", "replace"))
           and None, (ValueError,)),
    Target("dtls", dtls_corpus, dtls_handshake, (ValueError,)),  # DtlsRecordRejected is one
    Target("messages", message_corpus,
           lambda data: parse_client_message(data.decode("utf-8", "replace")) and None,
           (RemoteProtocolError,)),
]
assert issubclass(DtlsRecordRejected, ValueError)


# --- Mutation --------------------------------------------------------------------------------


INTERESTING = [0, 1, 0x7F, 0x80, 0xFF]


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        choice = rng.randrange(7)
        position = rng.randrange(len(out) + 1)
        if choice == 0 and out:  # flip a bit
            out[position % len(out)] ^= 1 << rng.randrange(8)
        elif choice == 1 and out:  # an interesting byte
            out[position % len(out)] = rng.choice(INTERESTING)
        elif choice == 2:  # insert random bytes
            out[position:position] = rng.randbytes(rng.randint(1, 16))
        elif choice == 3 and out:  # delete a run
            del out[position:position + rng.randint(1, 16)]
        elif choice == 4:  # truncate
            del out[position:]
        elif choice == 5 and len(out) > 4:  # duplicate a run
            start = rng.randrange(len(out) - 2)
            out[position:position] = out[start:start + rng.randint(1, 64)]
        elif choice == 6 and len(out) >= 2:  # a 16-bit length or count set to an edge
            index = rng.randrange(len(out) - 1)
            out[index:index + 2] = rng.choice([0, 1, 0xFFFF, len(out)]).to_bytes(2, "big")
    return bytes(out)


def fuzz(target: Target, rng: random.Random, iterations: int | None = None,
         seconds: float | None = None) -> tuple[int, int]:
    """Returns (parsed, rejected). Raises AssertionError on any other outcome."""
    corpus = target.corpus()
    parsed = rejected = 0
    deadline = time.monotonic() + seconds if seconds is not None else None
    count = 0
    while (iterations is None or count < iterations) and (
            deadline is None or time.monotonic() < deadline):
        count += 1
        data = mutate(rng, rng.choice(corpus)) if count > len(corpus) else corpus[count - 1]
        try:
            target.run(data)
        except target.rejection:
            rejected += 1
        except Exception as error:  # noqa: BLE001 - that is what is looked for
            raise AssertionError(
                f"{target.name}: {type(error).__name__}: {error} on input {data!r}") from error
        else:
            parsed += 1
    return parsed, rejected


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", choices=[[]] + [t.name for t in TARGETS],
                        default=[])
    parser.add_argument("--seconds", type=float, default=60.0, help="per target")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args(argv)
    for target in TARGETS:
        if args.targets and target.name not in args.targets:
            continue
        parsed, rejected = fuzz(target, random.Random(args.seed), seconds=args.seconds)
        print(f"{target.name}: {parsed + rejected} inputs (seed {args.seed}): "
              f"{parsed} parsed, {rejected} rejected as documented")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
