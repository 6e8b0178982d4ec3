"""ICE-lite (RFC 8445 section 2.5): the server answers the browser's connectivity checks.

Requests are built the way a controlling browser sends them (RFC 8445 section
7.1.2, RFC 8489): USERNAME 'server ufrag:client ufrag', PRIORITY,
ICE-CONTROLLING, MESSAGE-INTEGRITY under the server's password and FINGERPRINT.
"""

from __future__ import annotations

import pytest
from aioice import stun

from confide.sfu.ice import MAX_STUN_BYTES, IceLiteAgent, parse_stun, stun_username

CLIENT_UFRAG = "Xq7Z"
CLIENT_ADDRESS = ("192.0.2.10", 51000)
OTHER_ADDRESS = ("198.51.100.20", 52000)


@pytest.fixture
def agent() -> IceLiteAgent:
    agent = IceLiteAgent()
    agent.remote_ufrag = CLIENT_UFRAG
    return agent


def binding_request(
    agent: IceLiteAgent,
    *,
    use_candidate: bool = False,
    username: str | None = None,
    password: str | None = None,
    method: stun.Method = stun.Method.BINDING,
    message_class: stun.Class = stun.Class.REQUEST,
) -> bytes:
    request = stun.Message(message_method=method, message_class=message_class)
    request.attributes["USERNAME"] = username or f"{agent.local_ufrag}:{CLIENT_UFRAG}"
    request.attributes["PRIORITY"] = 1853824767
    request.attributes["ICE-CONTROLLING"] = 0x1122334455667788
    if use_candidate:
        request.attributes["USE-CANDIDATE"] = None
    request.add_message_integrity((password or agent.local_pwd).encode("utf8"))
    return bytes(request)


def test_local_credentials_are_long_enough_and_distinct() -> None:
    # RFC 8445 section 5.3: ufrag at least 4 characters, password at least 22.
    first, second = IceLiteAgent(), IceLiteAgent()
    assert len(first.local_ufrag) >= 4
    assert len(first.local_pwd) >= 22
    assert first.local_ufrag != second.local_ufrag
    assert first.local_pwd != second.local_pwd


def test_response_is_a_binding_success_for_the_same_transaction(agent: IceLiteAgent) -> None:
    request = binding_request(agent)
    response = stun.parse_message(agent.handle_request(request, CLIENT_ADDRESS, 1.0))
    assert response.message_method == stun.Method.BINDING
    assert response.message_class == stun.Class.RESPONSE
    assert response.transaction_id == stun.parse_message(request).transaction_id


def test_response_maps_the_source_address(agent: IceLiteAgent) -> None:
    response = stun.parse_message(
        agent.handle_request(binding_request(agent), CLIENT_ADDRESS, 1.0)
    )
    assert response.attributes["XOR-MAPPED-ADDRESS"] == CLIENT_ADDRESS


def test_response_is_signed_with_the_server_password(agent: IceLiteAgent) -> None:
    response = stun.parse_message(
        agent.handle_request(binding_request(agent), CLIENT_ADDRESS, 1.0)
    )
    assert response.check_message_integrity(agent.local_pwd.encode("utf8"))
    assert not response.check_message_integrity(b"another password000000")


def test_response_carries_a_valid_fingerprint(agent: IceLiteAgent) -> None:
    data = agent.handle_request(binding_request(agent), CLIENT_ADDRESS, 1.0)
    response = stun.parse_message(data)  # checks FINGERPRINT when present
    assert "FINGERPRINT" in response.attributes
    # FINGERPRINT is the last attribute (RFC 8489 section 14.7).
    assert data[-8:-4] == bytes.fromhex("80280004")


def test_request_records_when_the_last_check_arrived(agent: IceLiteAgent) -> None:
    agent.handle_request(binding_request(agent), CLIENT_ADDRESS, 7.5)
    assert agent.last_check_at == 7.5


def test_request_with_a_wrong_password_is_refused(agent: IceLiteAgent) -> None:
    request = binding_request(agent, password="not the server password!")
    with pytest.raises(ValueError, match="MESSAGE-INTEGRITY"):
        agent.handle_request(request, CLIENT_ADDRESS, 1.0)
    assert agent.nominated_address is None
    assert agent.last_check_at is None


