"""The systemd unit of docs/deploy.md: the file in deploy/ is the one the page shows,
systemd accepts every line of it, and its exact ExecStart line, with the page's
config, serves the web client and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import socket
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from confide.cli import check_config

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "confide.service"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
INSTALLED_VENV = "/opt/confide/.venv"
CONFIG_PATH = "/etc/confide/confide.toml"
SERVICE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8", "HOME": "/"}
"""About what systemd gives a DynamicUser= service: none of the test run's variables."""


def unit_settings(text: str) -> dict[str, str]:
    """The unit's `Key=value` lines (the last one wins), comments skipped."""
    settings = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    return settings


def doc_block(language: str, first_line: str) -> str:
    """The fenced block of docs/deploy.md in `language` that starts with `first_line`."""
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    for block in text.split(f"```{language}\n")[1:]:
        body = block.split("```", 1)[0]
        if body.startswith(first_line + "\n"):
            return body
    raise AssertionError(f"docs/deploy.md has no {language} block starting {first_line!r}")


def unit_for_this_checkout(text: str) -> str:
    """The unit with its program taken from this checkout's .venv; nothing else changed."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("ExecStart=")]
    assert len(starts) == 1
    line = lines[starts[0]]
    assert line.startswith(f"ExecStart={INSTALLED_VENV}/")
    lines[starts[0]] = line.replace(INSTALLED_VENV, str(ROOT / ".venv"), 1)
    return "".join(lines)


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def toml_line(key: str, value: Any) -> str:
    """One `key = value` line; the deploy config has only strings, numbers and booleans."""
    if isinstance(value, bool):
        return f"{key} = {'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"{key} = {value}"
    if isinstance(value, str):
        return f"{key} = {json.dumps(value)}"
    raise TypeError(f"{key}: no TOML writer for {type(value).__name__}")


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until_served(process: subprocess.Popen[bytes], url: str, log: Path) -> bytes:
    """Polls `url` until the server answers; fails unless that answer is 200, or if the
    process exits or 20 s pass first. Returns the body."""
    deadline = time.monotonic() + 20
    while True:
        try:
            status, body = get(url)
        except OSError:
            pass
        else:
            assert status == 200, f"{url}: HTTP {status}\n" + log.read_text(errors="replace")
            return body
        if process.poll() is not None:
            raise AssertionError(f"confide exited with {process.returncode}:\n"
                                 + log.read_text(errors="replace"))
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within 20 s:\n"
                                 + log.read_text(errors="replace"))
        time.sleep(0.05)


def stop_with_sigterm(process: subprocess.Popen[bytes], limit: float, log: Path) -> float:
    """SIGTERM, as `systemctl stop` sends it; the seconds until exit, which must be 0."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        status = process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"still running {limit} s after SIGTERM") from None
    seconds = time.monotonic() - started
    assert status == 0, f"exit status {status}:\n" + log.read_text(errors="replace")
    return seconds


def test_the_page_shows_the_unit_file_verbatim() -> None:
    assert f"```ini\n{UNIT.read_text(encoding='utf-8')}```" in (
        DEPLOY_DOC.read_text(encoding="utf-8"))


def test_the_unit_runs_confide_unprivileged_hardened_and_stops_gracefully() -> None:
    unit = unit_settings(UNIT.read_text(encoding="utf-8"))
    assert unit["ExecStart"] == f"{INSTALLED_VENV}/bin/confide serve --config {CONFIG_PATH}"
    assert unit["DynamicUser"] == "yes" and unit["StateDirectory"] == "confide"
    assert unit["CapabilityBoundingSet"] == "" and "AmbientCapabilities" not in unit
    for key in ("ProtectHome", "PrivateTmp", "PrivateDevices", "NoNewPrivileges",
                "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups",
                "RestrictNamespaces", "LockPersonality"):
        assert unit[key] == "yes", key
    assert unit["ProtectSystem"] == "strict"
    assert unit["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"
    assert unit["SystemCallFilter"] == "@system-service"
    assert unit["Restart"] == "on-failure"
    assert (unit["KillSignal"], unit["TimeoutStopSec"]) == ("SIGTERM", "10")


def test_the_documented_configs_keep_the_store_in_the_state_directory_and_check_out(
    tmp_path: Path,
) -> None:
    state_directory = Path("/var/lib") / unit_settings(UNIT.read_text())["StateDirectory"]
    for first_line in (f"# {CONFIG_PATH}", f"# {CONFIG_PATH}, serving TLS itself"):
        text = doc_block("toml", first_line)
        assert Path(tomllib.loads(text)["store"]).parent == state_directory
        path = tmp_path / "confide.toml"
        path.write_text(text)
        assert check_config(path) == 0, first_line


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_accepts_every_line_of_the_unit(tmp_path: Path) -> None:
    """verify exits 0 even for a key it does not know: it says so, naming the file."""
    assert (ROOT / ".venv" / "bin" / "confide").exists(), "run ./run test to make .venv"
    unit = tmp_path / "confide.service"
    unit.write_text(unit_for_this_checkout(UNIT.read_text(encoding="utf-8")))
    verified = subprocess.run(["systemd-analyze", "verify", str(unit)],
                              capture_output=True, text=True, timeout=60)
    complaints = [line for line in (verified.stdout + verified.stderr).splitlines()
                  if "confide.service" in line]
    assert verified.returncode == 0 and not complaints, verified.stdout + verified.stderr


def test_the_exact_execstart_line_serves_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    unit = unit_settings(UNIT.read_text(encoding="utf-8"))
    command = shlex.split(unit["ExecStart"])
    assert command[0].startswith(INSTALLED_VENV + "/") and command.count(CONFIG_PATH) == 1
    config = tomllib.loads(doc_block("toml", f"# {CONFIG_PATH}"))
    port, media_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    config |= {"host": "127.0.0.1", "public_ip": "127.0.0.1", "port": port,
               "media_port": media_port, "store": str(tmp_path / "meetings.db")}
    config_file = tmp_path / "confide.toml"
    config_file.write_text("".join(toml_line(k, v) + "\n" for k, v in config.items()))
    command = [str(config_file) if arg == CONFIG_PATH else arg for arg in command]
    command[0] = command[0].replace(INSTALLED_VENV, str(ROOT / ".venv"), 1)
    log = tmp_path / "confide.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                   cwd="/", env=SERVICE_ENV)
    try:
        base = f"http://127.0.0.1:{port}"
        static = ROOT / "src" / "confide" / "static"
        assert wait_until_served(process, base + "/", log) == (static / "index.html").read_bytes()
        assert get(base + "/static/app.js") == (200, (static / "app.js").read_bytes())
        seconds = stop_with_sigterm(process, float(unit["TimeoutStopSec"]), log)
        print(f"SIGTERM to exit: {seconds:.2f} s")
        assert (tmp_path / "meetings.db").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

