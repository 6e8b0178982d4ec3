"""SpeakerRanking: the dominant speaker and the speaking order, from RFC 6464 audio levels."""

from __future__ import annotations

import pytest

from confide.sfu.speakers import SILENCE_LEVEL, SpeakerRanking, parse_audio_level

PACKET_SECONDS = 0.02  # Opus at WebRTC's default ptime
SPEECH = 30  # -30 dBov: ordinary speech after the browser's gain control
FAN = 60  # -60 dBov: a fan near the microphone


def run(
    ranking: SpeakerRanking,
    start: float,
    seconds: float,
    everyone: list[str],
    levels: dict[str, int] | None = None,
    *,
    voice: bool = True,
) -> float:
    """Everyone sends a packet every 20 ms for `seconds`: those in `levels` at their
    level (with the voice bit as given), the others silence. Returns the end time."""
    levels = levels or {}
    packets = round(seconds / PACKET_SECONDS)
    for index in range(packets):
        now = start + index * PACKET_SECONDS
        for participant_id in everyone:
            level = levels.get(participant_id)
            if level is None:
                ranking.observe(participant_id, SILENCE_LEVEL, False, now)
            else:
                ranking.observe(participant_id, level, voice, now)
    return start + packets * PACKET_SECONDS


def joined(*participant_ids: str) -> SpeakerRanking:
    ranking = SpeakerRanking()
    for participant_id in participant_ids:
        ranking.add(participant_id, 0.0)
    return ranking


# RFC 6464 section 3: one octet, |V| level |.


def test_audio_level_is_the_low_seven_bits_and_voice_the_top_bit() -> None:
    assert parse_audio_level(bytes((0x80 | 30,))) == (30, True)
    assert parse_audio_level(bytes((127,))) == (127, False)
    assert parse_audio_level(bytes((0,))) == (0, False)


@pytest.mark.parametrize("value", [b"", b"\x9e\x00", b"\x9e\x00\x00\x00"])
def test_audio_level_of_other_than_one_octet_is_malformed(value: bytes) -> None:
    with pytest.raises(ValueError, match=f"audio level extension is {len(value)} octets"):
        parse_audio_level(value)


# Dominant speaker.


def test_nobody_is_dominant_before_anyone_speaks() -> None:
    ranking = joined("alice", "bob")
    now = run(ranking, 0.0, 5.0, ["alice", "bob"])
    assert ranking.dominant(now) is None


def test_someone_speaking_becomes_dominant_within_about_a_second() -> None:
    ranking = joined("alice", "bob")
    now = run(ranking, 0.0, 0.5, ["alice", "bob"], {"bob": SPEECH})
    assert ranking.dominant(now) is None
    now = run(ranking, now, 1.0, ["alice", "bob"], {"bob": SPEECH})
    assert ranking.dominant(now) == "bob"


def test_dominant_speaker_switches_after_sustained_speech_by_another() -> None:
    everyone = ["alice", "bob"]
    ranking = joined(*everyone)
    now = run(ranking, 0.0, 3.0, everyone, {"alice": SPEECH})
    assert ranking.dominant(now) == "alice"
    now = run(ranking, now, 0.5, everyone, {"bob": SPEECH})
    assert ranking.dominant(now) == "alice"
    now = run(ranking, now, 1.0, everyone, {"bob": SPEECH})
    assert ranking.dominant(now) == "bob"


@pytest.mark.parametrize("offset", [0.0, 0.06, 0.12, 0.18, 0.24])
def test_a_cough_does_not_take_over(offset: float) -> None:
    """A loud burst of 0.4 s, at any phase of the scoring intervals, in a silence."""
    everyone = ["alice", "bob"]
    ranking = joined(*everyone)
    now = run(ranking, 0.0, 3.0, everyone, {"alice": SPEECH})
    now = run(ranking, now, 1.0 + offset, everyone)
    now = run(ranking, now, 0.4, everyone, {"bob": 5})
    for _ in range(20):
        now = run(ranking, now, 0.1, everyone)
        assert ranking.dominant(now) == "alice"


def test_short_interjections_while_someone_talks_do_not_take_over() -> None:
    everyone = ["alice", "bob"]
    ranking = joined(*everyone)
    now = run(ranking, 0.0, 3.0, everyone, {"alice": SPEECH})
    for _ in range(5):
        now = run(ranking, now, 0.3, everyone, {"alice": SPEECH, "bob": 10})
        now = run(ranking, now, 1.0, everyone, {"alice": SPEECH})
        assert ranking.dominant(now) == "alice"


def test_talking_over_the_dominant_speaker_as_loudly_does_not_take_over() -> None:
    everyone = ["alice", "bob"]
    ranking = joined(*everyone)
    now = run(ranking, 0.0, 3.0, everyone, {"alice": SPEECH})
    now = run(ranking, now, 5.0, everyone, {"alice": SPEECH, "bob": SPEECH})
    assert ranking.dominant(now) == "alice"


