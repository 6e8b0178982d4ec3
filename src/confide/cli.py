"""`confide serve`: parse the command line and run the server."""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from .config import Settings
from .web.app import create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="confide", description="Confide video meetings")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the meeting server")
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
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--log-addresses", action="store_true",
        help="put client IP addresses in the access log (off: logs carry no addresses)",
    )
    args = parser.parse_args(argv)

    public_ip = args.public_ip or (args.host if args.host not in ("0.0.0.0", "::") else None)
    if public_ip is None:
        print("confide: listening on all addresses needs --public-ip, the address browsers "
              "can reach this machine at", file=sys.stderr)
        return 2
    settings = Settings(
        host=args.host,
        port=args.port,
        media_port=args.media_port if args.media_port is not None else args.port,
        public_ip=public_ip,
        max_participants=args.max_participants,
    )
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    shown_host = "localhost" if settings.host in ("127.0.0.1", "::1") else public_ip
    print(f"Confide is running: open http://{shown_host}:{settings.port}/ "
          f"(media on UDP {settings.public_ip}:{settings.media_port})", flush=True)
    # Without --log-addresses the access log has no client address (DESIGN.md section 4).
    access_log_format = '%a "%r" %s %b %Tfs' if args.log_addresses else '"%r" %s %b %Tfs'
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log_format=access_log_format,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
