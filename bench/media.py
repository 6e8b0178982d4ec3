"""The media-plane benchmark: Confide's SFU and Janus's VideoRoom, side by side,
each pinned to one core, under the same meeting shapes from the same generator.

    .venv/bin/python -m bench.media               # every shape, both servers
    .venv/bin/python -m bench.media --tiny        # a quick check that it all works

Shapes: 3 people all-to-all; 10 people all-to-all; a webinar of 1 sender and 50
receivers; and a ramp that adds receivers to one sender until more than 0.1 % of
packets are lost. Per shape and server: forwarded packets/s, server CPU seconds per
million forwarded packets, added delay p50/p99, loss and server RSS, and the ratio
Confide/Janus. Printed as a table, written as JSON and drawn as a PNG.

The generator runs on the other core. It reports its own CPU use and the datagrams
its sockets dropped, so a generator that cannot keep up shows as such rather than
as the server's loss.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import janus_server
from bench.loadgen.run import (
    LoadRun,
    Probe,
    Report,
    client_session,
    combine,
    driver_for,
    raise_file_limit,
)
from bench.proc import cpu_seconds, resident_bytes
from tests.e2e.server_process import free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
LOSS_LIMIT = 0.001


# --- Servers -----------------------------------------------------------------------------


def process_probe(pid: int) -> Probe:
    """CPU seconds (user + system, every thread) and resident bytes of one process."""
    return lambda: (cpu_seconds(pid), resident_bytes(pid))


@dataclass
class Running:
    name: str
    base_url: str
    pid: int
    media_host: str = "127.0.0.1"
    """The address the generator's peers bind to."""


def placement(cpu: int | None, realtime: bool) -> tuple[str, ...]:
    """The command that runs a server on its core: pinned with taskset and, if
    `realtime`, scheduled SCHED_FIFO, so that the machine's other processes (a
    shared machine has some) cannot hold it off its core for milliseconds at a time."""
    pinned = ("taskset", "-c", str(cpu)) if cpu is not None else ()
    return (*pinned, "chrt", "--fifo", "1") if realtime else pinned


