"""The host is in charge, and nobody uninvited gets in: lobby, lock, removal,
forged host actions, mutes the SFU enforces, floods, chat off, ending.

Each test plays the attack as an attacker would and checks that the meeting
goes on undisturbed, through live video on the other pages.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.sync_api import Browser

from .participant import Participant, Server, meeting_id_of
from .tampering_proxy import TamperingProxy


def host_and_guest(browser: Browser, server: Server) -> tuple[Participant, Participant, str]:
    host = Participant(browser, server, "Hilde")
    link = host.create_meeting()
    host.join()
    guest = Participant(browser, server, "Gustav")
    guest.join(link)
    assert guest.self_id in host.wait_for_playing({guest.self_id})
    return host, guest, link


def knock(person: Participant, link: str) -> None:
    person.join(link, wait_connected=False)
    person.wait_for_status("lobby")


def still_live(host: Participant, guest: Participant) -> None:
    assert guest.self_id in host.wait_for_playing({guest.self_id})
    assert host.self_id in guest.wait_for_playing({host.self_id})


def test_the_lobby_shows_names_and_the_host_admits_or_denies(
    browser: Browser, server: Server, artifacts: Path
) -> None:
    host, guest, link = host_and_guest(browser, server)
    visitor = Participant(browser, server, "Valentina")
    stranger = Participant(browser, server, "Sten")
    try:
        knock(visitor, link)
        knock(stranger, link)
        assert "number 2" in stranger.page.locator("#lobby-position").inner_text()
        host.open_panel("participants")
        waiting = host.page.locator("#lobby-list li")
        waiting.nth(1).wait_for()
        assert [t.split("\n")[0] for t in waiting.all_inner_texts()] == ["Valentina", "Sten"]
        visitor.page.screenshot(path=str(artifacts / "lobby-waiting.png"))
        host.page.screenshot(path=str(artifacts / "lobby-host.png"))
        host.page.locator("#lobby-list li", has_text="Sten").locator(".deny").click()
        stranger.wait_for_status("failed")
        assert "did not let you in" in stranger.status_text
        host.page.locator("#lobby-list li", has_text="Valentina").locator(".admit").click()
        visitor.wait_for_status("connected")
        assert visitor.self_id in host.wait_for_playing({visitor.self_id})
        assert stranger.self_id not in host.tile_ids()
        still_live(host, guest)
    finally:
        for person in (host, guest, visitor, stranger):
            person.close()


def test_without_a_host_people_wait_until_the_host_arrives(
    browser: Browser, server: Server
) -> None:
    host = Participant(browser, server, "Hilde")
    link = host.create_meeting()
    early = Participant(browser, server, "Early Ed")
    try:
        knock(early, link)
        assert "not here yet" in early.page.locator("#lobby-position").inner_text()
        # The host arrives (the host key is in this browser), sees the knock, admits.
        host.open(link)
        host.join()
        host.admit("Early Ed")
        early.wait_for_status("connected")
        assert early.self_id in host.wait_for_playing({early.self_id})
    finally:
        host.close()
        early.close()


def test_a_locked_meeting_refuses_even_people_with_the_link(
    browser: Browser, server: Server
) -> None:
    host, guest, link = host_and_guest(browser, server)
    late = Participant(browser, server, "Lars")
    try:
        host.open_panel("participants")
        host.page.locator("#lock-meeting").check()
        guest.page.locator("#locked-indicator").wait_for()
        late.join(link, wait_connected=False)
        late.wait_for_status("failed")
        assert "locked" in late.status_text
        assert host.page.locator("#lobby-list li").count() == 0, "not even into the lobby"
        still_live(host, guest)
    finally:
        for person in (host, guest, late):
            person.close()


def test_a_removed_person_is_out_and_coming_back_means_the_lobby(
    browser: Browser, server: Server
) -> None:
    host, guest, link = host_and_guest(browser, server)
    troll = Participant(browser, server, "Troll")
    try:
        troll.join(link)
        troll_id = troll.self_id
        host.open_panel("participants")
        entry = host.page.locator(f"#participant-list li[data-participant-id='{troll_id}']")
        entry.locator(".host-remove").click()
        troll.wait_for_status("failed")
        assert "removed you" in troll.status_text
        for person in (host, guest):
            person.page.wait_for_selector(f".tile[data-participant-id='{troll_id}']",
                                          state="detached", timeout=5_000)
        # Back with the same link: the lobby, where the host decides again.
        troll.page.reload()
        knock(troll, link)
        host.page.locator("#lobby-list li", has_text="Troll").wait_for()
        assert troll_id not in host.tile_ids()
        still_live(host, guest)
    finally:
        for person in (host, guest, troll):
            person.close()


def forged_end(meeting_id: str) -> dict[str, Any]:
    """A host action 'end' signed with a key that is not the host's."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    text = json.dumps({"v": 1, "meeting": meeting_id, "kind": "end", "target": None, "params": {},
                       "time": int(time.time() * 1000), "nonce": "forged-nonce-1",
                       "signer": base64.urlsafe_b64encode(public).decode().rstrip("=")})
    signature = key.sign(b"confide/1 host-action|" + text.encode())
    return {"action": text, "signature": base64.urlsafe_b64encode(signature).decode().rstrip("=")}


