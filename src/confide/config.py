"""Server settings, from command-line flags."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    media_port: int = 8080
    """UDP port for every participant's media; may share the number with the TCP port."""
    public_ip: str = "127.0.0.1"
    """The address browsers are told to send media to (our one ICE candidate)."""
    max_participants: int = 100
    meeting_lifetime: float = 24 * 3600.0
    """Seconds after its last use that a meeting is forgotten."""
    media_timeout: float = 8.0
    """Seconds without media or ICE checks before a participant counts as gone."""
