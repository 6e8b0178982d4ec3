"""Security headers on every response of a running `confide serve`, over HTTP and
over HTTPS with --self-signed (no browser: the client pins the fingerprint the
server printed and trusts nothing else). HSTS only over TLS; no cookies ever.

The aiohttp client runs in a thread of its own: Playwright's sync API holds an
event loop in the main thread for the rest of this suite."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from multidict import CIMultiDict

from confide.web.tls import fingerprint

from .server_process import ARTIFACTS, ROOT, free_port, start_server

T = TypeVar("T")
STATIC_DIR = ROOT / "src" / "confide" / "static"
FINGERPRINT_LINE = re.compile(r"SHA-256 fingerprint ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})")


@dataclass
class Running:
    base_url: str
    log_path: Path
    fingerprint: str | None = None
    """The SHA-256 fingerprint the server printed, when it made its own certificate."""


@pytest.fixture(scope="module")
def http_server() -> Iterator[Running]:
    process, server = start_server("headers-http.log", "--log-format", "json")
    yield Running(base_url=server.base_url, log_path=server.log_path)
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def tls_server() -> Iterator[Running]:
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port(socket.SOCK_STREAM)
    log_path = ARTIFACTS / "headers-tls.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "confide.cli", "serve", "--self-signed", "--port", str(port),
             "--media-port", str(free_port(socket.SOCK_DGRAM))],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
    try:
        printed = wait_for_tls_server(process, log_path, port)
        yield Running(base_url=f"https://localhost:{port}", log_path=log_path,
                      fingerprint=printed)
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_for_tls_server(process: subprocess.Popen[bytes], log_path: Path, port: int) -> str:
    """Returns the printed fingerprint once the port answers."""
    deadline = time.monotonic() + 20
    while True:
        found = FINGERPRINT_LINE.search(log_path.read_text())
        if found:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return found.group(1)
            except OSError:
                pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"confide serve --self-signed did not start; see {log_path}")
        time.sleep(0.1)


def in_a_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, coroutine).result(timeout=60)


def pinned(printed: str) -> aiohttp.Fingerprint:
    """Accept exactly the certificate whose SHA-256 the server printed, and no other."""
    return aiohttp.Fingerprint(bytes.fromhex(printed.replace(":", "")))


async def every_kind_of_response(
    base_url: str, ssl_check: aiohttp.Fingerprint | bool = True,
) -> list[tuple[str, int, CIMultiDict[str]]]:
    """Pages, every static file, the meeting API (successes and refusals), metrics,
    unknown paths and a WebSocket path hit without an upgrade: each request's name,
    status and headers."""
    seen: list[tuple[str, int, CIMultiDict[str]]] = []
    connector = aiohttp.TCPConnector(ssl=ssl_check)
    async with aiohttp.ClientSession(base_url, connector=connector) as session:
        async with session.post("/api/meetings") as created:
            assert created.status == 201
            meeting_id = (await created.json())["meeting_id"]
            seen.append(("POST /api/meetings", created.status, created.headers.copy()))
        join_key = {"join_key": "A" * 43}
        requests: list[tuple[str, str, object]] = [
            ("GET", "/", None),
            ("GET", f"/m/{meeting_id}", None),
            ("GET", "/m/not-a-meeting", None),
            *(("GET", f"/static/{path.name}", None) for path in sorted(STATIC_DIR.iterdir())),
            ("GET", "/static/no-such-file.js", None),
            ("GET", f"/api/meetings/{meeting_id}", None),
            ("PUT", f"/api/meetings/{meeting_id}/join-key", join_key),
            ("PUT", f"/api/meetings/{meeting_id}/join-key", join_key),
            ("PUT", f"/api/meetings/{meeting_id}/join-key", {"join_key": 1}),
            ("GET", "/api/meetings/aaaaaaaaaaaaaaaaaaaaaaaaaa", None),
            ("DELETE", "/api/meetings", None),
            ("GET", "/metrics", None),
            ("GET", "/no/such/page", None),
            ("GET", "/ws", None),
        ]
        for method, path, body in requests:
            async with session.request(method, path, json=body) as response:
                await response.read()
                seen.append((f"{method} {path} -> {response.status}", response.status,
                             response.headers.copy()))
        assert len(session.cookie_jar) == 0, "no response may set a cookie"
    return seen


def check_security_headers(name: str, headers: CIMultiDict[str], over_tls: bool) -> None:
    policy = headers.get("Content-Security-Policy", "")
    directives = [d.strip() for d in policy.split(";")]
    assert "default-src 'self'" in directives, name
    assert "frame-ancestors 'none'" in directives, name
    assert headers.get("Referrer-Policy") == "no-referrer", name
    assert headers.get("X-Frame-Options") == "DENY", name
    assert headers.get("X-Content-Type-Options") == "nosniff", name
    assert "camera=(self)" in headers.get("Permissions-Policy", ""), name
    assert "Set-Cookie" not in headers, name
    if over_tls:
        assert headers.get("Strict-Transport-Security") == "max-age=63072000", name
    else:
        assert "Strict-Transport-Security" not in headers, name


def test_every_http_response_carries_the_security_headers_and_no_hsts(
    http_server: Running,
) -> None:
    seen = in_a_thread(every_kind_of_response(http_server.base_url))
    for name, _, headers in seen:
        check_security_headers(name, headers, over_tls=False)
    statuses = {status for _, status, _ in seen}
    assert {200, 201, 204, 400, 404, 405, 409} <= statuses, "successes and refusals alike"


def test_every_https_response_carries_the_security_headers_and_hsts(
    tls_server: Running,
) -> None:
    assert tls_server.fingerprint is not None
    seen = in_a_thread(
        every_kind_of_response(tls_server.base_url, pinned(tls_server.fingerprint)))
    for name, _, headers in seen:
        check_security_headers(name, headers, over_tls=True)
    statuses = {status for _, status, _ in seen}
    assert {200, 201, 204, 400, 404, 405, 409} <= statuses


def test_the_served_certificate_is_the_one_whose_fingerprint_was_printed(
    tls_server: Running,
) -> None:
    port = int(tls_server.base_url.rsplit(":", 1)[1])
    served = ssl.get_server_certificate(("127.0.0.1", port))
    assert fingerprint(ssl.PEM_cert_to_DER_cert(served)) == tls_server.fingerprint
    assert f"open https://localhost:{port}/" in tls_server.log_path.read_text()


async def fetch_status(url: str, ssl_check: aiohttp.Fingerprint | bool = True) -> int:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_check)) as session:
        async with session.get(url) as response:
            return response.status


def test_a_different_fingerprint_is_refused(tls_server: Running) -> None:
    wrong = aiohttp.Fingerprint(hashlib.sha256(b"another certificate").digest())
    with pytest.raises(aiohttp.ServerFingerprintMismatch):
        in_a_thread(fetch_status(tls_server.base_url + "/", wrong))


def test_a_client_that_trusts_only_public_cas_refuses_the_self_signed_certificate(
    tls_server: Running,
) -> None:
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        in_a_thread(fetch_status(tls_server.base_url + "/"))


def test_plain_http_to_the_tls_port_gets_no_page(tls_server: Running) -> None:
    with pytest.raises(aiohttp.ClientError):
        in_a_thread(fetch_status(tls_server.base_url.replace("https", "http", 1) + "/"))


def test_the_websocket_works_over_tls(tls_server: Running) -> None:
    assert tls_server.fingerprint is not None

    async def challenge_and_refusal(fingerprint: str) -> tuple[Any, Any]:
        connector = aiohttp.TCPConnector(ssl=pinned(fingerprint))
        async with aiohttp.ClientSession(connector=connector) as session:
            url = tls_server.base_url.replace("https", "wss", 1) + "/ws"
            async with session.ws_connect(url) as websocket:
                challenge = await websocket.receive_json(timeout=5)
                await websocket.send_json({"type": "chat", "body": "x"})
                return challenge, await websocket.receive_json(timeout=5)

    challenge, error = in_a_thread(challenge_and_refusal(tls_server.fingerprint))
    assert challenge["type"] == "challenge"
    assert (error["type"], error["code"]) == ("error", "not-joined")


async def create_meeting(base_url: str) -> str:
    async with aiohttp.ClientSession(base_url) as session:
        async with session.post("/api/meetings") as created:
            return str((await created.json())["meeting_id"])


def test_with_json_logs_every_line_the_server_writes_is_a_json_object(
    http_server: Running,
) -> None:
    meeting_id = in_a_thread(create_meeting(http_server.base_url))
    # A malformed request: aiohttp logs an error with a traceback, and would name
    # the client's address.
    port = int(http_server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.0 400")
    deadline = time.monotonic() + 5
    while meeting_id not in http_server.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [json.loads(line) for line in http_server.log_path.read_text().splitlines()]
    assert lines, "the server wrote nothing"
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line)
    created_lines = [line for line in lines if line.get("meeting") == meeting_id]
    assert created_lines[0]["message"] == f"created meeting={meeting_id}"
    assert any(line["logger"] == "aiohttp.access" for line in lines)
    [refused] = [line for line in lines if line["logger"] == "aiohttp.server"]
    assert refused["level"] == "ERROR" and "Bad Header" in refused["exception"]
    for line in lines:
        if line["logger"] != "confide":  # the startup line names the media address
            assert "127.0.0.1" not in json.dumps(line), line