def test_request_without_message_integrity_is_refused(agent: IceLiteAgent) -> None:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{agent.local_ufrag}:{CLIENT_UFRAG}"
    request.add_fingerprint()
    with pytest.raises(ValueError, match="MESSAGE-INTEGRITY"):
        agent.handle_request(bytes(request), CLIENT_ADDRESS, 1.0)


@pytest.mark.parametrize(
    "username",
    ["someoneelse0000:Xq7Z", "{local}:other", "{local}", "Xq7Z:{local}"],
)
def test_request_with_a_wrong_username_is_refused(agent: IceLiteAgent, username: str) -> None:
    request = binding_request(agent, username=username.format(local=agent.local_ufrag))
    with pytest.raises(ValueError, match="USERNAME"):
        agent.handle_request(request, CLIENT_ADDRESS, 1.0)


def test_binding_indication_is_refused(agent: IceLiteAgent) -> None:
    request = binding_request(agent, message_class=stun.Class.INDICATION)
    with pytest.raises(ValueError, match="not a Binding request"):
        agent.handle_request(request, CLIENT_ADDRESS, 1.0)


def test_binding_response_is_refused(agent: IceLiteAgent) -> None:
    request = binding_request(agent, message_class=stun.Class.RESPONSE)
    with pytest.raises(ValueError, match="not a Binding request"):
        agent.handle_request(request, CLIENT_ADDRESS, 1.0)


def test_non_binding_method_is_refused(agent: IceLiteAgent) -> None:
    request = binding_request(agent, method=stun.Method.ALLOCATE)
    with pytest.raises(ValueError, match="not a Binding request"):
        agent.handle_request(request, CLIENT_ADDRESS, 1.0)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x01",
        bytes(19),
        bytes.fromhex("0001 0008 2112a442") + bytes(12),  # length says 8, body is empty
        bytes.fromhex("0001 0004 2112a442") + bytes(12) + bytes.fromhex("0006 0010"),
        bytes.fromhex("3fff 0000 2112a442") + bytes(12),  # unknown method
    ],
)
def test_malformed_bytes_are_refused(agent: IceLiteAgent, data: bytes) -> None:
    with pytest.raises(ValueError):
        agent.handle_request(data, CLIENT_ADDRESS, 1.0)


def test_request_with_a_broken_fingerprint_is_refused(agent: IceLiteAgent) -> None:
    data = bytearray(binding_request(agent))
    data[-1] ^= 0xFF
    with pytest.raises(ValueError, match="malformed"):
        agent.handle_request(bytes(data), CLIENT_ADDRESS, 1.0)


def test_oversize_message_is_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_stun(bytes(MAX_STUN_BYTES + 1))


def test_tampered_request_fails_integrity(agent: IceLiteAgent) -> None:
    message = stun.parse_message(binding_request(agent))
    message.attributes["PRIORITY"] = 1  # changed after signing, signature kept
    integrity = message.attributes["MESSAGE-INTEGRITY"]
    del message.attributes["FINGERPRINT"]
    del message.attributes["MESSAGE-INTEGRITY"]
    data = bytes(message)
    # Append the old MESSAGE-INTEGRITY by hand, with the length covering it.
    body_length = len(data) - 20 + 24
    tampered = data[:2] + body_length.to_bytes(2, "big") + data[4:] + (
        bytes.fromhex("00080014") + integrity
    )
    with pytest.raises(ValueError, match="MESSAGE-INTEGRITY"):
        agent.handle_request(tampered, CLIENT_ADDRESS, 1.0)


# --- Nomination ------------------------------------------------------------------------------


def test_first_valid_check_gives_the_media_address(agent: IceLiteAgent) -> None:
    agent.handle_request(binding_request(agent), CLIENT_ADDRESS, 1.0)
    assert agent.nominated_address == CLIENT_ADDRESS


def test_check_without_use_candidate_does_not_move_the_media_address(
    agent: IceLiteAgent,
) -> None:
    agent.handle_request(binding_request(agent), CLIENT_ADDRESS, 1.0)
    agent.handle_request(binding_request(agent), OTHER_ADDRESS, 2.0)
    assert agent.nominated_address == CLIENT_ADDRESS


