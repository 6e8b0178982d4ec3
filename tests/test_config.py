"""What an operator configures: `confide serve` flags to settings, the TURN servers
and credentials handed to browsers in `welcome`, and JSON log lines."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import re
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from confide.cli import (
    HideClientAddresses,
    JsonLogFormatter,
    build_parser,
    check_config,
    parse_settings,
)
from confide.config import Settings
from confide.config_file import NOT_KEYS
from confide.e2ee.link import derive_join_key, encode_base64url, join_key_public
from confide.rooms.meeting import join_challenge
from confide.signalling.turn import TURN_CREDENTIAL_LIFETIME, ice_servers, turn_credentials
from confide.web.app import create_app

# --- Flags -----------------------------------------------------------------------------------


def test_defaults_serve_plain_http_in_memory_without_turn() -> None:
    settings = parse_settings(["serve"])
    assert settings == Settings()
    assert not settings.tls
    assert settings.meeting_lifetime == 86400.0
    assert settings.expiry_interval == 60.0
    assert settings.store is None
    assert settings.turn_urls == () and settings.turn_secret is None
    assert settings.log_format == "text"


def test_every_new_flag_reaches_the_settings(tmp_path: Path) -> None:
    settings = parse_settings([
        "serve", "--tls-cert", "cert.pem", "--tls-key", "key.pem",
        "--meeting-lifetime", "3600", "--expiry-interval", "5",
        "--store", str(tmp_path / "meetings.db"),
        "--turn-url", "turn:turn.example.org:3478?transport=udp",
        "--turn-url", "turns:turn.example.org:5349?transport=tcp",
        "--turn-secret", "north-wind", "--log-format", "json",
        "--join-rate-per-address", "10/500", "--join-rate-per-meeting", "50/2000",
        "--create-rate-per-address", "1/50", "--sockets-per-address", "500",
        "--metrics-listen", "127.0.0.1:9100",
    ])
    assert settings.metrics_listen == ("127.0.0.1", 9100)
    assert (settings.create_rate_per_address, settings.create_burst_per_address) == (1.0, 50.0)
    assert settings.sockets_per_address == 500
    assert (settings.join_rate_per_address, settings.join_burst_per_address) == (10.0, 500.0)
    assert (settings.join_rate_per_meeting, settings.join_burst_per_meeting) == (50.0, 2000.0)
    assert settings.tls
    assert (settings.tls_cert, settings.tls_key) == (Path("cert.pem"), Path("key.pem"))
    assert (settings.meeting_lifetime, settings.expiry_interval) == (3600.0, 5.0)
    assert settings.store == tmp_path / "meetings.db"
    assert settings.turn_urls == (
        "turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349?transport=tcp")
    assert settings.turn_secret == "north-wind"
    assert settings.log_format == "json"


def test_self_signed_turns_tls_on() -> None:
    settings = parse_settings(["serve", "--self-signed"])
    assert settings.tls and settings.self_signed and settings.tls_cert is None


@pytest.mark.parametrize("flags", [
    ["--tls-cert", "cert.pem"],
    ["--tls-key", "key.pem"],
    ["--self-signed", "--tls-cert", "cert.pem", "--tls-key", "key.pem"],
    ["--turn-url", "turn:turn.example.org:3478"],
    ["--turn-secret", "north-wind"],
    ["--turn-url", "stun:stun.example.org:3478", "--turn-secret", "north-wind"],
    ["--turn-url", "https://turn.example.org/", "--turn-secret", "north-wind"],
    ["--meeting-lifetime", "0"],
    ["--expiry-interval", "-1"],
    ["--log-format", "xml"],
    ["--store", "/no/such/directory/meetings.db"],
    ["--host", "0.0.0.0"],
    ["--join-rate-per-address", "5"],
    ["--join-rate-per-meeting", "0/100"],
    ["--join-rate-per-meeting", "many/lots"],
    ["--create-rate-per-address", "0/10"],
    ["--sockets-per-address", "0"],
    ["--metrics-listen", "9100"],
    ["--metrics-listen", "127.0.0.1:http"],
])
def test_bad_flag_combinations_are_refused(flags: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(["serve", *flags])
    assert exit_info.value.code == 2


# --- TURN ------------------------------------------------------------------------------------


def test_turn_credential_is_coturns_rest_api_scheme() -> None:
    """username = expiry time ':confide'; password = base64(HMAC-SHA1(secret, username)).
    The pinned password came from `openssl dgst -sha1 -hmac north-wind -binary | base64`."""
    username, credential = turn_credentials("north-wind", now=1_700_000_000.7)
    assert TURN_CREDENTIAL_LIFETIME == 12 * 3600
    assert username == "1700043200:confide"
    expected = hmac.new(b"north-wind", username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(credential) == expected
    assert credential == "WqJwZQKDZ5l/SAp/uTajy6sOlck="


def test_no_ice_servers_unless_the_operator_configures_turn() -> None:
    assert ice_servers(Settings(), now=0.0) == []


async def welcome_from(settings: Settings) -> dict[str, Any]:
    """Creates a meeting on the app, joins it as a browser holding the link would,
    and returns the `welcome`."""
    link_secret = secrets.token_bytes(32)
    async with TestClient(TestServer(create_app(settings))) as client:
        meeting_id = (await (await client.post("/api/meetings")).json())["meeting_id"]
        join_key = derive_join_key(link_secret, meeting_id)
        registered = await client.put(f"/api/meetings/{meeting_id}/join-key", json={
            "join_key": encode_base64url(join_key_public(join_key))})
        assert registered.status == 204
        async with client.ws_connect("/ws") as socket:
            challenge = await socket.receive_json(timeout=5)
            assert challenge["type"] == "challenge"
            nonce = base64.urlsafe_b64decode(challenge["nonce"] + "==")
            await socket.send_json({
                "type": "hello", "version": 1, "meeting": meeting_id, "profile": "opaque",
                "proof": encode_base64url(join_key.sign(join_challenge(meeting_id, nonce))),
            })
            welcome: dict[str, Any] = await socket.receive_json(timeout=5)
    assert welcome["type"] == "welcome"
    return welcome


async def test_welcome_carries_no_ice_servers_by_default() -> None:
    welcome = await welcome_from(Settings(media_port=0))
    assert welcome["ice_servers"] == []


async def test_welcome_carries_exactly_the_configured_turn_servers() -> None:
    urls = ("turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349")
    before = int(time.time())
    welcome = await welcome_from(
        Settings(media_port=0, turn_urls=urls, turn_secret="north-wind"))
    after = int(time.time())
    [server] = welcome["ice_servers"]
    assert set(server) == {"urls", "username", "credential"}
    assert server["urls"] == list(urls)
    expiry, _, name = server["username"].partition(":")
    assert name == "confide"
    assert before + 12 * 3600 <= int(expiry) <= after + 12 * 3600
    expected = hmac.new(b"north-wind", server["username"].encode(), hashlib.sha1).digest()
    assert server["credential"] == base64.b64encode(expected).decode()


# --- JSON logs -------------------------------------------------------------------------------


def json_log_line(message: str, *args: object, exc: bool = False) -> dict[str, Any]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("confide.test-json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        if exc:
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception(message, *args)
        else:
            logger.warning(message, *args)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert text.count("\n") == 1, "one object per line"
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def test_a_json_log_line_has_time_level_logger_message_and_the_key_values() -> None:
    line = json_log_line("left meeting=%s participants=%d reason=%s", "abc234", 3, "timeout")
    assert line["level"] == "WARNING"
    assert line["logger"] == "confide.test-json"
    assert line["message"] == "left meeting=abc234 participants=3 reason=timeout"
    assert (line["meeting"], line["participants"], line["reason"]) == ("abc234", 3, "timeout")
    assert line["time"].endswith("+00:00")


def test_a_json_log_line_keeps_its_own_fields_and_escapes_the_message() -> None:
    line = json_log_line("level=DEBUG logger=x message=y count=2 %s", "two\nlines")
    assert (line["level"], line["logger"]) == ("WARNING", "confide.test-json")
    assert line["message"] == "level=DEBUG logger=x message=y count=2 two\nlines"
    assert line["count"] == 2


def test_an_exception_goes_into_the_same_json_line() -> None:
    line = json_log_line("failed to handle a signalling message", exc=True)
    assert "ValueError: boom" in line["exception"]


def test_aiohttps_error_lines_name_no_client_address() -> None:
    record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1,
                               "Error handling request from %s", ("198.51.100.7",), None)
    assert HideClientAddresses().filter(record)
    assert "198.51.100.7" not in record.getMessage()


# --- The config file -----------------------------------------------------------------------

DOCS_CONFIG = Path(__file__).parents[1] / "docs" / "config.md"


def example_config() -> str:
    """The example file in docs/config.md, as an operator would copy it."""
    text = DOCS_CONFIG.read_text(encoding="utf-8")
    return text.split("```toml\n", 1)[1].split("```", 1)[0]


def test_the_documented_example_has_every_key_and_checks_out(tmp_path: Path) -> None:
    _, serve = build_parser()
    flags = {action.dest for action in serve._actions
             if action.option_strings and action.dest not in NOT_KEYS}
    example = example_config()
    written = set(re.findall(r"^#? ?([a-z_]+) =", example, re.MULTILINE))
    assert written == flags, f"missing {flags - written}, unknown {written - flags}"
    path = tmp_path / "confide.toml"
    path.write_text(example)
    assert check_config(path) == 0


def test_the_example_file_reaches_the_settings_and_flags_win(tmp_path: Path) -> None:
    path = tmp_path / "confide.toml"
    path.write_text(example_config())
    secret = tmp_path / "turn-secret"
    secret.write_text("north-wind\n")
    settings = parse_settings(["serve", "--config", str(path), "--port", "8443",
                               "--store", str(tmp_path / "meetings.db"),
                               "--turn-secret-file", str(secret)])
    assert settings.port == 8443  # the flag, over the file's 443
    assert settings.media_port == 443 and settings.public_ip == "203.0.113.7"
    assert settings.metrics_listen == ("127.0.0.1", 9100)
    assert (settings.join_rate_per_address, settings.join_burst_per_address) == (2.0, 60.0)
    assert settings.turn_urls == ("turn:turn.example.org:3478?transport=udp",
                                  "turns:turn.example.org:5349?transport=tcp")
    assert settings.turn_secret == "north-wind"
    assert settings.tls_key == Path("/etc/confide/key.pem")
    assert settings.log_format == "json" and settings.media_grace == 30.0


@pytest.mark.parametrize(("text", "message"), [
    ('port = 80\nmedia_gracee = 30\n', "confide.toml:2: unknown key 'media_gracee'"),
    ('port = 80\n\nmedia-grace = -1\n', "confide.toml:3: media-grace: must be a positive"),
    ('port = "eighty"\n', "confide.toml:1: port: invalid literal"),
    ('port = 80.5\n', "confide.toml:1: port: must be a whole number"),
    ('log_addresses = "yes"\n', "confide.toml:1: log_addresses: must be true or false"),
    ('log_format = "xml"\n', "confide.toml:1: log_format: must be one of text, json"),
    ('port = 80\nport-x = [\n', "confide.toml: not TOML"),
    ('port = 80\n"port" = 81\n', "not TOML"),
    ('port = 80\nmedia_port = 81\nmedia-port = 82\n', "confide.toml:3: 'media-port' is set twice"),
])
def test_config_check_names_the_bad_key_and_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str,
) -> None:
    path = tmp_path / "confide.toml"
    path.write_text(text)
    assert check_config(path) == 1
    assert message in capsys.readouterr().err.replace(str(tmp_path) + "/", "")
    with pytest.raises(SystemExit):
        parse_settings(["serve", "--config", str(path)])


def test_the_turn_secret_comes_from_a_file_or_the_environment_and_one_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = ["--turn-url", "turn:turn.example.org:3478"]
    monkeypatch.setenv("CONFIDE_TURN_SECRET", "from-the-environment")
    assert parse_settings(["serve", *url]).turn_secret == "from-the-environment"
    secret = tmp_path / "turn-secret"
    secret.write_text("from-a-file\n")
    with pytest.raises(SystemExit):  # two places: which one is meant?
        parse_settings(["serve", *url, "--turn-secret-file", str(secret)])
    monkeypatch.delenv("CONFIDE_TURN_SECRET")
    assert parse_settings(["serve", *url, "--turn-secret-file", str(secret)]).turn_secret == (
        "from-a-file")
    secret.write_text("")
    with pytest.raises(SystemExit):
        parse_settings(["serve", *url, "--turn-secret-file", str(secret)])
