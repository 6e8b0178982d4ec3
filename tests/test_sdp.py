"""SDP offer parsing and answer writing (RFC 8829, RFC 8843), against a Chrome offer.

tests/vectors/chrome_offer.sdp is modelled on what Chromium 120+ emits for a
peer connection with an audio and a camera sender, one video receiver and a data
channel: BUNDLE, per-section ICE and DTLS attributes, opus with RED, VP8 with RTX,
VP9, H.264 in both packetization modes and two profiles, AV1, and FID groups.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from confide.sfu.sdp import (
    MAX_LINE_CHARS,
    MAX_LINES,
    MAX_SECTION_ATTRIBUTES,
    MAX_SECTION_SSRCS,
    MAX_SECTIONS,
    MID_EXTENSION,
    RID_EXTENSION,
    AnswerSection,
    SentStream,
    SessionDescription,
    build_answer,
    parse_offer,
    supported_codecs,
    with_opus_resilience,
)

# read_bytes: read_text would turn the CRLF line endings into LF.
VECTORS = Path(__file__).parent / "vectors"
CHROME_OFFER = (VECTORS / "chrome_offer.sdp").read_bytes().decode()
FIREFOX_OFFER = (VECTORS / "firefox_offer.sdp").read_bytes().decode()
CHROME_FINGERPRINT = (
    "6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CD:87:32:BE:"
    "DD:8C:66:A5:8E:50:55:EA:20:C8:0E:93:C3:1A:8E:5A"
)
AUDIO_SSRC = 2857432146
VIDEO_SSRC = 1185431727
VIDEO_RTX_SSRC = 3609211440

SERVER_UFRAG = "serverufrag00000"
SERVER_PWD = "serverpassword0000000000"
SERVER_FINGERPRINT = ":".join(["AB"] * 32)
SERVER_ADDRESS = "203.0.113.7"
SERVER_PORT = 40000
FORWARDED_SSRC = 0x01020304


@pytest.fixture
def offer() -> SessionDescription:
    return parse_offer(CHROME_OFFER)


def answer_for(offer: SessionDescription) -> str:
    """What the SFU answers when it receives mids 0 and 1 and forwards a camera on mid 2."""
    audio, camera, receiver, _ = offer.sections
    sections = [
        AnswerSection("0", "recvonly", tuple(supported_codecs(audio)[:1])),
        AnswerSection("1", "recvonly", tuple(supported_codecs(camera)[:1])),
        AnswerSection(
            "2",
            "sendonly",
            tuple(supported_codecs(receiver)),
            SentStream(FORWARDED_SSRC, "publisher", "publisher:camera"),
        ),
        AnswerSection("3", "rejected"),
    ]
    return build_answer(
        offer,
        sections,
        ice_ufrag=SERVER_UFRAG,
        ice_pwd=SERVER_PWD,
        fingerprint=SERVER_FINGERPRINT,
        address=SERVER_ADDRESS,
        port=SERVER_PORT,
        session_id=1234,
    )


def answer_sections(answer: str) -> list[list[str]]:
    """The answer's lines split at each m= line; element 0 is the session part."""
    sections: list[list[str]] = [[]]
    for line in answer.split("\r\n"):
        if line.startswith("m="):
            sections.append([])
        if line:
            sections[-1].append(line)
    return sections