def test_check_with_use_candidate_moves_the_media_address(agent: IceLiteAgent) -> None:
    agent.handle_request(binding_request(agent, use_candidate=True), CLIENT_ADDRESS, 1.0)
    agent.handle_request(binding_request(agent, use_candidate=True), OTHER_ADDRESS, 2.0)
    assert agent.nominated_address == OTHER_ADDRESS


def test_refused_check_with_use_candidate_does_not_move_the_media_address(
    agent: IceLiteAgent,
) -> None:
    agent.handle_request(binding_request(agent, use_candidate=True), CLIENT_ADDRESS, 1.0)
    forged = binding_request(agent, use_candidate=True, password="not the server password!")
    with pytest.raises(ValueError):
        agent.handle_request(forged, OTHER_ADDRESS, 2.0)
    assert agent.nominated_address == CLIENT_ADDRESS


# --- Which agent a request is for ------------------------------------------------------------


def test_stun_username_is_the_local_ufrag(agent: IceLiteAgent) -> None:
    assert stun_username(binding_request(agent)) == agent.local_ufrag


def test_stun_username_of_a_request_without_colon_is_none(agent: IceLiteAgent) -> None:
    assert stun_username(binding_request(agent, username="nocolon")) is None


def test_stun_username_of_a_request_without_username_is_none() -> None:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    assert stun_username(bytes(request)) is None


def test_stun_username_of_a_response_is_none(agent: IceLiteAgent) -> None:
    response = binding_request(agent, message_class=stun.Class.RESPONSE)
    assert stun_username(response) is None


def test_stun_username_of_malformed_bytes_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        stun_username(b"\x00\x01\x00")


def test_response_maps_an_ipv6_source_address(agent: IceLiteAgent) -> None:
    address = ("2001:db8::7", 40000)
    response = stun.parse_message(agent.handle_request(binding_request(agent), address, 1.0))
    assert response.attributes["XOR-MAPPED-ADDRESS"] == address


def test_stun_username_that_is_not_utf8_is_none(agent: IceLiteAgent) -> None:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = "x"
    data = bytearray(bytes(request))
    data[24] = 0xFF  # the username's only byte
    assert stun_username(bytes(data)) is None


def test_attribute_running_past_the_message_is_refused(agent: IceLiteAgent) -> None:
    data = bytearray(binding_request(agent))
    data[22:24] = (0x0400).to_bytes(2, "big")  # USERNAME claims 1 kB
    with pytest.raises(ValueError, match="malformed"):
        agent.handle_request(bytes(data), CLIENT_ADDRESS, 1.0)


def test_use_candidate_after_message_integrity_is_ignored(agent: IceLiteAgent) -> None:
    """RFC 8489 section 14.5: only FINGERPRINT may follow MESSAGE-INTEGRITY; anything
    else there is not covered by it, so an on-path attacker could have added it."""
    agent.handle_request(binding_request(agent), CLIENT_ADDRESS, 1.0)
    signed = binding_request(agent)[:-8]  # no USE-CANDIDATE; FINGERPRINT cut off
    signed = signed[:2] + (len(signed) - 20).to_bytes(2, "big") + signed[4:]
    tail = bytes.fromhex("00250000")  # USE-CANDIDATE
    forged = signed[:2] + (len(signed) - 20 + 4).to_bytes(2, "big") + signed[4:] + tail
    agent.handle_request(forged, OTHER_ADDRESS, 2.0)
    assert agent.nominated_address == CLIENT_ADDRESS


def test_anything_after_fingerprint_is_refused(agent: IceLiteAgent) -> None:
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    message.attributes["USERNAME"] = f"{agent.local_ufrag}:{CLIENT_UFRAG}"
    message.add_message_integrity(agent.local_pwd.encode())
    message.add_fingerprint()
    data = bytes(message)
    extended = data[:2] + (len(data) - 20 + 4).to_bytes(2, "big") + data[4:] + bytes.fromhex(
        "00250000")
    with pytest.raises(ValueError, match="FINGERPRINT is not last"):
        agent.handle_request(extended, OTHER_ADDRESS, 2.0)
