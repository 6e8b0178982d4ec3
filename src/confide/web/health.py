"""/healthz, /readyz and the text of /metrics: what a supervisor, a load balancer
and an operator's Prometheus read. Counts and yes/no only: nothing of a person."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .. import __version__


@dataclass
class Readiness:
    """What /readyz checks besides the store, set as the app starts and stops."""

    media_bound: bool = False
    """The SFU's UDP socket is open: without it nobody would hear anyone."""
    stopping: bool = False
    """Shutdown has begun: a load balancer should send newcomers elsewhere."""


def readiness_checks(readiness: Readiness, store_reachable: bool | None) -> dict[str, bool]:
    """Each check by name; the store's only with --store."""
    checks = {"media_socket": readiness.media_bound, "accepting": not readiness.stopping}
    if store_reachable is not None:
        checks["store"] = store_reachable
    return checks


def readiness_text(checks: Mapping[str, bool]) -> str:
    lines = [f"{name} {'ok' if passed else 'failing'}" for name, passed in checks.items()]
    return ("ready" if all(checks.values()) else "not ready") + "\n" + "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Gauge:
    name: str
    help: str
    value: float


def metrics_text(
    gauges: list[Gauge],
    media_events: Mapping[str, int],
    signalling_events: Mapping[str, int],
) -> str:
    """Prometheus's text format: HELP and TYPE for every family, counters end in
    _total. docs/metrics.md says what each one and each event means."""
    lines = [
        "# HELP confide_build_info The running version of Confide.",
        "# TYPE confide_build_info gauge",
        f'confide_build_info{{version="{__version__}"}} 1',
    ]
    for gauge in gauges:
        lines += [f"# HELP {gauge.name} {gauge.help}", f"# TYPE {gauge.name} gauge",
                  f"{gauge.name} {gauge.value:g}"]
    families = [
        ("confide_media_events_total", "What the SFU did with media packets, by event.",
         media_events),
        ("confide_signalling_events_total",
         "What the signalling hub did or refused, by event.", signalling_events),
    ]
    for name, help_text, events in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        lines += [f'{name}{{event="{event}"}} {count}' for event, count in sorted(events.items())]
    return "\n".join(lines) + "\n"