def test_a_forged_host_action_is_refused_by_the_server_and_by_the_clients(
    browser: Browser, server: Server
) -> None:
    host, guest, link = host_and_guest(browser, server)
    meeting_id = meeting_id_of(link)
    errors: list[str] = []
    guest.page.on("console", lambda message: errors.append(message.text))
    try:
        # A participant signs "end" with their own key and sends it to the server.
        reply = guest.page.evaluate("""async (forged) => {
          const client = window.confideClient;
          const answer = new Promise((resolve) => { client.onerror = (e) => resolve(e.code); });
          client._send({ type: 'host-action', ...forged });
          return answer;
        }""", forged_end(meeting_id))
        assert reply == "not-host"
        still_live(host, guest)
    finally:
        for person in (host, guest):
            person.close()

    # A server that forges a host action to a client: the client checks and ignores it.
    forged_once: list[bool] = []

    def forge_end(message: dict[str, Any]) -> dict[str, Any]:
        if message["type"] == "pong" and not forged_once:
            forged_once.append(True)
            return {"type": "host-action", "from": "server", **forged_end(meeting_id_of(link2))}
        return message

    host2 = Participant(browser, server, "Hilde")
    link2 = host2.create_meeting()
    host2.join()
    proxy = TamperingProxy(server.base_url, forge_end)
    proxy.start()
    victim = Participant(browser, Server(proxy.base_url, server.media_port, server.log_path,
                                         metrics_url=server.metrics_url),
                         "Vera")
    victim.expects_alerts = True
    try:
        victim.join(link2.replace(server.base_url, proxy.base_url))
        victim.page.evaluate("() => window.confideClient._send({type: 'ping'})")
        alert = victim.page.locator("#security-alert")
        alert.wait_for(state="visible", timeout=10_000)
        assert "did not sign" in alert.inner_text()
        assert victim.page.locator("#status").get_attribute("data-status") == "connected"
        still_live(host2, victim)
    finally:
        host2.close()
        victim.close()
        proxy.stop()


AUDIO_PACKETS_FROM = """async (ssrcCount) => {
  const stats = await window.confideClient.peerConnection.getStats();
  let packets = 0;
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') packets += s.packetsReceived;
  });
  return packets;
}"""


def test_a_host_mute_is_enforced_by_the_sfu_even_against_a_modified_client(
    browser: Browser, server: Server
) -> None:
    host, guest, _ = host_and_guest(browser, server)
    try:
        host.wait_for_audio_from(1)
        host.open_panel("participants")
        host.page.locator(
            f"#participant-list li[data-participant-id='{guest.self_id}'] .host-mute").click()
        guest.page.get_by_text("muted you").wait_for(timeout=10_000)
        # The honest client does not pretend: unmuting is refused, with the reason.
        guest.page.locator("#toggle-mic").click()
        guest.page.get_by_text("can allow you to unmute").wait_for(timeout=5_000)
        assert guest.page.locator("#toggle-mic").get_attribute("data-state") == "off"
        # A modified client turns its microphone straight back on.
        guest.page.evaluate("""() => { const c = window.confideClient;
          c._audioTrack.enabled = true; c._microphoneEnabled = true; c._announceMedia(); }""")
        time.sleep(1.5)
        before = host.page.evaluate(AUDIO_PACKETS_FROM, 1)
        time.sleep(2)
        after = host.page.evaluate(AUDIO_PACKETS_FROM, 1)
        assert after - before < 5, "the SFU still forwards the muted person's audio"
        assert server.metrics()['confide_media_events_total{event="dropped_blocked_by_host"}'] > 0
        # Once the host allows it, sound flows again.
        host.page.locator(
            f"#participant-list li[data-participant-id='{guest.self_id}'] .host-allow").click()
        time.sleep(2)
        assert host.page.evaluate(AUDIO_PACKETS_FROM, 1) - after > 20
        still_live(host, guest)
    finally:
        host.close()
        guest.close()


