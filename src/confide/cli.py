"""`confide serve`: parse the command line and run the server. Every flag is
described in docs/config.md."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import re
import ssl
import sys
from pathlib import Path

from aiohttp import web

from .config import Settings
from .config_file import ConfigError, read_config
from .web import tls
from .web.app import create_app

logger = logging.getLogger("confide")

TURN_SECRET_VARIABLE = "CONFIDE_TURN_SECRET"
"""The environment variable a TURN secret may come from."""
KEY_VALUE = re.compile(r"(?<!\S)([a-z_][a-z0-9_]*)=(\S+)")
"""The `key=value` pairs our log messages carry (meeting ids, counts, reasons)."""
RESERVED_LOG_FIELDS = frozenset({"time", "level", "logger", "message", "exception"})


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the message's
    `key=value` pairs as fields of their own (numbers as numbers)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for key, value in KEY_VALUE.findall(message):
            if key not in RESERVED_LOG_FIELDS:
                entry.setdefault(key, int(value) if value.isdigit() else value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class HideClientAddresses(logging.Filter):
    """aiohttp names the client's address when it refuses a malformed request; without
    --log-addresses that address is left out, as in the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("aiohttp") and record.msg == "Error handling request from %s":
            record.args = ("a client (address not logged)",)
        return True


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _turn_url(text: str) -> str:
    if not text.startswith(("turn:", "turns:")) or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError("must be a turn: or turns: URL, e.g. "
                                         "turn:turn.example.org:3478?transport=udp")
    return text


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _join_rate(text: str) -> tuple[float, float]:
    rate, _, burst = text.partition("/")
    try:
        values = float(rate), float(burst)
    except ValueError:
        values = (0.0, 0.0)
    if not (values[0] > 0 and values[1] >= 1):
        raise argparse.ArgumentTypeError("must be RATE/BURST, e.g. 2/60: 2 joins a second "
                                         "once a burst of 60 is used up")
    return values


def build_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The `confide` parser, and its `serve` command's (whose flags a config file sets)."""
    parser = argparse.ArgumentParser(prog="confide", description="Confide video meetings")
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config", help="check a config file")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="read a config file as `serve` would, "
                                       "and name the line of anything wrong")
    check.add_argument("file", type=Path)
    serve = commands.add_parser("serve", help="run the meeting server")
    serve.add_argument(
        "--config", type=Path, default=None, metavar="FILE",
        help="read settings from this TOML file (keys as the flags below, without the"
        " dashes); flags given here win (docs/config.md)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="TCP port for the web client")
    serve.add_argument(
        "--media-port", type=int, default=None,
        help="UDP port for all participants' media (default: the same number as --port)",
    )
    serve.add_argument(
        "--public-ip", default=None,
        help="address browsers send media to (default: --host, or 127.0.0.1 when it is 0.0.0.0)",
    )
    serve.add_argument("--max-participants", type=int, default=100)
    serve.add_argument(
        "--join-rate-per-address", type=_join_rate, metavar="RATE/BURST",
        default=(Settings.join_rate_per_address, Settings.join_burst_per_address),
        help="joins one address may make: RATE a second once a BURST is used up (default: 2/60)",
    )
    serve.add_argument(
        "--join-rate-per-meeting", type=_join_rate, metavar="RATE/BURST",
        default=(Settings.join_rate_per_meeting, Settings.join_burst_per_meeting),
        help="joins one meeting takes: RATE a second once a BURST is used up (default: 5/100)",
    )
    serve.add_argument(
        "--create-rate-per-address", type=_join_rate, metavar="RATE/BURST",
        default=(Settings.create_rate_per_address, Settings.create_burst_per_address),
        help="meetings one address may create: RATE a second once a BURST is used up "
        "(default: 0.2/20)",
    )
    serve.add_argument(
        "--sockets-per-address", type=int, default=Settings.sockets_per_address, metavar="N",
        help="WebSockets one address may hold open at once (default: 128)",
    )
    serve.add_argument(
        "--metrics-listen", type=_host_port, default=None, metavar="HOST:PORT",
        help="serve /metrics on this address only, e.g. 127.0.0.1:9100 (default: nowhere)",
    )
    serve.add_argument(
        "--tls-cert", type=Path, default=None, metavar="FILE",
        help="serve HTTPS with this PEM certificate chain (with --tls-key)",
    )
    serve.add_argument(
        "--tls-key", type=Path, default=None, metavar="FILE",
        help="the PEM private key of --tls-cert",
    )
    serve.add_argument(
        "--self-signed", action="store_true",
        help="serve HTTPS with a certificate made at startup, for trying it on a LAN",
    )
    serve.add_argument(
        "--meeting-lifetime", type=_positive_seconds, default=Settings.meeting_lifetime,
        metavar="SECONDS", help="forget a meeting this long after its last use (default: a day)",
    )
    serve.add_argument(
        "--media-grace", type=_positive_seconds, default=Settings.media_grace,
        metavar="SECONDS", help="keep a participant whose media stopped this long, shown as"
        " reconnecting, before they count as gone (default: 30)",
    )
    serve.add_argument(
        "--expiry-interval", type=_positive_seconds, default=Settings.expiry_interval,
        metavar="SECONDS", help="how often to look for expired meetings (default: 60)",
    )
    serve.add_argument(
        "--store", type=Path, default=None, metavar="PATH",
        help="SQLite file that keeps meetings across restarts (default: memory only)",
    )
    serve.add_argument(
        "--turn-url", type=_turn_url, action="append", default=[], metavar="URL",
        help="your TURN server, e.g. turn:turn.example.org:3478?transport=udp (repeatable)",
    )
    serve.add_argument(
        "--turn-secret", default=None, metavar="SECRET",
        help="the TURN server's static-auth-secret (coturn use-auth-secret); better from"
        f" --turn-secret-file or ${TURN_SECRET_VARIABLE}, which `ps` does not show",
    )
    serve.add_argument(
        "--turn-secret-file", type=Path, default=None, metavar="FILE",
        help="read the TURN secret from this file (its first line)",
    )
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--log-format", choices=["text", "json"], default="text",
        help="text, or one JSON object per line",
    )
    serve.add_argument(
        "--log-addresses", action="store_true",
        help="put client IP addresses in the access log (off: logs carry no addresses)",
    )
    return parser, serve


