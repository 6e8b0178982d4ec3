"""Who is speaking: the dominant speaker and a speaking order, from RFC 6464 audio levels.

Each audio packet carries its level in the `ssrc-audio-level` header extension, in the
clear (SFrame encrypts only the payload), so the SFU can rank speakers for last-N without
the keys. `SpeakerRanking` is pure state; time comes in as `now`, in seconds.
"""

from __future__ import annotations

import math
from collections import deque

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

SILENCE_LEVEL = 127
"""The level of digital silence, in -dBov (RFC 6464 section 3); 0 is the loudest."""

ACTIVE_LEVEL = 50
"""Packets quieter than -50 dBov never count as speech. Speech after the browser's gain
control sits near -20 to -40 dBov, and what passes its noise suppression (a fan, a room's
hum) well below -50: so a constant low noise, even with the voice bit set, scores nothing.
LiveKit uses -35 dBov; this is more lenient to quiet microphones without AGC."""

INTERVAL = 0.25
"""Seconds over which packets are aggregated into one score per participant. Short enough
that a change of speaker is seen within about a second, long enough to hold a syllable
and its pause (about 12 Opus packets of 20 ms)."""

PACKETS_PER_INTERVAL = 12.5
"""Opus packets a sender sends in one interval at WebRTC's default 20 ms. Scores are
shares of this, not of the packets received: with DTX a silent sender sends few packets,
and a cough among them must not look like a full interval of speech."""

SPEAKING_SCORE = 0.1
"""An interval's score at or above this is speech in it: about 60 ms of speech at
-20 dBov, or 100 ms at -30 dBov."""

WINDOW = 5
"""Intervals (1.25 s) remembered per participant, and over which speech is judged."""

SUSTAINED_INTERVALS = 4
"""Intervals of speech within the window for sustained speech: at least 0.6 s of speech
spread over 1 to 1.25 s, with room for one pause. A burst shorter than about half a
second (a cough, a "yes") touches at most three intervals, so it never counts."""

LEAD_RATIO = 1.5
"""A challenger with sustained speech replaces the dominant speaker when its score over
the window is this many times the dominant speaker's. While the dominant speaker keeps
talking, someone talking over them as loudly does not take over; once they fall silent,
their score over the window falls to nothing within it, and anyone speaking takes over."""


def parse_audio_level(extension_value: bytes) -> tuple[int, bool]:
    """The level in -dBov (0 loudest, 127 silence) and the voice-activity bit, from the
    value of an `ssrc-audio-level` header extension element (RFC 6464 section 3: one
    octet, |V| level |). Raises ValueError for any other length."""
    if len(extension_value) != 1:
        raise ValueError(f"audio level extension is {len(extension_value)} octets, expected 1")
    octet = extension_value[0]
    return octet & 0x7F, bool(octet & 0x80)


class _Speaker:
    """One participant's audio: the current interval's counts and recent scores."""

    __slots__ = ("packets", "loudness", "scores", "last_spoke", "spoke_score")

    def __init__(self) -> None:
        self.packets = 0
        """Packets in the current interval."""
        self.loudness = 0
        """The current interval's sum, over packets of speech, of dB above ACTIVE_LEVEL."""
        self.scores: deque[float] = deque((0.0,) * WINDOW, maxlen=WINDOW)
        """Scores of the last WINDOW intervals, oldest first."""
        self.last_spoke = -1
        """The interval in which sustained speech was last seen; -1 for never."""
        self.spoke_score = 0.0
        """The window's score then, to order those who spoke in the same interval."""

    def close_interval(self) -> None:
        slots = max(self.packets, PACKETS_PER_INTERVAL)
        self.scores.append(self.loudness / (slots * (ACTIVE_LEVEL + 1)))
        self.packets = 0
        self.loudness = 0

    @property
    def window_score(self) -> float:
        return sum(self.scores)

    @property
    def sustained(self) -> bool:
        speech = sum(1 for score in self.scores if score >= SPEAKING_SCORE)
        return speech >= SUSTAINED_INTERVALS