def replace_line(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


# --- Parsing the Chrome offer ----------------------------------------------------------------


def test_offer_gives_the_ice_credentials(offer: SessionDescription) -> None:
    assert offer.remote_ufrag == "Xq7Z"
    assert offer.remote_pwd == "b4Rj0Vt2sN9mKpLq8wYcE1uF"


def test_offer_gives_the_sha256_fingerprint_in_upper_case(offer: SessionDescription) -> None:
    assert ("sha-256", CHROME_FINGERPRINT) in offer.remote_fingerprints


def test_offer_fingerprint_is_upper_cased_when_written_in_lower_case() -> None:
    text = CHROME_OFFER.replace(CHROME_FINGERPRINT, CHROME_FINGERPRINT.lower())
    assert ("sha-256", CHROME_FINGERPRINT) in parse_offer(text).remote_fingerprints


def test_offer_gives_every_section_in_order(offer: SessionDescription) -> None:
    assert [(s.kind, s.mid) for s in offer.sections] == [
        ("audio", "0"),
        ("video", "1"),
        ("video", "2"),
        ("application", "3"),
    ]


def test_offer_gives_each_direction(offer: SessionDescription) -> None:
    assert [s.direction for s in offer.sections[:3]] == ["sendonly", "sendonly", "recvonly"]


def test_offer_gives_rtcp_mux_and_rsize(offer: SessionDescription) -> None:
    assert all(s.rtcp_mux and s.rtcp_rsize for s in offer.sections[:3])
    assert offer.sections[0].setup == "actpass"


def test_offer_gives_opus_first_with_its_parameters(offer: SessionDescription) -> None:
    opus = offer.sections[0].codecs[0]
    assert (opus.payload_type, opus.name, opus.clock_rate, opus.channels) == (111, "opus", 48000, 2)
    assert opus.fmtp == "minptime=10;useinbandfec=1"
    assert opus.feedback == ("transport-cc",)
    assert [c.name for c in offer.sections[0].codecs][1:3] == ["red", "g722"]


def test_offer_gives_vp8_first_with_its_feedback(offer: SessionDescription) -> None:
    vp8 = offer.sections[1].codecs[0]
    assert (vp8.payload_type, vp8.name, vp8.clock_rate) == (96, "vp8", 90000)
    assert vp8.feedback == ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli")


def test_offer_codecs_follow_the_m_line_order(offer: SessionDescription) -> None:
    assert [c.payload_type for c in offer.sections[1].codecs] == [
        96, 97, 98, 99, 102, 103, 104, 105, 106, 107, 108, 109, 45, 46, 116, 117, 118,
    ]


def test_offer_gives_media_ssrcs_without_the_rtx_ssrc(offer: SessionDescription) -> None:
    assert offer.sections[0].ssrcs == [AUDIO_SSRC]
    assert offer.sections[1].ssrcs == [VIDEO_SSRC]
    assert VIDEO_RTX_SSRC not in offer.sections[1].ssrcs


def test_offer_receive_section_has_no_ssrcs(offer: SessionDescription) -> None:
    assert offer.sections[2].ssrcs == []


def test_fid_group_after_the_ssrc_lines_still_excludes_the_rtx_ssrc() -> None:
    group = f"a=ssrc-group:FID {VIDEO_SSRC} {VIDEO_RTX_SSRC}\r\n"
    last_ssrc_line = (
        f"a=ssrc:{VIDEO_RTX_SSRC} msid:9f2c7a1e-4b1d-4e0a-8c55-6a9d3b2e7f10 "
        "a1b7c9d0-2e4f-4a6b-8c0d-1e2f3a4b5c6d\r\n"
    )
    text = replace_line(CHROME_OFFER, group, "")
    text = replace_line(text, last_ssrc_line, last_ssrc_line + group)
    assert parse_offer(text).sections[1].ssrcs == [VIDEO_SSRC]


def test_fid_group_of_one_section_does_not_hide_ssrcs_of_another() -> None:
    group = f"a=ssrc-group:FID {VIDEO_SSRC} {AUDIO_SSRC}\r\n"
    text = replace_line(CHROME_OFFER, "a=mid:1\r\n", "a=mid:1\r\n" + group)
    assert parse_offer(text).sections[0].ssrcs == [AUDIO_SSRC]


def test_session_level_ice_credentials_are_used_when_sections_have_none() -> None:
    lines = [
        line for line in CHROME_OFFER.split("\r\n")
        if not line.startswith(("a=ice-ufrag", "a=ice-pwd", "a=fingerprint"))
    ]
    lines[3:3] = [
        "a=ice-ufrag:sess",
        "a=ice-pwd:sessionpassword000000000",
        f"a=fingerprint:sha-256 {CHROME_FINGERPRINT}",
    ]
    offer = parse_offer("\r\n".join(lines))
    assert (offer.remote_ufrag, offer.remote_pwd) == ("sess", "sessionpassword000000000")
    assert offer.remote_fingerprints == [("sha-256", CHROME_FINGERPRINT)]


def test_offer_with_bare_newlines_parses_the_same() -> None:
    crlf = parse_offer(CHROME_OFFER)
    lf = parse_offer(CHROME_OFFER.replace("\r\n", "\n"))
    assert lf == crlf


# --- Codecs the SFU forwards -----------------------------------------------------------------


def test_supported_audio_codec_is_opus_only(offer: SessionDescription) -> None:
    assert [c.payload_type for c in supported_codecs(offer.sections[0])] == [111]


def test_supported_video_codecs_are_vp8_and_h264_packetization_mode_1(
    offer: SessionDescription,
) -> None:
    codecs = supported_codecs(offer.sections[1])
    assert [(c.payload_type, c.name) for c in codecs] == [(96, "vp8"), (102, "h264"), (106, "h264")]
    assert all("packetization-mode=1" in c.fmtp for c in codecs[1:])


def test_data_channel_section_has_no_supported_codecs(offer: SessionDescription) -> None:
    assert supported_codecs(offer.sections[3]) == []


def test_h264_profiles_and_modes_have_distinct_codec_keys(offer: SessionDescription) -> None:
    by_pt = {c.payload_type: c for c in offer.sections[1].codecs}
    keys = {by_pt[pt].key for pt in (102, 104, 106, 108)}
    assert len(keys) == 4
    assert by_pt[102].key == "h264/4200/1"
    assert by_pt[96].key == "vp8/90000/1"


# --- The answer ------------------------------------------------------------------------------


def test_answer_has_one_m_section_per_offered_one_in_order(offer: SessionDescription) -> None:
    sections = answer_sections(answer_for(offer))[1:]
    assert [s[0].split()[0] for s in sections] == ["m=audio", "m=video", "m=video", "m=application"]
    assert [next(x for x in s if x.startswith("a=mid:")) for s in sections] == [
        "a=mid:0", "a=mid:1", "a=mid:2", "a=mid:3",
    ]


def test_answer_is_ice_lite(offer: SessionDescription) -> None:
    assert "a=ice-lite" in answer_sections(answer_for(offer))[0]


def test_answer_bundles_the_accepted_mids_only(offer: SessionDescription) -> None:
    assert "a=group:BUNDLE 0 1 2" in answer_sections(answer_for(offer))[0]


def test_answer_rejects_a_section_with_port_zero(offer: SessionDescription) -> None:
    rejected = answer_sections(answer_for(offer))[4]
    assert rejected[0] == "m=application 0 UDP/DTLS/SCTP webrtc-datachannel"
    assert not any(line.startswith(("a=ice-", "a=fingerprint", "a=candidate")) for line in rejected)


def test_answer_sections_carry_our_ice_and_dtls_parameters(offer: SessionDescription) -> None:
    for section in answer_sections(answer_for(offer))[1:4]:
        assert f"a=ice-ufrag:{SERVER_UFRAG}" in section
        assert f"a=ice-pwd:{SERVER_PWD}" in section
        assert f"a=fingerprint:sha-256 {SERVER_FINGERPRINT}" in section
        assert "a=setup:passive" in section
        assert "a=rtcp-mux" in section


def test_answer_names_the_single_host_candidate(offer: SessionDescription) -> None:
    for section in answer_sections(answer_for(offer))[1:4]:
        assert f"a=candidate:1 1 udp 2130706431 {SERVER_ADDRESS} {SERVER_PORT} typ host" in section
        assert "a=end-of-candidates" in section


def test_answer_gives_each_direction(offer: SessionDescription) -> None:
    sections = answer_sections(answer_for(offer))
    assert "a=recvonly" in sections[1]
    assert "a=recvonly" in sections[2]
    assert "a=sendonly" in sections[3]


def test_answer_declares_the_forwarded_ssrc(offer: SessionDescription) -> None:
    section = answer_sections(answer_for(offer))[3]
    assert f"a=ssrc:{FORWARDED_SSRC} cname:publisher" in section
    assert f"a=ssrc:{FORWARDED_SSRC} msid:publisher publisher:camera" in section
    assert "a=msid:publisher publisher:camera" in section


def test_answer_sections_without_a_sent_stream_have_no_ssrc(offer: SessionDescription) -> None:
    for section in answer_sections(answer_for(offer))[1:3]:
        assert not any(line.startswith("a=ssrc") for line in section)


def test_answer_lists_the_chosen_codecs_with_their_parameters(offer: SessionDescription) -> None:
    sections = answer_sections(answer_for(offer))
    assert sections[1][0] == "m=audio 9 UDP/TLS/RTP/SAVPF 111"
    assert "a=rtpmap:111 opus/48000/2" in sections[1]
    # Opus as offered, and asked for in-band FEC and DTX.
    assert "a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1" in sections[1]
    assert sections[2][0] == "m=video 9 UDP/TLS/RTP/SAVPF 96"
    assert "a=rtpmap:96 VP8/90000" in sections[2]
    assert sections[3][0] == "m=video 9 UDP/TLS/RTP/SAVPF 96 102 106"
    assert (
        "a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
        in sections[3]
    )


def test_answer_keeps_only_nack_pli_fir_and_remb_feedback(offer: SessionDescription) -> None:
    sections = answer_sections(answer_for(offer))
    feedback = {
        line.split(" ", 1)[1] for s in sections for line in s if line.startswith("a=rtcp-fb")
    }
    assert feedback == {"nack", "nack pli", "ccm fir", "goog-remb"}
    assert not any(line.startswith("a=rtcp-fb") for line in sections[1])  # audio: none


def test_answer_keeps_rtcp_rsize_when_offered(offer: SessionDescription) -> None:
    assert "a=rtcp-rsize" in answer_sections(answer_for(offer))[1]


def test_answer_parses_back_as_what_was_answered(offer: SessionDescription) -> None:
    parsed = parse_offer(answer_for(offer))
    assert parsed.remote_ufrag == SERVER_UFRAG
    assert parsed.remote_fingerprints[0] == ("sha-256", SERVER_FINGERPRINT)
    assert [s.port for s in parsed.sections] == [9, 9, 9, 0]
    assert parsed.sections[2].ssrcs == [FORWARDED_SSRC]


def test_answer_uses_crlf_line_endings(offer: SessionDescription) -> None:
    answer = answer_for(offer)
    assert answer.endswith("\r\n")
    assert "\n" not in answer.replace("\r\n", "")


# --- Malformed offers ------------------------------------------------------------------------


def test_offer_not_starting_with_v0_is_refused() -> None:
    with pytest.raises(ValueError, match="v=0"):
        parse_offer(CHROME_OFFER.split("\r\n", 1)[1])


def test_empty_offer_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_offer("")


def test_offer_without_media_sections_is_refused() -> None:
    session_part = CHROME_OFFER.split("m=audio", 1)[0]
    with pytest.raises(ValueError, match="no media sections"):
        parse_offer(session_part)


def test_offer_without_ice_credentials_is_refused() -> None:
    text = "\r\n".join(
        line for line in CHROME_OFFER.split("\r\n") if not line.startswith("a=ice-pwd")
    )
    with pytest.raises(ValueError, match="ICE credentials"):
        parse_offer(text)


def test_offer_without_a_sha256_fingerprint_is_refused() -> None:
    text = CHROME_OFFER.replace("a=fingerprint:sha-256", "a=fingerprint:sha-1")
    with pytest.raises(ValueError, match="sha-256"):
        parse_offer(text)


@pytest.mark.parametrize("ssrc", ["abc", "-1", "4294967296", ""])
def test_offer_with_a_bad_ssrc_is_refused(ssrc: str) -> None:
    text = CHROME_OFFER.replace(f"a=ssrc:{AUDIO_SSRC} cname:", f"a=ssrc:{ssrc} cname:")
    with pytest.raises(ValueError, match="ssrc"):
        parse_offer(text)


def test_offer_with_a_line_over_the_limit_is_refused() -> None:
    text = CHROME_OFFER + "a=x-long:" + "x" * MAX_LINE_CHARS + "\r\n"
    with pytest.raises(ValueError, match="too long"):
        parse_offer(text)


def test_offer_with_more_than_the_maximum_of_sections_is_refused() -> None:
    extra = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n"
    with pytest.raises(ValueError, match="media sections"):
        parse_offer(CHROME_OFFER + extra * (MAX_SECTIONS - 3))


def test_offer_with_too_many_lines_is_refused() -> None:
    with pytest.raises(ValueError, match="lines"):
        parse_offer(CHROME_OFFER + "b=AS:1\r\n" * MAX_LINES)


def test_a_section_with_too_many_attributes_is_refused() -> None:
    with pytest.raises(ValueError, match="attributes"):
        parse_offer(CHROME_OFFER + "a=x-filler\r\n" * MAX_SECTION_ATTRIBUTES)


def test_a_section_with_too_many_ssrcs_is_refused() -> None:
    ssrcs = "".join(f"a=ssrc:{1000 + i} cname:x\r\n" for i in range(MAX_SECTION_SSRCS + 1))
    with pytest.raises(ValueError, match="SSRCs"):
        parse_offer(CHROME_OFFER + ssrcs)


def test_the_offers_of_real_browsers_are_far_below_the_caps() -> None:
    for text in (CHROME_OFFER, FIREFOX_OFFER):
        offer = parse_offer(text)
        assert max(len(s.ssrcs) for s in offer.sections) <= 4
        assert len(text.splitlines()) < MAX_SECTION_ATTRIBUTES


def test_offer_with_the_maximum_of_sections_parses() -> None:
    extra = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n"
    assert len(parse_offer(CHROME_OFFER + extra * (MAX_SECTIONS - 4)).sections) == MAX_SECTIONS


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("m=audio 9 UDP", "m=audio x UDP"),
        ("m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126", "m=audio 9"),
        ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus"),
        ("a=rtpmap:111 opus/48000/2", "a=rtpmap:x opus/48000/2"),
        ("a=ice-ufrag:Xq7Z", "a=ice-ufrag:Xq 7Z"),
        ("a=mid:0", "a=mid:"),
        ("s=-", "s"),
    ],
)
def test_offer_with_a_malformed_line_is_refused(old: str, new: str) -> None:
    with pytest.raises(ValueError):
        parse_offer(replace_line(CHROME_OFFER, old, new))


