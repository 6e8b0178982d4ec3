"""Client messages of docs/protocol.md: every valid one parses, everything else is a
RemoteProtocolError with the code the client is sent."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest

from confide.signalling.messages import (
    MAX_CHAT_CHARS,
    MAX_MESSAGE_BYTES,
    MAX_MIDS,
    MAX_PROFILE_CHARS,
    MAX_SDP_CHARS,
    Chat,
    Hello,
    Leave,
    Media,
    MidRole,
    Offer,
    Ping,
    RemoteProtocolError,
    View,
    parse_client_message,
)

MEETING_ID = "abcdefghijklmnopqrstuvwxyz"
PROOF = bytes(range(64))
PROOF_TEXT = base64.urlsafe_b64encode(PROOF).decode("ascii").rstrip("=")
SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def hello(**changes: Any) -> dict[str, Any]:
    message = {
        "type": "hello",
        "version": 1,
        "meeting": MEETING_ID,
        "proof": PROOF_TEXT,
        "profile": "opaque",
    }
    message.update(changes)
    return message


def offer(**changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "offer",
        "sdp": SDP,
        "mids": {"0": {"send": "audio"}, "1": {"recv": "p:camera"}, "2": {"recv": None}},
    }
    message.update(changes)
    return message


def media(**changes: Any) -> dict[str, Any]:
    message = {"type": "media", "audio": True, "camera": False, "screen": True}
    message.update(changes)
    return message


def chat(**changes: Any) -> dict[str, Any]:
    message = {"type": "chat", "body": "opaque ciphertext"}
    message.update(changes)
    return message


VALID_MESSAGES = [
    hello(),
    offer(),
    media(),
    chat(),
    {"type": "ping"},
    {"type": "leave"},
]


def parse(message: Any) -> Any:
    return parse_client_message(json.dumps(message))


def refused(text: str) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_client_message(text)
    return caught.value


def refused_message(message: Any) -> RemoteProtocolError:
    return refused(json.dumps(message))


# --- Valid messages --------------------------------------------------------------------------


def test_hello_parses_with_the_proof_decoded() -> None:
    assert parse(hello()) == Hello(version=1, meeting=MEETING_ID, proof=PROOF, profile="opaque")


def test_hello_proof_may_carry_base64_padding() -> None:
    assert parse(hello(proof=PROOF_TEXT + "==")).proof == PROOF


def test_offer_parses_each_mid_role() -> None:
    assert parse(offer()) == Offer(
        sdp=SDP,
        mids={"0": MidRole(send="audio"), "1": MidRole(recv="p:camera"), "2": MidRole(recv=None)},
    )


def test_offer_accepts_every_send_kind() -> None:
    mids = {"0": {"send": "audio"}, "1": {"send": "camera"}, "2": {"send": "screen"}}
    assert [role.send for role in parse(offer(mids=mids)).mids.values()] == [
        "audio",
        "camera",
        "screen",
    ]


def test_offer_accepts_no_mids() -> None:
    assert parse(offer(mids={})).mids == {}


def test_media_parses() -> None:
    assert parse(media()) == Media(audio=True, camera=False, screen=True)


def test_chat_parses_with_its_body_unchanged() -> None:
    body = "\u00e9\U0001f600 <b>not html</b> \x00"
    assert parse(chat(body=body)) == Chat(body=body)


def test_ping_parses() -> None:
    assert parse({"type": "ping"}) == Ping()


def test_leave_parses() -> None:
    assert parse({"type": "leave"}) == Leave()


def test_unknown_extra_fields_are_ignored() -> None:
    assert parse({"type": "ping", "extra": [1, 2]}) == Ping()


def test_profile_and_chat_at_their_limits_parse() -> None:
    assert parse(hello(profile="x" * MAX_PROFILE_CHARS)).profile == "x" * MAX_PROFILE_CHARS
    assert parse(chat(body="x" * MAX_CHAT_CHARS)).body == "x" * MAX_CHAT_CHARS


# --- Not a message at all --------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "{", "{'type': 'ping'}", "ping", '{"type": "ping"} x'])
def test_invalid_json_is_bad_message(text: str) -> None:
    error = refused(text)
    assert error.code == "bad-message"
    assert not error.fatal


@pytest.mark.parametrize("text", ["[]", '"ping"', "1", "null", "true", '[{"type": "ping"}]'])
def test_json_that_is_not_an_object_is_bad_message(text: str) -> None:
    assert refused(text).code == "bad-message"


def test_deeply_nested_json_is_bad_message() -> None:
    assert refused("[" * 100_000 + "]" * 100_000).code == "bad-message"


def test_integer_longer_than_python_int_limit_is_bad_message() -> None:
    # Python refuses to convert more than 4300 digits with a plain ValueError.
    assert refused('{"type": "ping", "n": ' + "1" * 5000 + "}").code == "bad-message"


def test_message_over_the_size_limit_is_bad_message() -> None:
    text = json.dumps(chat(body="x" * MAX_MESSAGE_BYTES))
    assert refused(text).code == "bad-message"


@pytest.mark.parametrize("kind", ["welcome", "answer", "HELLO", "", None, 1, ["ping"]])
def test_unknown_type_is_bad_message(kind: Any) -> None:
    assert refused_message({"type": kind}).code == "bad-message"


def test_missing_type_is_bad_message() -> None:
    assert refused_message({"body": "x"}).code == "bad-message"


# --- hello -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["version", "meeting", "proof", "profile"])
def test_hello_without_a_field_is_bad_message(name: str) -> None:
    message = hello()
    del message[name]
    assert refused_message(message).code == "bad-message"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("version", "1"),
        ("version", 1.0),
        ("version", None),
        ("meeting", 5),
        ("meeting", None),
        ("proof", list(PROOF)),
        ("profile", None),
        ("profile", {"name": "x"}),
    ],
)
def test_hello_with_a_mistyped_field_is_bad_message(name: str, value: Any) -> None:
    assert refused_message(hello(**{name: value})).code == "bad-message"


def test_hello_version_true_is_not_version_one() -> None:
    error = refused_message(hello(version=True))
    assert error.code == "bad-message"
    assert "version" in error.message


@pytest.mark.parametrize("version", [0, 2, -1, 2**70])
def test_hello_with_another_version_is_fatal_unsupported_version(version: int) -> None:
    error = refused_message(hello(version=version))
    assert error.code == "unsupported-version"
    assert error.fatal


def test_hello_profile_over_its_limit_is_bad_message() -> None:
    error = refused_message(hello(profile="x" * (MAX_PROFILE_CHARS + 1)))
    assert error.code == "bad-message"
    assert "profile" in error.message


def test_hello_meeting_over_64_characters_is_bad_message() -> None:
    assert refused_message(hello(meeting="a" * 65)).code == "bad-message"


@pytest.mark.parametrize("proof", ["AAAAA", "\u00e9" * 86, "A" * 85 + "!"])
def test_hello_proof_that_is_not_base64url_is_bad_message(proof: str) -> None:
    error = refused_message(hello(proof=proof))
    assert error.code == "bad-message"
    assert "proof" in error.message


@pytest.mark.parametrize("length", [0, 16, 32, 63, 65])
def test_hello_proof_of_other_than_64_bytes_is_bad_message(length: int) -> None:
    proof = base64.urlsafe_b64encode(bytes(length)).decode("ascii").rstrip("=")
    error = refused_message(hello(proof=proof))
    assert error.code == "bad-message"
    assert "64 bytes" in error.message


def test_hello_proof_over_128_characters_is_bad_message() -> None:
    assert refused_message(hello(proof="A" * 132)).code == "bad-message"


# --- offer -----------------------------------------------------------------------------------


def test_offer_without_sdp_is_bad_message() -> None:
    message = offer()
    del message["sdp"]
    assert refused_message(message).code == "bad-message"


def test_offer_with_sdp_not_a_string_is_bad_message() -> None:
    assert refused_message(offer(sdp=["v=0"])).code == "bad-message"


def test_offer_sdp_over_its_limit_is_bad_message() -> None:
    error = refused_message(offer(sdp="x" * (MAX_SDP_CHARS + 1)))
    assert error.code == "bad-message"
    assert "sdp" in error.message


def test_offer_without_mids_is_bad_message() -> None:
    message = offer()
    del message["mids"]
    assert refused_message(message).code == "bad-message"


@pytest.mark.parametrize(
    "mids",
    [
        None,
        [],
        [{"send": "audio"}],
        "0",
        {"0": "audio"},
        {"0": None},
        {"0": {}},
        {"0": {"send": "audio", "recv": None}},
        {"0": {"other": "audio"}},
        {"0": {"send": "video"}},
        {"0": {"send": None}},
        {"0": {"send": ["audio"]}},
        {"0": {"recv": 5}},
        {"0": {"recv": ["p:camera"]}},
        {"0": {"recv": "x" * 65}},
        {"m" * 33: {"recv": None}},
    ],
)
def test_offer_with_bad_mids_is_bad_message(mids: Any) -> None:
    assert refused_message(offer(mids=mids)).code == "bad-message"


def test_offer_with_more_than_the_maximum_of_mids_is_bad_message() -> None:
    mids = {str(i): {"recv": None} for i in range(MAX_MIDS + 1)}
    assert refused_message(offer(mids=mids)).code == "bad-message"


def test_offer_with_the_maximum_of_mids_parses() -> None:
    mids = {str(i): {"recv": None} for i in range(MAX_MIDS)}
    assert len(parse(offer(mids=mids)).mids) == MAX_MIDS


# --- media, chat -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["audio", "camera", "screen"])
def test_media_without_a_flag_is_bad_message(name: str) -> None:
    message = media()
    del message[name]
    assert refused_message(message).code == "bad-message"


@pytest.mark.parametrize("value", [1, 0, "true", None])
def test_media_flag_that_is_not_a_boolean_is_bad_message(value: Any) -> None:
    assert refused_message(media(camera=value)).code == "bad-message"


def test_chat_without_body_is_bad_message() -> None:
    assert refused_message({"type": "chat"}).code == "bad-message"


def test_chat_body_not_a_string_is_bad_message() -> None:
    assert refused_message(chat(body={"ciphertext": "x"})).code == "bad-message"


def test_chat_body_over_its_limit_is_bad_message() -> None:
    error = refused_message(chat(body="x" * (MAX_CHAT_CHARS + 1)))
    assert error.code == "bad-message"
    assert "body" in error.message


# --- Fuzz ------------------------------------------------------------------------------------

ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2**64,
    1.5,
    "",
    "x" * 70,
    [],
    {},
    {"send": "audio"},
    {"recv": None},
    [1, [2, {}]],
    "\ud800",
]


def mutate_structure(rng: random.Random, message: dict[str, Any]) -> dict[str, Any]:
    """Change, remove or add one field, or mangle one mid role."""
    message = json.loads(json.dumps(message))
    names = list(message)
    choice = rng.randrange(4)
    if choice == 0:
        message[rng.choice(names)] = rng.choice(ODD_VALUES)
    elif choice == 1:
        del message[rng.choice(names)]
    elif choice == 2:
        message[rng.choice(["type", "mids", "proof", "version", "zzz"])] = rng.choice(ODD_VALUES)
    elif isinstance(message.get("mids"), dict) and message["mids"]:
        mid = rng.choice(list(message["mids"]))
        message["mids"][mid] = {rng.choice(["send", "recv", "x"]): rng.choice(ODD_VALUES)}
    return message


def mutate_text(rng: random.Random, text: str) -> str:
    """Truncate, or replace, insert or delete a few characters."""
    choice = rng.randrange(4)
    if choice == 0:
        return text[: rng.randrange(len(text) + 1)]
    chars = list(text)
    alphabet = '{}[]":,\\ 0123456789tfnuelsr-.eE\u00e9\x00\ud800'
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(len(chars) + 1)
        if choice == 1 and position < len(chars):
            chars[position] = rng.choice(alphabet)
        elif choice == 2:
            chars.insert(position, rng.choice(alphabet))
        elif position < len(chars):
            del chars[position]
    return "".join(chars)


def random_text(rng: random.Random) -> str:
    length = rng.randrange(64)
    return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x110000)]))
                   for _ in range(length))


def fuzz_inputs(rng: random.Random) -> list[str]:
    inputs: list[str] = []
    for _ in range(1500):
        message = mutate_structure(rng, rng.choice(VALID_MESSAGES))
        inputs.append(json.dumps(message))
    for _ in range(1500):
        inputs.append(mutate_text(rng, json.dumps(rng.choice(VALID_MESSAGES))))
    for _ in range(1000):
        inputs.append(random_text(rng))
    return inputs


def test_fuzzed_input_either_parses_or_raises_remote_protocol_error() -> None:
    rng = random.Random(7)
    parsed = refused_count = 0
    for text in fuzz_inputs(rng):
        try:
            parse_client_message(text)
        except RemoteProtocolError as error:
            assert error.code in ("bad-message", "unsupported-version"), text
            refused_count += 1
        else:
            parsed += 1
    # The fuzz exercises both paths, not only the JSON decoder.
    assert parsed > 100
    assert refused_count > 1000


def test_view_parses_tile_heights() -> None:
    message = parse_client_message(json.dumps(
        {"type": "view", "tiles": {"p1:camera": 180, "p2:screen": 0}}))
    assert message == View(tiles={"p1:camera": 180, "p2:screen": 0})


@pytest.mark.parametrize("tiles", [
    None, [], "p1:camera", {"p1:camera": -1}, {"p1:camera": 8193}, {"p1:camera": 1.5},
    {"p1:camera": True}, {"p1:camera": "180"}, {"x" * 65: 180},
    {f"p{i}:camera": 1 for i in range(513)},
])
def test_a_bad_view_is_bad_message(tiles: Any) -> None:
    with pytest.raises(RemoteProtocolError) as error:
        parse_client_message(json.dumps({"type": "view", "tiles": tiles}))
    assert error.value.code == "bad-message"
