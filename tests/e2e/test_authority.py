"""What the host decides holds end to end: a server that replays, re-aims or makes
up host actions changes nothing on the clients, and the page says so.

Each test puts one participant behind a tampering server (tests/e2e/
tampering_proxy.py) that plays the attack, while the host talks to the real one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from .participant import Participant, Server
from .tampering_proxy import Tamper, TamperingProxy


@pytest.fixture
def behind_proxy(server: Server) -> Iterator[tuple[TamperingProxy, Server]]:
    """A tampering server in front of the real one; the test sets its `tamper`."""
    proxy = TamperingProxy(server.base_url, lambda message: message)
    proxy.start()
    yield proxy, Server(base_url=proxy.base_url, media_port=server.media_port,
                        log_path=server.log_path, metrics_url=server.metrics_url)
    proxy.stop()


@pytest.fixture
def host_and_guest(
    browser: Browser, server: Server, behind_proxy: tuple[TamperingProxy, Server],
) -> Iterator[tuple[TamperingProxy, Participant, Participant]]:
    """Hilde hosts on the real server; Vera joins through the tampering one."""
    proxy, tampered = behind_proxy
    host = Participant(browser, server, "Hilde")
    guest = Participant(browser, tampered, "Vera")
    guest.expects_alerts = True
    try:
        link = host.create_meeting()
        host.join()
        guest.join(link.replace(server.base_url, tampered.base_url))
        yield proxy, host, guest
    finally:
        host.close()
        guest.close()


def on_ping(forge: Any) -> Tamper:
    """Sends what `forge()` returns when the client next pings (once), then the pong."""
    done: list[bool] = []

    def tamper(message: dict[str, Any]) -> list[dict[str, Any]]:
        if message["type"] == "pong" and not done:
            done.append(True)
            return [*forge(), message]
        return [message]
    return tamper


def recording(kind: str, into: list[dict[str, Any]]) -> Tamper:
    """Relays everything, keeping a copy of each message of this type (to replay)."""
    def tamper(message: dict[str, Any]) -> dict[str, Any]:
        if message["type"] == kind:
            into.append(message)
        return message
    return tamper


def alert_text(person: Participant) -> str:
    alert = person.page.locator("#security-alert")
    alert.wait_for(state="visible", timeout=10_000)
    return alert.inner_text()


def test_a_replayed_host_action_is_refused(
    host_and_guest: tuple[TamperingProxy, Participant, Participant], artifacts: Path,
) -> None:
    """The host locks the meeting and unlocks it again; the server then delivers the
    signed lock a second time. Before, the guest's page showed the meeting locked."""
    proxy, host, guest = host_and_guest
    seen: list[dict[str, Any]] = []
    proxy.tamper = recording("host-action", seen)
    host.open_panel("participants")
    host.page.locator("#lock-meeting").check()
    guest.page.locator("#locked-indicator").wait_for(state="visible")
    host.page.locator("#lock-meeting").uncheck()
    guest.page.locator("#locked-indicator").wait_for(state="hidden")
    [lock] = [m for m in seen if json.loads(m["action"])["kind"] == "lock"]
    proxy.tamper = on_ping(lambda: [lock])
    guest.client_call("_send", {"type": "ping"})
    assert "already done once" in alert_text(guest)
    guest.page.screenshot(path=str(artifacts / "authority-replayed-action.png"))
    assert guest.evaluate("() => window.confideClient.policy.locked") is False
    assert guest.page.locator("#locked-indicator").is_hidden()


def test_a_host_action_the_server_re_aims_is_refused(
    browser: Browser, server: Server, behind_proxy: tuple[TamperingProxy, Server],
    artifacts: Path,
) -> None:
    """The server tells Vera's page that she has Carl's id (and Carl hers), then
    relays the host's signed mute of Carl. Before, Vera's page muted her."""
    proxy, tampered = behind_proxy
    host = Participant(browser, server, "Hilde")
    carl = Participant(browser, server, "Carl")
    vera = Participant(browser, tampered, "Vera")
    vera.expects_alerts = True
    ids: dict[str, str] = {}

    def swap_ids(message: dict[str, Any]) -> dict[str, Any]:
        if message["type"] == "welcome":
            ids["vera"] = message["you"]
        if "vera" not in ids:
            return message
        signed = {k: message.pop(k) for k in ("action", "signature") if k in message}
        text = json.dumps(message)
        text = text.replace(ids["carl"], "@swap@").replace(ids["vera"], ids["carl"])
        return {**json.loads(text.replace("@swap@", ids["vera"])), **signed}

    try:
        link = host.create_meeting()
        host.join()
        carl.join(link)
        ids["carl"] = carl.self_id
        proxy.tamper = swap_ids
        vera.join(link.replace(server.base_url, tampered.base_url))
        assert vera.evaluate("() => window.confideClient.selfId") == ids["carl"]
        host.client_call("mute", ids["carl"])
        assert "aimed at someone other" in alert_text(vera)
        vera.page.screenshot(path=str(artifacts / "authority-re-aimed-action.png"))
        assert vera.evaluate("() => window.confideClient._microphoneEnabled") is True
        # The real Carl was muted, as the host meant.
        carl.page.get_by_text("The host muted you").first.wait_for(timeout=10_000)
    finally:
        for person in (host, carl, vera):
            person.close()