# --- Fuzz ------------------------------------------------------------------------------------


def mutate(rng: random.Random, text: str) -> str:
    lines = text.split("\r\n")
    for _ in range(rng.randint(1, 5)):
        choice = rng.randrange(7)
        index = rng.randrange(len(lines))
        if choice == 0:
            del lines[index]
        elif choice == 1:
            lines.insert(index, lines[rng.randrange(len(lines))])
        elif choice == 2:
            line = lines[index]
            cut = rng.randrange(len(line) + 1)
            lines[index] = line[:cut]
        elif choice == 3:
            line = list(lines[index]) or [" "]
            line[rng.randrange(len(line))] = rng.choice(" :=/;0123456789x\u00b2\u0663\x00-\t")
            lines[index] = "".join(line)
        elif choice == 4:
            j = rng.randrange(len(lines))
            lines[index], lines[j] = lines[j], lines[index]
        elif choice == 5:
            lines.insert(index, rng.choice(["m=", "a=", "a=ssrc:", "a=rtpmap:", "m=x 1 y", "="]))
        else:
            return "\r\n".join(lines)[: rng.randrange(len(text))]
    return "\r\n".join(lines)


def test_fuzzed_offers_parse_or_raise_value_error() -> None:
    rng = random.Random(7)
    parsed = 0
    for _ in range(1500):
        text = mutate(rng, CHROME_OFFER)
        try:
            offer = parse_offer(text)
        except ValueError:
            continue
        parsed += 1
        for section in offer.sections:
            for codec in supported_codecs(section):
                assert codec.key
    assert parsed > 200