def _turn_secret(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str | None:
    """From the flag, a file, or the environment: a secret on the command line is seen
    by anyone who can run `ps` on the machine."""
    given = [name for name, present in (
        ("--turn-secret", args.turn_secret is not None),
        ("--turn-secret-file", args.turn_secret_file is not None),
        (f"${TURN_SECRET_VARIABLE}", TURN_SECRET_VARIABLE in os.environ)) if present]
    if len(given) > 1:
        parser.error(f"the TURN secret comes from one place, not {' and '.join(given)}")
    if args.turn_secret_file is not None:
        try:
            lines = args.turn_secret_file.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            parser.error(f"--turn-secret-file: {error}")
        if not lines or not lines[0].strip():
            parser.error(f"--turn-secret-file: {args.turn_secret_file} is empty")
        return str(lines[0].strip())
    secret = args.turn_secret or os.environ.get(TURN_SECRET_VARIABLE)
    return str(secret) if secret else None


def check_config(path: Path) -> int:
    """`confide config check FILE`: 0 and "ok", or 1 and what is wrong, where."""
    _, serve = build_parser()
    try:
        read_config(path, serve)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{path}: ok")
    return 0


def parse_settings(argv: list[str] | None = None) -> Settings:
    """The settings for `confide serve ARGS`; a bad combination exits with status 2."""
    parser, serve = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        parser.error("settings are for `confide serve`")
    if args.config is not None:
        # The file's values become the defaults, so that flags given now win.
        try:
            serve.set_defaults(**read_config(args.config, serve))
        except ConfigError as error:
            parser.error(str(error))
        args = parser.parse_args(argv)
    turn_secret = _turn_secret(args, parser)
    public_ip = args.public_ip or (args.host if args.host not in ("0.0.0.0", "::") else None)
    if public_ip is None:
        parser.error("listening on all addresses needs --public-ip, the address browsers "
                     "can reach this machine at")
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if args.self_signed and args.tls_cert is not None:
        parser.error("--self-signed or --tls-cert/--tls-key, not both")
    if bool(args.turn_url) != (turn_secret is not None):
        parser.error("--turn-url and a TURN secret go together")
    if args.sockets_per_address < 1:
        parser.error("--sockets-per-address must be at least 1")
    if args.store is not None and not args.store.parent.is_dir():
        parser.error(f"--store: no directory {args.store.parent}")
    return Settings(
        host=args.host,
        port=args.port,
        media_port=args.media_port if args.media_port is not None else args.port,
        public_ip=public_ip,
        max_participants=args.max_participants,
        join_rate_per_address=args.join_rate_per_address[0],
        join_burst_per_address=args.join_rate_per_address[1],
        join_rate_per_meeting=args.join_rate_per_meeting[0],
        join_burst_per_meeting=args.join_rate_per_meeting[1],
        create_rate_per_address=args.create_rate_per_address[0],
        create_burst_per_address=args.create_rate_per_address[1],
        sockets_per_address=args.sockets_per_address,
        metrics_listen=args.metrics_listen,
        meeting_lifetime=args.meeting_lifetime,
        media_grace=args.media_grace,
        expiry_interval=args.expiry_interval,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        self_signed=args.self_signed,
        store=args.store,
        turn_urls=tuple(args.turn_url),
        turn_secret=turn_secret,
        log_level=args.log_level,
        log_format=args.log_format,
        log_addresses=args.log_addresses,
    )


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    if not settings.log_addresses:
        handler.addFilter(HideClientAddresses())
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])


