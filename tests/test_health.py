"""/healthz, /readyz and /metrics: what they answer, that they say nothing of a
person, and that docs/metrics.md names every figure the code counts."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from confide.config import Settings
from confide.e2ee.link import derive_join_key, encode_base64url, join_key_public
from confide.web.app import READINESS, STORE, _metrics, create_app, readyz

ROOT = Path(__file__).resolve().parent.parent
METRICS_DOC = (ROOT / "docs" / "metrics.md").read_text()
SAMPLE = re.compile(r'^(confide_[a-z_]+)(\{[a-z_]+="[^"\\]*"\})? -?[0-9.e+]+$')


async def test_healthz_answers_while_the_process_runs() -> None:
    async with TestClient(TestServer(create_app(Settings(media_port=0)))) as client:
        answer = await client.get("/healthz")
        assert (answer.status, await answer.text()) == (200, "ok\n")
        assert answer.headers["Cache-Control"] == "no-store"


async def test_readyz_is_ready_once_the_media_socket_is_bound() -> None:
    app = create_app(Settings(media_port=0))
    # Before startup: no media socket yet, so nobody could hear anyone.
    early = await readyz(make_mocked_request("GET", "/readyz", app=app))
    assert early.status == 503
    assert early.text == "not ready\nmedia_socket failing\naccepting ok\n"
    async with TestClient(TestServer(app)) as client:
        answer = await client.get("/readyz")
        assert (answer.status, await answer.text()) == (
            200, "ready\nmedia_socket ok\naccepting ok\n")
        assert (await client.get("/metrics")).status == 404  # never on the public listener


async def test_readyz_turns_away_newcomers_as_shutdown_begins() -> None:
    app = create_app(Settings(media_port=0))
    async with TestClient(TestServer(app)):
        await app.shutdown()  # what SIGTERM starts: the on_shutdown signal
        answer = await readyz(make_mocked_request("GET", "/readyz", app=app))
        assert answer.status == 503
        assert "accepting failing" in (answer.text or "")
        assert app[READINESS].stopping


async def test_readyz_checks_the_store(tmp_path: Path) -> None:
    path = tmp_path / "meetings.sqlite3"
    app = create_app(Settings(media_port=0, store=path))
    async with TestClient(TestServer(app)) as client:
        answer = await client.get("/readyz")
        assert (answer.status, await answer.text()) == (
            200, "ready\nmedia_socket ok\naccepting ok\nstore ok\n")
        path.unlink()  # what is written from now on would be lost at the next start
        answer = await client.get("/readyz")
        assert answer.status == 503
        assert "store failing" in await answer.text()
        app[STORE].close()
        assert "store failing" in await (await client.get("/readyz")).text()


def parse_metrics(text: str) -> dict[str, dict[str, Any]]:
    """Prometheus's text format, strictly: every sample under its family's HELP and TYPE."""
    families: dict[str, dict[str, Any]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("# HELP "):
            current = line.split()[2]
            assert current not in families, f"{current} twice"
            families[current] = {"help": line.split(" ", 3)[3], "samples": {}}
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name == current and kind in ("gauge", "counter")
            families[name]["type"] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample: {line!r}"
            assert match.group(1) == current, f"{line!r} outside its family"
            families[current]["samples"][match.group(2) or ""] = float(line.rpartition(" ")[2])
    return families


async def test_metrics_follow_prometheus_naming_and_hold_nothing_personal() -> None:
    app = create_app(Settings(media_port=0))
    async with TestClient(TestServer(app)) as client:
        meeting_id = (await (await client.post("/api/meetings")).json())["meeting_id"]
        join_key = join_key_public(derive_join_key(secrets.token_bytes(32), meeting_id))
        await client.put(f"/api/meetings/{meeting_id}/join-key",
                         json={"join_key": encode_base64url(join_key)})
        await client.get("/ws")  # not an upgrade: refused, and nothing counted of whom
        text = _metrics(app)
    families = parse_metrics(text)
    for name, family in families.items():
        assert family["type"] == ("counter" if name.endswith("_total") else "gauge"), name
        assert f"`{name}" in METRICS_DOC, f"{name} is not in docs/metrics.md"
    assert families["confide_meetings"]["samples"] == {"": 1.0}
    assert families["confide_ready"]["samples"] == {"": 1.0}
    assert meeting_id not in text and "127.0.0.1" not in text


def counted_events(source: str) -> set[str]:
    """Every counter name in the code: literals, and the fixed part of f-strings."""
    names = set(re.findall(r'counters\["([a-z_]+)"\]', source))
    names |= {f"{prefix}<" for prefix in re.findall(r'counters\[f"([a-z_]+)\{', source)}
    for a, b in re.findall(r'counters\["([a-z_]+)" if .+? else "([a-z_]+)"\]', source):
        names |= {a, b}
    return names


def test_every_counted_event_is_documented() -> None:
    source = "\n".join(path.read_text() for path in (ROOT / "src" / "confide").rglob("*.py"))
    events = counted_events(source)
    assert {"rtp_forwarded", "refused_<", "host_action_<", "media_back"} <= events
    missing = sorted(event for event in events if f"| `{event}" not in METRICS_DOC)
    assert not missing, f"counted but not in docs/metrics.md: {missing}"