async def flood(base_url: str, meeting_id: str) -> dict[str, Any]:
    """An attacker at its own address (127.0.0.2): many join attempts, then a
    message flood."""
    outcome: dict[str, Any] = {"refused": [], "closed": None}
    url = base_url.replace("http", "ws", 1).replace("localhost", "127.0.0.1") + "/ws"
    proof = base64.urlsafe_b64encode(bytes(64)).decode().rstrip("=")
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(150):
            async with session.ws_connect(url) as ws:
                await ws.receive_json(timeout=5)
                await ws.send_json({"type": "hello", "version": 1, "meeting": meeting_id,
                                    "proof": proof, "profile": "x"})
                outcome["refused"].append((await ws.receive_json(timeout=5))["code"])
                if outcome["refused"][-1] == "rate-limited":
                    break
        async with session.ws_connect(url) as ws:
            await ws.receive_json(timeout=5)
            for _ in range(2000):
                if ws.closed:
                    break
                await ws.send_json({"type": "ping"})
            while not ws.closed:
                message = await ws.receive(timeout=5)
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
            outcome["closed"] = ws.close_code
    return outcome


def test_floods_of_joins_and_messages_are_cut_off_and_the_meeting_goes_on(
    browser: Browser, server: Server
) -> None:
    host, guest, link = host_and_guest(browser, server)
    try:
        with ThreadPoolExecutor(1) as attacker:
            attack = flood(server.base_url, meeting_id_of(link))
            outcome = attacker.submit(asyncio.run, attack).result()
        assert outcome["refused"][0] == "bad-token"
        assert "rate-limited" in outcome["refused"], outcome["refused"]
        assert outcome["closed"] == 4429
        still_live(host, guest)
    finally:
        host.close()
        guest.close()


def test_the_host_can_turn_chat_off_and_end_the_meeting(browser: Browser, server: Server) -> None:
    host, guest, link = host_and_guest(browser, server)
    try:
        host.open_panel("participants")
        host.page.locator("#allow-chat").uncheck()
        guest.page.wait_for_timeout(500)
        guest.send_chat("can anyone hear me")
        guest.page.get_by_text("turned chat off").wait_for(timeout=10_000)
        host.page.wait_for_timeout(1000)
        assert not any("can anyone hear me" in t for t in host.chat_texts())

        host.page.on("dialog", lambda dialog: dialog.accept())
        host.open_panel("participants")
        host.page.locator("#end-meeting").click()
        guest.page.get_by_text("ended the meeting").first.wait_for(timeout=10_000)
        assert guest.page.locator("#left").is_visible()
        late = Participant(browser, server, "Late")
        late.join(link, wait_connected=False)
        late.wait_for_status("failed")
        late.close()
    finally:
        host.close()
        guest.close()


def test_remove_and_change_link_shuts_out_the_old_link(browser: Browser, server: Server) -> None:
    host, guest, old_link = host_and_guest(browser, server)
    troll = Participant(browser, server, "Troll")
    newcomer = Participant(browser, server, "Nadia")
    try:
        troll.join(old_link)
        troll_id = troll.self_id
        host.open_panel("participants")
        entry = host.page.locator(f"#participant-list li[data-participant-id='{troll_id}']")
        # Everything the host's page sends from now on, to check whom the new link went to.
        host.evaluate("""() => {
          const client = window.confideClient;
          const send = client._send.bind(client);
          window.linkSent = [];
          client._send = (message) => {
            if (message.type === 'relay' && message.body.includes('link-secret')) {
              window.linkSent.push(message.to);
            }
            send(message);
          };
        }""")
        entry.locator(".host-remove-rekey").click()
        troll.wait_for_status("failed")
        # Those who stay get the new link, pairwise; the address bar shows it.
        guest.page.wait_for_function(f"() => location.href !== {json.dumps(old_link)}",
                                     timeout=10_000)
        new_link = guest.page.url
        assert host.page.url == new_link
        # Sealed for those who stay, never for the person removed.
        assert host.evaluate("() => window.linkSent") == [guest.self_id]
        assert new_link.split("#")[1].split(".")[0] != old_link.split("#")[1].split(".")[0]
        # The removed person comes back with the old link: it no longer works.
        troll.page.goto(old_link)
        troll.page.reload()
        troll.join(wait_connected=False)
        troll.wait_for_status("failed")
        assert "not valid" in troll.status_text
        # Someone with the new link gets in, and everyone verifies everyone.
        newcomer.join(new_link)
        people = (host, guest, newcomer)
        for person in people:
            person.page.locator("#encryption[data-state='e2ee']").wait_for(timeout=15_000)
            assert person.page.locator("#security-alert").is_hidden()
        codes = {p.page.locator("#security-code").inner_text() for p in people}
        assert len(codes) == 1
        still_live(host, guest)
        assert newcomer.self_id in host.wait_for_playing({newcomer.self_id})
    finally:
        for person in (host, guest, troll, newcomer):
            person.close()


