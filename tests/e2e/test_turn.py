"""The browser's RTCPeerConnection gets exactly the operator's TURN servers from
`welcome`, and no STUN or TURN server at all by default."""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
from typing import Any

from playwright.sync_api import Browser

from .participant import Participant, Server
from .server_process import free_port, start_server

ICE_SERVERS_JS = "() => window.confideClient.peerConnection.getConfiguration().iceServers"


def test_by_default_the_browser_is_given_no_ice_server(browser: Browser, server: Server) -> None:
    person = Participant(browser, server, "Ann")
    person.create_meeting()
    person.join()
    assert person.page.evaluate(ICE_SERVERS_JS) == []
    person.close()


def test_the_browser_uses_the_operators_turn_server_and_still_connects(browser: Browser) -> None:
    # Nothing listens there: the host candidate to the SFU still connects.
    turn_url = f"turn:127.0.0.1:{free_port(socket.SOCK_DGRAM)}?transport=udp"
    process, turn_server = start_server(
        "turn-server.log", "--turn-url", turn_url, "--turn-secret", "north-wind")
    try:
        person = Participant(browser, turn_server, "Ben")
        person.create_meeting()
        person.join()
        servers: list[dict[str, Any]] = person.page.evaluate(ICE_SERVERS_JS)
        person.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
    [given] = servers
    assert given["urls"] == [turn_url]
    assert given["username"].endswith(":confide")
    expected = hmac.new(b"north-wind", given["username"].encode(), hashlib.sha1).digest()
    assert given["credential"] == base64.b64encode(expected).decode()