class SpeakerRanking:
    """The dominant speaker of a meeting, and everyone in order of recent speech.

    `observe` takes each audio packet's level; every INTERVAL the counts become a score
    per participant: the share of the interval with speech (voice bit set, level at
    least -ACTIVE_LEVEL dBov), each packet weighted by how far it is above that level.
    The dominant speaker changes only for someone with sustained speech who clearly
    leads (see SUSTAINED_INTERVALS and LEAD_RATIO), so it does not flap, and silence
    alone never takes it away.
    """

    def __init__(self) -> None:
        self._speakers: dict[str, _Speaker] = {}
        """By participant id, in join order."""
        self._dominant: str | None = None
        self._interval = 0
        """Intervals closed so far."""
        self._interval_end = -math.inf
        """When the current interval ends; -inf before the first call."""

    def add(self, participant_id: str, now: float) -> None:
        """Take a participant in, after those before (a no-op for one already in)."""
        self._advance(now)
        if participant_id not in self._speakers:
            self._speakers[participant_id] = _Speaker()

    def remove(self, participant_id: str) -> None:
        """Forget a participant; if they were the dominant speaker, there is none until
        someone speaks."""
        self._speakers.pop(participant_id, None)
        if self._dominant == participant_id:
            self._dominant = None

    def observe(self, participant_id: str, level: int, voice: bool, now: float) -> None:
        """Take one audio packet's level (-dBov, 0 to 127) and voice-activity bit. An
        unknown participant is added."""
        if now >= self._interval_end:
            self._advance(now)
        speaker = self._speakers.get(participant_id)
        if speaker is None:
            self.add(participant_id, now)
            speaker = self._speakers[participant_id]
        speaker.packets += 1
        if voice and level <= ACTIVE_LEVEL:
            speaker.loudness += ACTIVE_LEVEL + 1 - level

    def dominant(self, now: float) -> str | None:
        """The dominant speaker; None before anyone has spoken, or after they left."""
        self._advance(now)
        return self._dominant

    def ranking(self, now: float) -> list[str]:
        """Everyone, for last-N: the dominant speaker first, then by how recently they
        spoke (sustained speech; louder first within one interval), then those who never
        did, in join order."""
        self._advance(now)
        ordered = sorted(  # stable: join order among equals
            self._speakers.items(),
            key=lambda item: (-item[1].last_spoke, -item[1].spoke_score),
        )
        ranking = [participant_id for participant_id, _ in ordered]
        if self._dominant is not None:
            ranking.remove(self._dominant)
            ranking.insert(0, self._dominant)
        return ranking

    def _advance(self, now: float) -> None:
        """Close the intervals that ended by `now`; those without packets are silent."""
        if now < self._interval_end:
            return
        if self._interval_end == -math.inf:
            self._interval_end = now + INTERVAL
            return
        ended = 1 + math.floor((now - self._interval_end) / INTERVAL)
        # After WINDOW silent intervals nothing changes but the count.
        for _ in range(min(ended, WINDOW + 1)):
            self._close_interval()
        self._interval += ended - min(ended, WINDOW + 1)
        self._interval_end += ended * INTERVAL

    def _close_interval(self) -> None:
        self._interval += 1
        for speaker in self._speakers.values():
            speaker.close_interval()
        dominant = self._speakers.get(self._dominant) if self._dominant is not None else None
        dominant_score = dominant.window_score if dominant is not None else 0.0
        challenger: str | None = None
        challenger_score = 0.0
        for participant_id, speaker in self._speakers.items():
            if not speaker.sustained:
                continue
            score = speaker.window_score
            speaker.last_spoke = self._interval
            speaker.spoke_score = score
            if speaker is not dominant and score > challenger_score:
                challenger, challenger_score = participant_id, score
        if challenger is not None and challenger_score > LEAD_RATIO * dominant_score:
            self._dominant = challenger