def test_a_cohost_can_admit_and_loses_the_power_when_revoked(
    browser: Browser, server: Server
) -> None:
    host, guest, link = host_and_guest(browser, server)
    visitor = Participant(browser, server, "Viv")
    try:
        host.open_panel("participants")
        entry = host.page.locator(f"#participant-list li[data-participant-id='{guest.self_id}']")
        entry.locator(".host-cohost").click()
        guest.open_panel("participants")
        guest.page.locator("#host-controls").wait_for(timeout=10_000)
        knock(visitor, link)
        guest.admit("Viv")
        visitor.wait_for_status("connected")
        entry.locator(".host-cohost").wait_for()
        host.client_call("revokeCohost", guest.self_id)
        guest.page.locator("#host-controls").wait_for(state="hidden", timeout=10_000)
        # A revoked co-host's signature no longer counts at the server.
        reply = guest.page.evaluate("""async () => {
          const client = window.confideClient;
          client.isCohost = true;  // a modified client that ignores the revocation
          const answer = new Promise((resolve) => { client.onerror = (e) => resolve(e.code); });
          await client.hostAct('lock');
          return answer;
        }""")
        assert reply == "not-host"
        still_live(host, guest)
    finally:
        for person in (host, guest, visitor):
            person.close()


def test_a_cohost_who_reloads_is_a_cohost_again(browser: Browser, server: Server) -> None:
    """The role goes with the identity key the host named, which the browser keeps:
    before, a co-host whose connection dropped came back as an ordinary guest."""
    host, guest, link = host_and_guest(browser, server)
    visitor = Participant(browser, server, "Viv")
    try:
        host.client_call("makeCohost", guest.self_id)
        guest.page.wait_for_function("() => window.confideClient.isCohost === true")
        guest.page.reload()
        guest.join(wait_connected=False)
        guest.wait_for_status("connected")
        guest.page.wait_for_function("() => window.confideClient.isCohost === true")
        guest.open_panel("participants")
        guest.page.locator("#host-controls").wait_for(timeout=10_000)
        # The server counts her as a co-host again: knocks reach her, and she admits.
        knock(visitor, link)
        guest.admit("Viv")
        visitor.wait_for_status("connected")
        guest.client_call("mute", host.self_id)
        host.page.get_by_text("muted you").first.wait_for(timeout=10_000)
    finally:
        for person in (host, guest, visitor):
            person.close()


def test_a_host_link_gives_the_host_role_on_another_device(
    browser: Browser, server: Server
) -> None:
    host = Participant(browser, server, "Hilde")
    link = host.create_meeting()
    host.join()
    host_link = host.page.evaluate("() => window.confideClient.hostLink()")
    assert host_link.startswith(link.split("#")[0]) and host_link.count(".") > link.count(".")
    phone = Participant(browser, server, "Hilde on the phone")  # another browser profile
    try:
        phone.join(host_link)  # no lobby: the host key proves the host role
        assert phone.page.evaluate("() => window.confideClient.isHost")
        phone.open_panel("participants")
        phone.page.locator("#host-controls").wait_for()
        assert host.self_id in phone.wait_for_playing({host.self_id})
    finally:
        host.close()
        phone.close()


def test_the_people_button_shows_someone_is_waiting(browser: Browser, server: Server) -> None:
    host = Participant(browser, server, "Hilde")
    link = host.create_meeting()
    host.join()
    visitor = Participant(browser, server, "Vic")
    try:
        knock(visitor, link)
        host.page.wait_for_selector("#toggle-participants.knocking", timeout=10_000)
        title = host.page.locator("#toggle-participants").get_attribute("title") or ""
        assert "1 waiting" in title
        host.admit("Vic")
        host.page.wait_for_selector("#toggle-participants:not(.knocking)", timeout=10_000)
    finally:
        host.close()
        visitor.close()
