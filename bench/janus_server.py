"""Debian's Janus (package `janus`, 1.1.x) as the reference SFU of the media benchmark.

A throwaway config set keeps Janus as close to Confide's SFU as it goes: only the
VideoRoom plugin and the plain HTTP REST transport on 127.0.0.1, no event handlers or
loggers, quiet logs, a fixed RTP port range, and one shared media loop.

Janus cannot offer 127.0.0.1: its ICE setup skips IFF_LOOPBACK interfaces, and
libnice's own fallback does too. Its one host candidate is therefore `ice_address()`
(the machine's outward IPv4 address), and libnice pins that socket's unicast sends to
its interface (IP_UNICAST_IF), so replies to a peer bound to 127.0.0.1 are lost. Peers
must bind to `ice_address()` as well; datagrams between local addresses still never
leave the kernel's loopback path, as with Confide on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

JANUS = Path("/usr/bin/janus")
LIBRARY = Path("/usr/lib/x86_64-linux-gnu/janus")
KEPT_PLUGIN = "libjanus_videoroom.so"
KEPT_TRANSPORT = "libjanus_http.so"
LOG_NAME = "janus.log"
SESSION_TIMEOUT = 3600
"""Seconds without any request before Janus drops a session; an hour covers a benchmark
run without keepalives (an HTTP long poll also counts as one)."""
EVENT_LOOPS = 1
"""Shared media loops for all handles. Janus's default (0) is one loop thread per
handle; one shared loop is the fair match for a single-threaded SFU on one core."""


def ensure_installed() -> None:
    """Install Debian's Janus if it is missing; refresh the package lists only when the
    first attempt fails, since an update is slow and usually unnecessary."""
    if JANUS.exists():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "janus"]
    if subprocess.run(install, env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(install, env=env, check=True)


def _disabled(folder: Path, kept: str) -> str:
    """Every module in `folder` but `kept`, as Janus's comma-separated `disable` list:
    Janus loads all it finds unless told not to."""
    names = sorted(p.name for p in folder.glob("libjanus_*.so") if p.name != kept)
    return ",".join(names)


def ice_address() -> str:
    """The one host address Janus gathers (enforced in the config) and peers must bind
    to: the one the kernel would use for outside traffic, since Janus cannot offer
    127.0.0.1. A machine with no route out gets 127.0.0.1, on which Janus gathers nothing."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: it only picks a route
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def write_config(
    folder: Path,
    http_port: int,
    rtp_ports: tuple[int, int],
    *,
    event_loops: int = EVENT_LOOPS,
    session_timeout: int = SESSION_TIMEOUT,
) -> Path:
    """Write janus.jcfg and the HTTP transport and VideoRoom configs into `folder` and
    return it, ready for `janus -F folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    plugins, transports = LIBRARY / "plugins", LIBRARY / "transports"
    (folder / "janus.jcfg").write_text(f"""general: {{
	configs_folder = "{folder}"
	plugins_folder = "{plugins}"
	transports_folder = "{transports}"
	events_folder = "{LIBRARY / "events"}"
	loggers_folder = "{LIBRARY / "loggers"}"
	log_to_stdout = true
	debug_level = 3
	debug_colors = false
	debug_timestamps = false
	session_timeout = {session_timeout}
	event_loops = {event_loops}
}}
certificates: {{
}}
media: {{
	ipv6 = false
	rtp_port_range = "{rtp_ports[0]}-{rtp_ports[1]}"
	nack_optimizations = false
}}
nat: {{
	nice_debug = false
	full_trickle = false
	ice_lite = false
	ice_tcp = false
	ignore_mdns = true
	ice_enforce_list = "{ice_address()}"
}}
plugins: {{
	disable = "{_disabled(plugins, KEPT_PLUGIN)}"
}}
transports: {{
	disable = "{_disabled(transports, KEPT_TRANSPORT)}"
}}
loggers: {{
	disable = "{_disabled(LIBRARY / "loggers", "")}"
}}
events: {{
	broadcast = false
}}
""")
    (folder / "janus.transport.http.jcfg").write_text(f"""general: {{
	json = "plain"
	base_path = "/janus"
	http = true
	port = {http_port}
	ip = "127.0.0.1"
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
""")
    (folder / "janus.plugin.videoroom.jcfg").write_text("""general: {
	events = false
}
""")
    return folder


class JanusServer:
    """One Janus process on a config folder from `write_config`."""

    def __init__(self, folder: Path, http_port: int) -> None:
        self.folder = folder
        self.http_port = http_port
        self.base_url = f"http://127.0.0.1:{http_port}/janus"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """Janus's own pid: taskset and chrt exec Janus, so the child keeps its pid."""
        if self.process is None:
            raise RuntimeError("Janus is not running")
        return self.process.pid

    @property
    def media_host(self) -> str:
        """Where Janus's candidates point, and so where peers must bind."""
        return ice_address()

    @property
    def log(self) -> Path:
        return self.folder / LOG_NAME

    def start(self, wrapper: tuple[str, ...] = (), timeout: float = 20.0) -> None:
        """Launch Janus behind `wrapper` (e.g. `taskset -c 1`, which execs it) and
        return once its REST API answers."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("Janus is already running")
        command = [*wrapper, str(JANUS), "-F", str(self.folder), "--disable-colors"]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.folder,
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"Janus exited ({self.process.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"Janus did not answer in {timeout} s:\n{self.tail()}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/info", timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def tail(self, lines: int = 30) -> str:
        """The end of Janus's log, for error messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if Janus has not exited within 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> JanusServer:
        if self.process is None:
            self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