# --- Firefox's first offer -------------------------------------------------------------------
# tests/vectors/firefox_offer.sdp is what Firefox ESR 153 sent for an audio and a camera
# sender and an audio and a video receiver: every section after the first has port 0
# and `a=bundle-only` (RFC 8843 section 6), which is an offer, not a rejection.



def test_firefox_offer_marks_sections_after_the_first_bundle_only() -> None:
    offer = parse_offer(FIREFOX_OFFER)
    assert [(s.mid, s.port, s.bundle_only) for s in offer.sections] == [
        ("0", 9, False), ("1", 0, True), ("2", 0, True), ("3", 0, True),
    ]
    assert offer.bundle == ["0", "1", "2", "3"]


def test_bundle_only_sections_in_the_group_are_offered() -> None:
    offer = parse_offer(FIREFOX_OFFER)
    assert all(offer.is_offered(s) for s in offer.sections)


def test_bundle_only_section_outside_the_group_is_not_offered() -> None:
    text = replace_line(FIREFOX_OFFER, "a=group:BUNDLE 0 1 2 3", "a=group:BUNDLE 0 1 2")
    offer = parse_offer(text)
    assert [offer.is_offered(s) for s in offer.sections] == [True, True, True, False]


def test_port_zero_without_bundle_only_is_not_offered(offer: SessionDescription) -> None:
    text = replace_line(CHROME_OFFER, "m=video 9 UDP/TLS/RTP/SAVPF", "m=video 0 UDP/TLS/RTP/SAVPF")
    parsed = parse_offer(text)
    assert not parsed.is_offered(parsed.sections[1])


