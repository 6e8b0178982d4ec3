"""Server settings, from command-line flags (docs/config.md describes each one)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

LogFormat = Literal["text", "json"]


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
    expiry_interval: float = 60.0
    """Seconds between sweeps that forget expired meetings."""
    media_timeout: float = 8.0
    """Seconds without media or ICE checks before the others see a participant as
    reconnecting."""
    media_grace: float = 30.0
    """Seconds without them before a participant counts as gone (and everyone rekeys)."""
    join_rate_per_address: float = 2.0
    join_burst_per_address: float = 60.0
    """Join attempts one address may make: a burst, then a rate per second. Generous,
    as a school or an office joins from behind one address."""
    join_rate_per_meeting: float = 5.0
    join_burst_per_meeting: float = 100.0
    create_rate_per_address: float = 0.2
    create_burst_per_address: float = 20.0
    """New meetings one address may create: a burst, then a rate per second."""
    sockets_per_address: int = 128
    """WebSockets one address may hold open at once (a class behind one NAT fits)."""
    tls_cert: Path | None = None
    """PEM certificate chain to serve HTTPS with; `tls_key` holds its private key."""
    tls_key: Path | None = None
    self_signed: bool = False
    """Serve HTTPS with a certificate made at startup and kept in memory (LAN trials)."""
    store: Path | None = None
    """SQLite file that keeps meetings across restarts; None keeps them in memory only."""
    turn_urls: tuple[str, ...] = ()
    """The operator's TURN servers, given to browsers in `welcome`."""
    turn_secret: str | None = None
    """coturn's `static-auth-secret`: signs short-lived TURN credentials."""
    metrics_listen: tuple[str, int] | None = None
    """Where to serve /metrics, apart from the public listener; None serves none."""
    log_level: str = "info"
    log_format: LogFormat = "text"
    log_addresses: bool = False
    """Put client IP addresses in the access log (off by default: docs/design.md,
    'What the server stores')."""

    @property
    def tls(self) -> bool:
        return self.self_signed or self.tls_cert is not None
