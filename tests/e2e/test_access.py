"""Who gets in, and meetings kept apart."""

from __future__ import annotations

import base64
import os

from playwright.sync_api import Browser

from .participant import Participant, Server


def test_meeting_id_without_link_secret_is_refused(browser: Browser, server: Server) -> None:
    host = Participant(browser, server, "Host")
    link = host.create_meeting()
    host.join()
    bare = link.split("#", 1)[0]
    wrong_secret = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")

    stranger = Participant(browser, server, "Stranger")
    stranger.open(bare)
    stranger.page.get_by_text("link is incomplete").wait_for(timeout=10_000)
    assert not stranger.page.locator("#join").is_enabled() or not stranger.page.locator(
        "#join").is_visible()

    # Someone who has the meeting id and the host hash, but not the link secret.
    host_hash = link.split("#", 1)[1].split(".")[1]
    guesser = Participant(browser, server, "Guesser")
    guesser.join(f"{bare}#{wrong_secret}.{host_hash}", wait_connected=False)
    guesser.wait_for_status("failed")
    assert "not valid" in guesser.status_text
    assert host.tile_ids() == set(), "the refused person must not appear in the meeting"
    for person in (host, stranger, guesser):
        person.close()


def test_two_meetings_on_one_server_stay_apart(browser: Browser, server: Server) -> None:
    ann = Participant(browser, server, "Ann")
    first_link = ann.create_meeting()
    ann.join()
    ben = Participant(browser, server, "Ben")
    ben.join(first_link)
    cat = Participant(browser, server, "Cat")
    cat.create_meeting()
    cat.join()

    assert ben.self_id in ann.wait_for_playing({ben.self_id})
    ann.send_chat("only for the first meeting")
    ben.page.locator("#toggle-chat").click()
    ben.page.wait_for_selector(".chat-message:has-text('only for the first meeting')")
    cat.page.wait_for_timeout(1500)
    assert cat.tile_ids() == set()
    assert cat.chat_texts() == []
    assert ann.tile_ids() == {ben.self_id}
    for person in (ann, ben, cat):
        person.close()


def test_server_log_holds_no_client_address_or_name(browser: Browser, server: Server) -> None:
    person = Participant(browser, server, "Zebulon Quartermaine")
    person.create_meeting()
    person.join()
    person.send_chat("the quarterly figures are in the blue folder")
    person.close()
    log = server.log_path.read_text()
    assert '"GET /static/app.js' in log, "the access log is being written"
    assert "127.0.0.1" not in log.replace("127.0.0.1:", "")  # the startup line names the media port
    assert "Zebulon" not in log
    assert "blue folder" not in log
