"""A real `confide serve` process on free ports, for the browser tests and the
benchmarks alike (a plain module, so that bench/ need not import pytest's conftest)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from .participant import Server

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(
    log_name: str,
    *extra: str,
    ports: tuple[int, int] | None = None,
    launcher: tuple[str, ...] = ("confide.cli",),
    env: dict[str, str] | None = None,
    wrapper: tuple[str, ...] = (),
    host: str | None = None,
) -> tuple[subprocess.Popen[bytes], Server]:
    """Runs `confide serve` on free ports (or the given TCP and UDP ports).

    `launcher` is the module to run and its leading arguments, e.g. the capturing
    server of tests/e2e/capturing_server.py. `wrapper` comes before the Python
    command, e.g. `taskset -c 1` (which execs, so the pid stays the server's).
    With `host`, the server listens there with a self-signed certificate, as on a
    LAN, for browsers in another network namespace.
    """
    ARTIFACTS.mkdir(exist_ok=True)
    port, media_port = ports or (free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM))
    log = open(ARTIFACTS / log_name, "wb")  # noqa: SIM115 - closed with the process
    if host:
        extra = ("--host", host, "--public-ip", host, "--self-signed", *extra)
    metrics_port = free_port(socket.SOCK_STREAM)
    extra = ("--metrics-listen", f"127.0.0.1:{metrics_port}", *extra)
    process = subprocess.Popen(
        [*wrapper, sys.executable, "-m", *launcher, "serve", "--port", str(port),
         "--media-port", str(media_port), *extra],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    base_url = f"https://{host}:{port}" if host else f"http://localhost:{port}"
    server = Server(base_url=base_url, media_port=media_port, log_path=ARTIFACTS / log_name,
                    self_signed=bool(host),
                    metrics_url=f"http://127.0.0.1:{metrics_port}/metrics", pid=process.pid)
    deadline = time.monotonic() + 20
    while True:
        try:
            server.metrics()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"confide serve did not start; see {log.name}") from None
            time.sleep(0.1)
    return process, server