SCRUBBING_ALLOCATOR = {"PYTHONMALLOC": "malloc", "MALLOC_PERTURB_": "165"}
"""Python's objects from glibc's malloc, which fills freed memory with 0xa5: a copy
of the server's memory does not show a departed participant's address (or anything
else) in memory that was freed but not yet reused. Costs nothing measurable on the
media path, which barely allocates."""


def run_with_scrubbing_allocator() -> None:
    """Starts this same command again with SCRUBBING_ALLOCATOR, which Python reads
    only at startup; the process id stays the same."""
    if all(os.environ.get(name) == value for name, value in SCRUBBING_ALLOCATOR.items()):
        return
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]],
              {**os.environ, **SCRUBBING_ALLOCATOR})


def main(argv: list[str] | None = None) -> int:
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    if args.command == "config":
        return check_config(args.file)
    settings = parse_settings(argv)
    if argv is None:
        run_with_scrubbing_allocator()
    configure_logging(settings)

    ssl_context: ssl.SSLContext | None = None
    certificate_fingerprint = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        try:
            ssl_context = tls.context_from_files(settings.tls_cert, settings.tls_key)
        except (OSError, ssl.SSLError) as error:
            print(f"confide: cannot use --tls-cert/--tls-key: {error}", file=sys.stderr)
            return 2
    elif settings.self_signed:
        now = datetime.datetime.now(datetime.UTC)
        self_signed = tls.make_self_signed([settings.public_ip, settings.host], now)
        ssl_context = tls.context_from_self_signed(self_signed)
        certificate_fingerprint = self_signed.fingerprint

    scheme = "https" if settings.tls else "http"
    shown_host = "localhost" if settings.host in ("127.0.0.1", "::1") else settings.public_ip
    url = f"{scheme}://{shown_host}:{settings.port}/"
    if settings.log_format == "json":
        logger.info("running url=%s media=%s:%d", url, settings.public_ip, settings.media_port)
        if certificate_fingerprint:
            logger.info("self-signed certificate sha256=%s", certificate_fingerprint)
    else:
        print(f"Confide is running: open {url} "
              f"(media on UDP {settings.public_ip}:{settings.media_port})", flush=True)
        if certificate_fingerprint:
            print(f"Self-signed certificate, SHA-256 fingerprint {certificate_fingerprint}\n"
                  "Accept the browser's warning only if its certificate page shows this "
                  "fingerprint.", flush=True)
    # Without --log-addresses the access log has no client address
    # (docs/design.md, 'What the server stores').
    access_log_format = '%a "%r" %s %b %Tfs' if settings.log_addresses else '"%r" %s %b %Tfs'
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ssl_context=ssl_context,
        print=None,
        access_log_format=access_log_format,
        loop=event_loop(),
        # Every socket was closed on shutdown; nothing is worth waiting longer for.
        shutdown_timeout=1.0,
    )
    return 0


def event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where installed: it takes UDP datagrams off the socket several times
    faster than asyncio's selector loop. CONFIDE_PURE_PYTHON=1 keeps the default."""
    if os.environ.get("CONFIDE_PURE_PYTHON") != "1":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


if __name__ == "__main__":
    sys.exit(main())