def test_firefox_offer_gives_vp8_and_the_camera_ssrc_without_rtx() -> None:
    camera = parse_offer(FIREFOX_OFFER).sections[1]
    assert [(c.payload_type, c.name) for c in supported_codecs(camera)] == [(120, "vp8")]
    assert camera.ssrcs == [3561257181]


def test_opus_senders_are_asked_for_fec_and_dtx_once() -> None:
    assert with_opus_resilience("") == "useinbandfec=1;usedtx=1"
    assert with_opus_resilience("minptime=10;useinbandfec=1") == (
        "minptime=10;useinbandfec=1;usedtx=1")
    assert with_opus_resilience("usedtx=0; stereo=1") == "usedtx=0;stereo=1;useinbandfec=1"


# --- Simulcast (RFC 8853) --------------------------------------------------------------------

# What Chromium and Firefox ESR offer for a camera sent as three VP8 encodings (rids
# q, h, f): Chromium names no SSRC; Firefox names six (three with RTX) and no SIM group.
CHROME_SIMULCAST = (VECTORS / "chrome_simulcast_offer.sdp").read_bytes().decode()
FIREFOX_SIMULCAST = (VECTORS / "firefox_simulcast_offer.sdp").read_bytes().decode()


@pytest.mark.parametrize(("text", "mid_id", "rid_id"), [
    (CHROME_SIMULCAST, 4, 10), (FIREFOX_SIMULCAST, 3, 9)])