UNSIGNED_DISMISSALS = {
    "removed": ({"type": "error", "code": "removed", "fatal": True,
                 "message": "the host removed you from the meeting"},
                "The server disconnected you (the host did not sign this)", "host removed"),
    "ended": ({"type": "ended", "message": "the host ended the meeting"},
              "The server closed the meeting", "host ended"),
}


@pytest.mark.parametrize("dismissal", UNSIGNED_DISMISSALS.values(), ids=UNSIGNED_DISMISSALS.keys())
def test_a_dismissal_the_host_did_not_sign_is_worded_as_the_servers(
    host_and_guest: tuple[TamperingProxy, Participant, Participant],
    dismissal: tuple[dict[str, Any], str, str],
) -> None:
    """Before, the page said "The host removed you" or "The host ended the meeting"
    on the server's word alone."""
    forged, shown, never = dismissal
    proxy, _, guest = host_and_guest
    proxy.tamper = on_ping(lambda: [forged])
    guest.client_call("_send", {"type": "ping"})
    guest.page.get_by_text(shown).first.wait_for(timeout=10_000)
    assert never not in guest.page.locator("body").inner_text().lower()


def test_a_chat_message_delivered_twice_shows_once(
    host_and_guest: tuple[TamperingProxy, Participant, Participant],
) -> None:
    proxy, host, guest = host_and_guest
    chats: list[dict[str, Any]] = []
    proxy.tamper = recording("chat", chats)
    host.send_chat("said once")
    guest.page.wait_for_selector(".chat-message:has-text('said once')", state="attached")
    proxy.tamper = on_ping(lambda: [chats[-1]])
    guest.client_call("_send", {"type": "ping"})
    assert "delivered twice" in alert_text(guest)
    assert guest.page.locator(".chat-message:has-text('said once')").count() == 1


def test_a_stream_the_server_puts_in_someone_elses_tile_is_not_played(
    browser: Browser, server: Server, behind_proxy: tuple[TamperingProxy, Server],
    artifacts: Path,
) -> None:
    """The server labels Hilde's camera as Carl's and Carl's as Hilde's in what it
    tells Vera. Before, Vera's page played each in the other's tile: the frames
    decrypted under keys Vera had. Now a tile plays only its own person's frames."""
    proxy, tampered = behind_proxy
    host = Participant(browser, server, "Hilde")
    carl = Participant(browser, server, "Carl")
    vera = Participant(browser, tampered, "Vera")
    vera.expects_alerts = True
    ids: dict[str, str] = {}

    def relabel(streams: list[dict[str, Any]]) -> None:
        for stream in streams:
            if stream["kind"] == "camera" and stream["participant"] in (ids["hilde"], ids["carl"]):
                stream["participant"] = (ids["carl"] if stream["participant"] == ids["hilde"]
                                         else ids["hilde"])

    def swap_cameras(message: dict[str, Any]) -> dict[str, Any]:
        if message["type"] in ("welcome", "streams"):
            relabel(message["streams"])
        return message

    try:
        link = host.create_meeting()
        host.join()
        carl.join(link)
        assert carl.self_id in host.wait_for_playing({carl.self_id})
        ids.update(hilde=host.self_id, carl=carl.self_id)
        proxy.tamper = swap_cameras
        vera.join(link.replace(server.base_url, tampered.base_url))
        assert "arrived in" in alert_text(vera)
        vera.page.locator("#encryption[data-state='failing']").wait_for(timeout=10_000)
        vera.page.screenshot(path=str(artifacts / "authority-relabelled-stream.png"))
        decoded = vera.evaluate("""async () => {
          const stats = await window.confideClient.peerConnection.getStats();
          return [...stats.values()].filter((s) => s.type === 'inbound-rtp' && s.kind === 'video')
            .reduce((sum, s) => sum + (s.framesDecoded ?? 0), 0);
        }""")
        assert decoded == 0, "a relabelled camera was decoded"
        # The others, talking to the real server, see each other as before.
        assert carl.self_id in host.wait_for_playing({carl.self_id})
    finally:
        for person in (host, carl, vera):
            person.close()


