"""The media benchmark runs end to end on its tiny shape: Confide and Debian's
Janus each pinned to a core, driven by the same generator, and the table, JSON and
PNG come out. (The real figures come from `./run bench`, never from the tests.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("janus") is None, reason="Debian's janus is not installed")
def test_tiny_benchmark_measures_both_servers(tmp_path: Path) -> None:
    out = tmp_path / "media"
    done = subprocess.run(
        [sys.executable, "-m", "bench.media", "--tiny", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["servers"] == ["confide", "janus"]
    by_server = results["shapes"]["3 all-to-all"]
    for server in ("confide", "janus"):
        figures = by_server[server]
        # 3 people, each receiving two senders: audio (50/s) and 1 Mbit/s video.
        assert figures["forwarded_per_second"] > 500, (server, figures)
        assert figures["loss"] < 0.01, (server, figures)
        assert figures["server_cpu"] > 0 and figures["server_rss_mb"] > 1, (server, figures)
        assert 0 < figures["delay_p50_ms"] <= figures["delay_p99_ms"] < 1000, (server, figures)
    assert "ratio" in done.stdout and "forwarded packets/s" in done.stdout
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