def test_simulcast_offers_of_both_browsers_give_their_layers(
    text: str, mid_id: int, rid_id: int,
) -> None:
    camera = parse_offer(text).sections[1]
    assert camera.simulcast_rids == ["q", "h", "f"]
    assert camera.extensions == {MID_EXTENSION: mid_id, RID_EXTENSION: rid_id}


def test_a_camera_without_simulcast_has_no_layers(offer: SessionDescription) -> None:
    assert [s.simulcast_rids for s in offer.sections] == [[], [], [], []]


def test_simulcast_needs_the_rid_extension_to_tell_layers_apart() -> None:
    text = replace_line(CHROME_SIMULCAST,
                        "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n", "")
    assert parse_offer(text).sections[1].simulcast_rids == []


def test_simulcast_takes_the_first_alternative_paused_or_not_and_at_most_three_layers() -> None:
    text = CHROME_SIMULCAST.replace("a=rid:f send\r\n", "a=rid:f send\r\na=rid:x send\r\n")
    text = text.replace("a=simulcast:send q;h;f", "a=simulcast:send ~q,h;h;f;x")
    camera = parse_offer(text).sections[1]
    assert camera.simulcast == ["q", "h", "f", "x"]
    assert camera.simulcast_rids == ["q", "h", "f"]


def test_a_simulcast_rid_not_declared_is_left_out() -> None:
    text = CHROME_SIMULCAST.replace("a=rid:h send\r\n", "")
    assert parse_offer(text).sections[1].simulcast_rids == ["q", "f"]


@pytest.mark.parametrize(("old", "new"), [
    ("a=rid:q send", "a=rid:q;q send"),
    ("a=rid:q send", "a=rid:" + "q" * 17 + " send"),
    ("a=simulcast:send q;h;f", "a=simulcast:send q;h!;f"),
    ("a=simulcast:send q;h;f", "a=simulcast:send q;;f"),
    ("a=extmap:10 urn", "a=extmap:0 urn"),
    ("a=extmap:10 urn", "a=extmap:x urn"),
])
def test_malformed_simulcast_lines_are_refused(old: str, new: str) -> None:
    with pytest.raises(ValueError):
        parse_offer(CHROME_SIMULCAST.replace(old, new, 1))


def test_answer_takes_the_layers_and_the_two_extensions() -> None:
    offer = parse_offer(CHROME_SIMULCAST)
    audio, camera, receiver = offer.sections
    answer = build_answer(
        offer,
        [AnswerSection("0", "recvonly", tuple(supported_codecs(audio)[:1])),
         AnswerSection("1", "recvonly", tuple(supported_codecs(camera)[:1]),
                       simulcast=("q", "h", "f"),
                       extensions=((4, MID_EXTENSION), (10, RID_EXTENSION))),
         AnswerSection("2", "inactive", tuple(supported_codecs(receiver)))],
        ice_ufrag=SERVER_UFRAG, ice_pwd=SERVER_PWD, fingerprint=SERVER_FINGERPRINT,
        address=SERVER_ADDRESS, port=SERVER_PORT, session_id=1,
    )
    sections = answer_sections(answer)
    for line in ("a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
                 "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
                 "a=rid:q recv", "a=rid:h recv", "a=rid:f recv", "a=simulcast:recv q;h;f"):
        assert line in sections[2]
    # Every other section negotiates no header extension, so nothing the SFU forwards
    # carries one a receiver could misread.
    assert not any(line.startswith(("a=extmap", "a=rid", "a=simulcast"))
                   for section in (sections[1], sections[3]) for line in section)