def test_someone_who_left_cannot_be_replayed_into_the_meeting(
    browser: Browser, server: Server, behind_proxy: tuple[TamperingProxy, Server],
    artifacts: Path,
) -> None:
    """Carl joins and leaves; the server then announces him to Vera again, with his
    real signed announcement. Before, Vera's page showed him as present and the
    security code counted him. Now he must sign a fresh challenge, cannot (his
    private key left with his page), and Vera's page says so."""
    proxy, tampered = behind_proxy
    joined: list[dict[str, Any]] = []
    proxy.tamper = recording("joined", joined)
    host = Participant(browser, server, "Hilde")
    vera = Participant(browser, tampered, "Vera")
    vera.expects_alerts = True
    carl = Participant(browser, server, "Carl")
    try:
        link = host.create_meeting()
        host.join()
        vera.join(link.replace(server.base_url, tampered.base_url))
        carl.join(link)
        carl_id = carl.self_id
        vera.page.locator(f".tile[data-participant-id='{carl_id}']").wait_for()
        vera.page.locator("#encryption[data-state='e2ee']").wait_for(timeout=15_000)
        carl.close()
        vera.page.locator(f".tile[data-participant-id='{carl_id}']").wait_for(state="detached")
        [carl_joined] = [m for m in joined if m["participant"]["id"] == carl_id]
        proxy.tamper = on_ping(lambda: [carl_joined])
        vera.client_call("_send", {"type": "ping"})
        vera.page.locator(f".tile[data-participant-id='{carl_id}']").wait_for()
        alert = vera.page.locator("#security-alert", has_text="Carl did not prove they are here")
        alert.wait_for(timeout=20_000)
        vera.page.locator("#encryption[data-state='failing']").wait_for(timeout=5_000)
        vera.open_panel("participants")
        entry = vera.page.locator(f"#participant-list li[data-participant-id='{carl_id}']")
        assert "Not verified" in entry.inner_text()
        vera.page.screenshot(path=str(artifacts / "authority-replayed-participant.png"))
        # The code counts only those who proved they are here: Hilde's and Vera's agree.
        assert vera.page.locator("#security-code").inner_text() == (
            host.page.locator("#security-code").inner_text())
    finally:
        for person in (host, vera, carl):
            person.close()


def test_someone_let_in_without_the_hosts_signed_admit_gets_no_keys(
    browser: Browser, server: Server,
    host_and_guest: tuple[TamperingProxy, Participant, Participant], artifacts: Path,
) -> None:
    """The server announces Carl to Vera without the host's signed admit, as a server
    that let him in past the lobby on its own would have to. Before, Vera's page
    shared her keys with anyone the server announced."""
    proxy, host, vera = host_and_guest

    def drop_pass(message: dict[str, Any]) -> dict[str, Any]:
        if message["type"] == "joined":
            message["participant"]["pass"] = None
        return message

    proxy.tamper = drop_pass
    carl = Participant(browser, server, "Carl")
    try:
        carl.join(host.page.url)
        assert "no pass signed by the host" in alert_text(vera)
        vera.open_panel("participants")
        entry = vera.page.locator(f"#participant-list li[data-participant-id='{carl.self_id}']")
        entry.wait_for()
        assert "Not verified" in entry.inner_text()
        vera.page.screenshot(path=str(artifacts / "authority-admitted-without-pass.png"))
        # The host, who did let Carl in, sees and decrypts him.
        assert carl.self_id in host.wait_for_playing({carl.self_id})
    finally:
        carl.close()


def test_remove_and_block_keeps_them_out_even_of_the_lobby(
    browser: Browser, server: Server, artifacts: Path,
) -> None:
    """Before, a removed person knocked again, or walked in with the lobby off."""
    host = Participant(browser, server, "Hilde")
    bob = Participant(browser, server, "Bob")
    try:
        link = host.create_meeting()
        host.join()
        bob.join(link)
        host.client_call("removeAndBlock", bob.self_id)
        bob.page.get_by_text("The host removed you from the meeting").first.wait_for(
            timeout=10_000)
        # Back with the same browser (its identity is kept for the meeting): refused at the door.
        bob.page.reload()
        bob.join(wait_connected=False)
        bob.page.get_by_text("blocked you").first.wait_for(timeout=10_000)
        bob.page.screenshot(path=str(artifacts / "authority-blocked.png"))
        host.open_panel("participants")
        assert host.page.locator("#lobby-list li").count() == 0
    finally:
        host.close()
        bob.close()


def test_a_revoked_cohost_is_not_restored_by_a_replay(
    host_and_guest: tuple[TamperingProxy, Participant, Participant],
) -> None:
    """The host names Vera co-host and takes it back; the server then delivers the
    signed `cohost` action again. Before, Vera's page took the powers back."""
    proxy, host, vera = host_and_guest
    seen: list[dict[str, Any]] = []
    proxy.tamper = recording("host-action", seen)
    host.client_call("makeCohost", vera.self_id)
    vera.page.wait_for_function("() => window.confideClient.isCohost === true")
    host.client_call("revokeCohost", vera.self_id)
    vera.page.wait_for_function("() => window.confideClient.isCohost === false")
    [named] = [m for m in seen if json.loads(m["action"])["kind"] == "cohost"]
    proxy.tamper = on_ping(lambda: [named])
    vera.client_call("_send", {"type": "ping"})
    assert "already done once" in alert_text(vera)
    assert vera.evaluate("() => window.confideClient.isCohost") is False
