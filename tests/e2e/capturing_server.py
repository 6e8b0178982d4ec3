"""`confide serve`, recording what the server itself can read, for tests that
check it is only ciphertext: every RTP and RTCP packet after SRTP decryption
(payloads as the SFU sees them) and every WebSocket text frame it receives.

Run as `python -m tests.e2e.capturing_server CAPTURE_DIR serve ...`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from confide import cli
from confide.sfu.dtls import SrtpKeys
from confide.sfu.endpoint import Endpoint
from confide.signalling.hub import Hub
from confide.signalling.session import Session


class RecordingSession:
    """Wraps a participant's inbound SRTP session and writes down what it opens."""

    def __init__(self, inner: Any, participant_id: str, out: TextIO) -> None:
        self.inner = inner
        self.participant_id = participant_id
        self.out = out

    def _record(self, kind: str, packet: bytes) -> bytes:
        line = {"t": time.time(), "from": self.participant_id, "kind": kind, "hex": packet.hex()}
        self.out.write(json.dumps(line) + "\n")
        return packet

    def unprotect(self, data: bytes) -> bytes:
        return self._record("rtp", self.inner.unprotect(data))

    def unprotect_rtcp(self, data: bytes) -> bytes:
        return self._record("rtcp", self.inner.unprotect_rtcp(data))


def install(capture_dir: Path) -> None:
    media = open(capture_dir / "media.jsonl", "w", buffering=1)  # noqa: SIM115 - lives with the process
    signalling = open(capture_dir / "signalling.jsonl", "w", buffering=1)  # noqa: SIM115

    start_srtp = Endpoint.start_srtp

    def recording_start_srtp(self: Endpoint, keys: SrtpKeys) -> None:
        start_srtp(self, keys)
        self.srtp_in = RecordingSession(self.srtp_in, self.participant_id, media)  # type: ignore[assignment]

    receive = Hub._receive

    async def recording_receive(self: Hub, session: Session, text: str) -> None:
        signalling.write(json.dumps({"t": time.time(), "text": text}) + "\n")
        await receive(self, session, text)

    Endpoint.start_srtp = recording_start_srtp  # type: ignore[method-assign]
    Hub._receive = recording_receive  # type: ignore[method-assign]


if __name__ == "__main__":
    install(Path(sys.argv[1]))
    sys.exit(cli.main(sys.argv[2:]))
