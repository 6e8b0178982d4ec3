"""Release artefacts: `python -m build` makes an sdist and, from that sdist, a wheel
holding the web client and the compiled fan-out; a fresh virtual environment that
installs the wheel runs `confide serve` from it. Built once for the whole module."""

from __future__ import annotations

import importlib.machinery
import shutil
import socket
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
from tests.test_deploy import SERVICE_ENV, free_port, get, stop_with_sigterm, wait_until_served

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "src" / "confide" / "static"
WEB_CLIENT = sorted(path.relative_to(STATIC).as_posix()
                    for path in STATIC.rglob("*") if path.is_file())


def fan_out_extension(names: list[str], prefix: str) -> list[str]:
    """The compiled `confide.sfu._fanout` among `names`, under `prefix`."""
    return [name for name in names if name.startswith(f"{prefix}confide/sfu/_fanout")
            and name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build` of a copy of the working tree (git's tracked and new files, none
    it ignores: no .venv, no .so built in place), without build isolation, so offline:
    the sdist first, then the wheel built from the unpacked sdist."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    source = tmp_path_factory.mktemp("source")
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # not one deleted but not yet committed
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    outdir = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir), str(source)],
        capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return outdir


def only(directory: Path, pattern: str) -> Path:
    found = list(directory.glob(pattern))
    assert len(found) == 1, f"{pattern} in {directory}: {found}"
    return found[0]


def test_the_sdist_has_the_sources_the_wheel_is_built_from(dist: Path) -> None:
    with tarfile.open(only(dist, "confide-*.tar.gz")) as sdist:
        names = [name.split("/", 1)[1] for name in sdist.getnames() if "/" in name]
    for needed in ("pyproject.toml", "setup.py", "src/confide/sfu/_fanout.c",
                   "src/confide/cli.py", *(f"src/confide/static/{f}" for f in WEB_CLIENT)):
        assert needed in names, needed
    assert not fan_out_extension(names, "src/"), "a built .so slipped into the sdist"


def test_the_wheel_holds_the_web_client_and_the_compiled_fan_out(dist: Path) -> None:
    with zipfile.ZipFile(only(dist, "confide-*.whl")) as wheel:
        names = wheel.namelist()
    assert {"index.html", "meeting.html", "app.js"} <= set(WEB_CLIENT)
    missing = [f for f in WEB_CLIENT if f"confide/static/{f}" not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert len(fan_out_extension(names, "")) == 1, "no compiled _fanout in the wheel"
    assert "confide/cli.py" in names


def test_confide_serve_runs_from_a_fresh_venv_with_the_wheel(
    dist: Path, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Installed without the network: the wheel alone, and the pinned dependencies
    from this .venv through a .pth file (whose editable confide stays out of sight:
    a path in a .pth is not a site directory, so its own .pth files are not read)."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--quiet", "--no-index", "--no-deps", str(only(dist, "confide-*.whl"))],
                   check=True, timeout=120)
    site_packages = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    ours = dict.fromkeys(sysconfig.get_paths()[kind] for kind in ("purelib", "platlib"))
    (site_packages / "dependencies-from-the-test-venv.pth").write_text("\n".join(ours) + "\n")
    elsewhere = tmp_path_factory.mktemp("elsewhere")  # not the checkout, not its src/
    imported = subprocess.run(
        [str(python), "-c", "import confide, confide.sfu._fanout as c, aiohttp\n"
         "print(confide.__file__); print(c.__file__)"],
        capture_output=True, text=True, check=True, cwd=elsewhere, env=SERVICE_ENV)
    for module_file in imported.stdout.split():
        assert Path(module_file).is_relative_to(venv), imported.stdout

    port, media_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    log = elsewhere / "confide.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [str(venv / "bin" / "confide"), "serve", "--port", str(port),
             "--media-port", str(media_port)],
            stdout=output, stderr=subprocess.STDOUT, cwd=elsewhere, env=SERVICE_ENV)
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_until_served(process, base + "/", log) == (STATIC / "index.html").read_bytes()
        assert get(base + "/static/app.js") == (200, (STATIC / "app.js").read_bytes())
        seconds = stop_with_sigterm(process, 10.0, log)
        print(f"SIGTERM to exit: {seconds:.2f} s")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