def realtime_allowed() -> bool:
    try:
        subprocess.run(["chrt", "--fifo", "1", "true"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


@contextmanager
def confide_server(wrapper: tuple[str, ...]) -> Iterator[Running]:
    process, server = start_server(
        "bench-media-confide.log", "--max-participants", "5000",
        "--join-rate-per-address", "1000/100000", "--join-rate-per-meeting", "1000/100000",
        "--log-level", "warning", wrapper=wrapper)
    try:
        yield Running("confide", server.base_url, process.pid)
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def janus(wrapper: tuple[str, ...], folder: Path) -> Iterator[Running]:
    janus_server.ensure_installed()
    port = free_port(socket.SOCK_STREAM)
    rtp_start = 20000 + (os.getpid() % 200) * 100
    janus_server.write_config(folder, port, (rtp_start, rtp_start + 8000))
    server = janus_server.JanusServer(folder, port)
    server.start(wrapper)
    try:
        yield Running("janus", server.base_url, server.pid, server.media_host)
    finally:
        server.stop()


# --- Shapes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    name: str
    senders: int
    receivers: int
    """Receive-only participants besides the senders (who receive each other)."""
    measuring: int | None = None
    """Receive-only participants that decrypt and time every packet; the rest count."""
    meetings: int = 1
    """Meetings of this shape running at once, measured together."""
    measuring_senders: int | None = None
    """Senders that also decrypt and time what they receive; the rest only count."""


SHAPES = [
    Shape("3 all-to-all", 3, 0),
    Shape("10 all-to-all", 10, 0),
    Shape("webinar 1→50", 1, 50),
    # About half of what Janus carries on one core, as many small meetings: the
    # added delay there is the delay people feel on a server that is not full.
    # Two people per meeting time every packet, the rest count: decrypting all of
    # it would keep the generator's own core busy enough to bunch its sends.
    Shape("5 meetings of 10", 10, 0, meetings=5, measuring_senders=2),
]
TINY = [Shape("3 all-to-all", 3, 0)]


async def run_shape(server: Running, shape: Shape, seconds: float, video_kbps: int) -> Report:
    async with client_session() as http, contextlib.AsyncExitStack() as stack:
        runs = []
        for index in range(shape.meetings):
            driver = driver_for(server.name, http, server.base_url, server.media_host)
            probe = process_probe(server.pid) if index == 0 else None
            run = await stack.enter_async_context(LoadRun(driver, video_kbps, probe))
            timing = shape.senders if shape.measuring_senders is None else shape.measuring_senders
            more = shape.senders - timing
            await run.add(timing, sends=True, subscribe=more == 0)
            if more:
                await run.add(more, sends=True, measure=False)
            measuring = shape.receivers if shape.measuring is None else shape.measuring
            if shape.receivers:
                await run.add(measuring, sends=False)
                await run.add(shape.receivers - measuring, sends=False, measure=False)
            runs.append(run)
        return combine(await asyncio.gather(*(run.window(seconds) for run in runs)))


async def run_ramp(server: Running, seconds: float, video_kbps: int, first: int, step: int,
                   most: int, say: Callable[[str], None]) -> list[Report]:
    """One sender; receivers added `step` at a time until loss passes the limit."""
    reports: list[Report] = []
    async with client_session() as http:
        driver = driver_for(server.name, http, server.base_url, server.media_host)
        async with LoadRun(driver, video_kbps, process_probe(server.pid)) as run:
            await run.add(1, sends=True)
            await run.add(min(4, first), sends=False)
            total = min(4, first)
            target = first
            while target <= most:
                await run.add(target - total, sends=False, measure=False, batch=50)
                total = target
                report = await run.window(seconds)
                reports.append(report)
                say(f"  {server.name} ramp: {total} receivers, "
                    f"{report.forwarded_per_second:,.0f} packets/s, loss {report.total.loss:.3%}, "
                    f"p99 {report.total.delay_p99 * 1000:.2f} ms, "
                    f"server CPU {(report.server_cpu_seconds or 0) / seconds:.0%}, "
                    f"generator CPU {report.generator_cpu:.0%}, "
                    f"generator drops {report.generator_drops}")
                if report.total.loss > LOSS_LIMIT:
                    break
                target += step
    return reports


# --- Output ------------------------------------------------------------------------------


def summary(report: Report) -> dict[str, Any]:
    return {
        "forwarded_per_second": report.forwarded_per_second,
        "cpu_seconds_per_million": report.cpu_per_million,
        "server_cpu": (report.server_cpu_seconds or 0) / report.seconds,
        "delay_p50_ms": report.total.delay_p50 * 1000,
        "delay_p99_ms": report.total.delay_p99 * 1000,
        "loss": report.total.loss,
        "server_rss_mb": (report.server_rss or 0) / 2**20,
        "generator_cpu": report.generator_cpu,
        "generator_drops": report.generator_drops,
        "receivers": sum(1 for r in report.receivers.values() if r.expected > 0),
        "nack": report.feedback.nack, "pli": report.feedback.pli,
    }


ROWS = [
    ("forwarded packets/s", "forwarded_per_second", "{:,.0f}"),
    ("server CPU (one core)", "server_cpu", "{:.1%}"),
    ("CPU s per million packets", "cpu_seconds_per_million", "{:.2f}"),
    ("added delay p50 ms", "delay_p50_ms", "{:.2f}"),
    ("added delay p99 ms", "delay_p99_ms", "{:.2f}"),
    ("loss", "loss", "{:.3%}"),
    ("server RSS MB", "server_rss_mb", "{:.1f}"),
    ("generator CPU", "generator_cpu", "{:.0%}"),
    ("generator socket drops", "generator_drops", "{:,}"),
]


def ramp_capacity(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last ramp step within the loss limit."""
    good = [s for s in steps if s["loss"] <= LOSS_LIMIT]
    return good[-1] if good else None


def format_table(results: dict[str, Any]) -> str:
    machine = results.get("machine", {})
    priority = "SCHED_FIFO" if machine.get("server_realtime") else "normal priority"
    lines: list[str] = [f"\neach server on core {machine.get('server_cpu')}, {priority}; "
                        f"generator on core {machine.get('generator_cpu')}"]
    servers = results["servers"]
    for shape, by_server in results["shapes"].items():
        lines.append(f"\n{shape}")
        head = f"  {'':<28}" + "".join(f"{s:>14}" for s in servers)
        lines.append(head + (f"{'ratio':>10}" if len(servers) == 2 else ""))
        for label, key, fmt in ROWS:
            values = [by_server.get(s, {}).get(key) for s in servers]
            cells = "".join(f"{(fmt.format(v) if v is not None else '-'):>14}" for v in values)
            ratio = ""
            if len(values) == 2 and values[0] is not None and values[1]:
                ratio = f"{values[0] / values[1]:>10.2f}"
            lines.append(f"  {label:<28}{cells}{ratio}")
    if results.get("ramp"):
        lines.append(f"\nramp, one sender at {results['video_kbps']} kbit/s video + audio, "
                     f"receivers added until loss > {LOSS_LIMIT:.1%}")
        best = {s: ramp_capacity(results["ramp"].get(s, [])) for s in servers}
        for server in servers:
            top = best[server]
            if top is None:
                lines.append(f"  {server:<10} over the loss limit from the first step")
                continue
            lines.append(
                f"  {server:<10} {top['receivers']:>5} receivers, "
                f"{top['forwarded_per_second']:>9,.0f} packets/s at {top['server_cpu']:.0%} CPU, "
                f"p99 {top['delay_p99_ms']:.2f} ms, loss {top['loss']:.3%}")
        if len(servers) == 2 and all(best.values()):
            a, b = (best[s] for s in servers)
            assert a is not None and b is not None
            lines.append(f"  ratio      {a['receivers'] / b['receivers']:.2f} receivers, "
                         f"{a['forwarded_per_second'] / b['forwarded_per_second']:.2f} packets/s")
    return "\n".join(lines)


def draw_chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = results["servers"]
    shapes = list(results["shapes"])
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    width = 0.8 / max(1, len(servers))
    colours = {"confide": "tab:blue", "janus": "tab:orange"}
    for i, server in enumerate(servers):
        xs = [j + i * width for j in range(len(shapes))]
        colour = colours.get(server)
        axes[0].bar(xs, [results["shapes"][s].get(server, {}).get("cpu_seconds_per_million") or 0
                         for s in shapes], width, label=server, color=colour)
        axes[1].bar(xs, [results["shapes"][s].get(server, {}).get("delay_p99_ms") or 0
                         for s in shapes], width, label=server, color=colour)
    axes[1].set_yscale("log")
    for axis, title in ((axes[0], "server CPU s per million forwarded packets (lower is better)"),
                        (axes[1], "added delay p99, ms (log scale)")):
        axis.set_xticks([j + width * (len(servers) - 1) / 2 for j in range(len(shapes))])
        axis.set_xticklabels(shapes, fontsize=8)
        axis.set_title(title, fontsize=9)
        axis.legend()
    for server in servers:
        steps = results.get("ramp", {}).get(server, [])
        axes[2].plot([s["receivers"] for s in steps], [s["server_cpu"] * 100 for s in steps],
                     marker="o", label=f"{server} CPU %", color=colours.get(server))
        axes[2].plot([s["receivers"] for s in steps], [s["loss"] * 100 for s in steps],
                     linestyle="--", label=f"{server} loss %", color=colours.get(server))
    axes[2].set_title("ramp: one sender, receivers added", fontsize=9)
    axes[2].set_xlabel("receivers")
    axes[2].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# --- Main --------------------------------------------------------------------------------


def pin_generator(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


async def _run_all(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    shapes = TINY if args.tiny else [s for s in SHAPES if not args.only or s.name in args.only]
    results: dict[str, Any] = {
        "servers": args.servers, "seconds": args.seconds, "video_kbps": args.video_kbps,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "server_cpu": args.server_cpu, "generator_cpu": args.generator_cpu,
                    "server_realtime": args.realtime},
        "shapes": {shape.name: {} for shape in shapes}, "ramp": {},
    }
    work = Path(tempfile.mkdtemp(prefix="confide-bench-"))
    wrapper = placement(args.server_cpu, args.realtime)
    for name in args.servers:
        with (confide_server(wrapper) if name == "confide"
              else janus(wrapper, work / "janus")) as server:
            for shape in shapes:
                say(f"{name}: {shape.name}")
                report = await run_shape(server, shape, args.seconds, args.video_kbps)
                results["shapes"][shape.name][name] = summary(report)
            if args.ramp_most > 0:
                say(f"{name}: ramp")
                steps = await run_ramp(server, args.seconds, args.video_kbps, args.ramp_first,
                                       args.ramp_step, args.ramp_most, say)
                results["ramp"][name] = [summary(r) for r in steps]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="confide,janus",
                        type=lambda text: text.split(","))
    parser.add_argument("--seconds", type=float, default=8.0, help="per measured window")
    parser.add_argument("--video-kbps", type=int, default=1000)
    parser.add_argument("--server-cpu", type=int, default=1, help="core the server is pinned to")
    parser.add_argument("--generator-cpu", type=int, default=0)
    parser.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=True,
                        help="run each server SCHED_FIFO on its core, where allowed (default)")
    parser.add_argument("--ramp-first", type=int, default=100)
    parser.add_argument("--ramp-step", type=int, default=100)
    parser.add_argument("--ramp-most", type=int, default=2000,
                        help="stop the ramp here even without loss (0: no ramp)")
    parser.add_argument("--only", action="append", default=[], metavar="SHAPE",
                        help="run only this shape, e.g. '10 all-to-all' (repeatable)")
    parser.add_argument("--tiny", action="store_true",
                        help="3 people for 2 s and no ramp: shows that it works")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "media")
    args = parser.parse_args(argv)
    if args.tiny:
        args.seconds, args.ramp_most = min(args.seconds, 2.0), 0
    if (os.cpu_count() or 1) < 2:
        args.server_cpu = args.generator_cpu = None
    if args.realtime and not realtime_allowed():
        print("servers run at normal priority: chrt --fifo is not allowed here", flush=True)
        args.realtime = False
    raise_file_limit()
    pin_generator(args.generator_cpu)
    run: Callable[[Awaitable[dict[str, Any]]], dict[str, Any]] = asyncio.run
    try:
        import uvloop
        run = uvloop.run
    except ImportError:
        pass
    results = run(_run_all(args, lambda line: print(line, flush=True)))
    table = format_table(results)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    args.out.with_suffix(".txt").write_text(table.lstrip() + "\n")
    draw_chart(results, args.out.with_suffix(".png"))
    print(f"\nwritten: {args.out.with_suffix('.json')}, .txt and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