def test_constant_low_noise_never_becomes_dominant() -> None:
    everyone = ["alice", "fan"]
    ranking = joined(*everyone)
    now = run(ranking, 0.0, 10.0, everyone, {"fan": FAN})
    assert ranking.dominant(now) is None
    assert ranking.ranking(now) == ["alice", "fan"]


def test_constant_low_noise_does_not_take_over_from_a_silent_speaker() -> None:
    everyone = ["alice", "fan"]
    ranking = joined(*everyone)
    now = run(ranking, 0.0, 3.0, everyone, {"alice": SPEECH, "fan": FAN})
    now = run(ranking, now, 10.0, everyone, {"fan": FAN})
    assert ranking.dominant(now) == "alice"


def test_loud_sound_without_the_voice_bit_does_not_become_dominant() -> None:
    everyone = ["alice", "music"]
    ranking = joined(*everyone)
    now = run(ranking, 0.0, 10.0, everyone, {"music": 20}, voice=False)
    assert ranking.dominant(now) is None


def test_sporadic_quiet_packets_under_dtx_are_not_speech() -> None:
    """With DTX a sender sends packets only now and then; a few quiet ones with the voice
    bit set are a small share of the interval, not most of the packets received."""
    ranking = joined("alice", "bob")
    now = 0.0
    for _ in range(100):
        ranking.observe("bob", 40, True, now)
        now += 0.1
    assert ranking.dominant(now) is None


def test_silence_keeps_the_last_dominant_speaker() -> None:
    everyone = ["alice", "bob"]
    ranking = joined(*everyone)
    now = run(ranking, 0.0, 3.0, everyone, {"bob": SPEECH})
    now = run(ranking, now, 10.0, everyone)  # DTX-less silence
    assert ranking.dominant(now) == "bob"
    assert ranking.dominant(now + 60.0) == "bob"  # no packets at all


def test_a_dominant_speaker_who_leaves_is_dominant_no_more() -> None:
    everyone = ["alice", "bob"]
    ranking = joined(*everyone)
    now = run(ranking, 0.0, 3.0, everyone, {"bob": SPEECH})
    ranking.remove("bob")
    assert ranking.dominant(now) is None
    now = run(ranking, now, 1.5, ["alice"], {"alice": SPEECH})
    assert ranking.dominant(now) == "alice"


# Ranking, for last-N.


def test_ranking_puts_the_most_recent_speakers_first_and_the_rest_in_join_order() -> None:
    everyone = ["alice", "bob", "carol", "dave"]
    ranking = joined(*everyone)
    now = run(ranking, 0.0, 3.0, everyone, {"carol": 10})
    assert ranking.ranking(now) == ["carol", "alice", "bob", "dave"]
    now = run(ranking, now, 3.0, everyone, {"bob": SPEECH})
    assert ranking.ranking(now) == ["bob", "carol", "alice", "dave"]
    # Dave, quieter than Bob and Carol were, spoke last: he comes before Carol.
    now = run(ranking, now, 2.0, everyone, {"bob": SPEECH, "dave": 40})
    assert ranking.ranking(now) == ["bob", "dave", "carol", "alice"]


def test_ranking_puts_the_dominant_speaker_first() -> None:
    everyone = ["alice", "bob"]
    ranking = joined(*everyone)
    now = run(ranking, 0.0, 3.0, everyone, {"alice": 30})
    # Bob is louder but not by enough to take over; both spoke in the last interval.
    now = run(ranking, now, 3.0, everyone, {"alice": 30, "bob": 25})
    assert ranking.dominant(now) == "alice"
    assert ranking.ranking(now) == ["alice", "bob"]


def test_those_who_spoke_at_the_same_time_are_ranked_louder_first() -> None:
    everyone = ["alice", "bob", "carol"]
    ranking = joined(*everyone)
    now = run(ranking, 0.0, 3.0, everyone, {"alice": 10})
    now = run(ranking, now, 2.0, everyone, {"alice": 10, "bob": 40, "carol": 30})
    assert ranking.ranking(now) == ["alice", "carol", "bob"]


def test_a_cough_does_not_move_someone_up_the_ranking() -> None:
    everyone = ["alice", "bob", "carol"]
    ranking = joined(*everyone)
    now = run(ranking, 0.0, 3.0, everyone, {"bob": SPEECH})
    now = run(ranking, now, 0.3, everyone, {"carol": 5})
    now = run(ranking, now, 2.0, everyone)
    assert ranking.ranking(now) == ["bob", "alice", "carol"]


def test_join_order_counts_the_first_packet_of_someone_not_added() -> None:
    ranking = joined("alice")
    ranking.observe("carol", SILENCE_LEVEL, False, 0.1)
    ranking.add("bob", 0.2)
    ranking.add("alice", 0.3)  # already in: keeps its place
    assert ranking.ranking(0.4) == ["alice", "carol", "bob"]


def test_someone_removed_and_back_joins_at_the_end() -> None:
    ranking = joined("alice", "bob", "carol")
    ranking.remove("alice")
    ranking.add("alice", 1.0)
    assert ranking.ranking(1.0) == ["bob", "carol", "alice"]
