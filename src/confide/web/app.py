"""The aiohttp application: pages, the meeting API, the WebSocket, and the SFU's
UDP socket, opened and closed with the app."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from ..config import Settings
from ..rooms.meeting import Directory, MeetingError, is_meeting_id
from ..sfu.sfu import Sfu
from ..sfu.transport import open_media_socket, run_timer
from ..signalling.hub import Hub
from ..signalling.messages import RemoteProtocolError, parse_base64url

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
SETTINGS = web.AppKey("settings", Settings)
DIRECTORY = web.AppKey("directory", Directory)
SFU = web.AppKey("sfu", Sfu)
HUB = web.AppKey("hub", Hub)
MAX_API_BODY_BYTES = 1024
EXPIRY_INTERVAL = 60.0

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "worker-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(self), microphone=(self), display-capture=(self), "
    "geolocation=(), payment=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
    return response


def _page(name: str) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / name, headers={"Cache-Control": "no-cache"})

    return serve


async def meeting_page(request: web.Request) -> web.StreamResponse:
    if not is_meeting_id(request.match_info["meeting_id"]):
        raise web.HTTPNotFound(text="No such meeting")
    return web.FileResponse(STATIC_DIR / "meeting.html", headers={"Cache-Control": "no-cache"})


def _meeting_error(error: MeetingError) -> web.HTTPException:
    if error.code == "meeting-not-found":
        return web.HTTPNotFound(text=error.message)
    return web.HTTPConflict(text=error.message)


async def create_meeting(request: web.Request) -> web.Response:
    meeting = request.app[DIRECTORY].create(time.time())
    logger.info("created meeting=%s", meeting.id)
    return web.json_response({"meeting_id": meeting.id}, status=201)


async def register_join_key(request: web.Request) -> web.Response:
    if request.content_length is None or request.content_length > MAX_API_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(MAX_API_BODY_BYTES, request.content_length or 0)
    try:
        body = await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(text="body must be JSON") from exc
    join_key = body.get("join_key") if isinstance(body, dict) else None
    if not isinstance(join_key, str) or len(join_key) != 43:
        raise web.HTTPBadRequest(text="join_key must be a 32-byte Ed25519 public key, base64url")
    try:
        key = parse_base64url("join_key", join_key, 32)
        request.app[DIRECTORY].register_join_key(request.match_info["meeting_id"], key, time.time())
    except RemoteProtocolError as error:
        raise web.HTTPBadRequest(text=error.message) from error
    except MeetingError as error:
        raise _meeting_error(error) from error
    return web.Response(status=204)


async def meeting_info(request: web.Request) -> web.Response:
    try:
        meeting = request.app[DIRECTORY].get(request.match_info["meeting_id"])
    except MeetingError as error:
        raise _meeting_error(error) from error
    return web.json_response({"meeting_id": meeting.id, "ready": meeting.join_key is not None})


async def metrics(request: web.Request) -> web.Response:
    """Counts only: what an operator needs to see that things work, nothing personal."""
    app = request.app
    lines = [
        f"confide_meetings {len(app[DIRECTORY].meetings)}",
        f"confide_participants {sum(len(m) for m in app[HUB].sessions.values())}",
    ]
    for name, value in sorted(app[SFU].counters.items()):
        lines.append(f'confide_media_events_total{{event="{name}"}} {value}')
    for name, value in sorted(app[HUB].counters.items()):
        lines.append(f'confide_signalling_events_total{{event="{name}"}} {value}')
    return web.Response(text="\n".join(lines) + "\n")


async def websocket(request: web.Request) -> web.StreamResponse:
    return await request.app[HUB].serve(request)


async def _media(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    transport = await open_media_socket(app[SFU], settings.host, settings.media_port)
    timer = asyncio.create_task(run_timer(app[SFU]))
    expiry = asyncio.create_task(_expire_meetings(app[DIRECTORY]))
    yield
    timer.cancel()
    expiry.cancel()
    await app[HUB].close_all()
    transport.close()


async def _expire_meetings(directory: Directory) -> None:
    while True:
        await asyncio.sleep(EXPIRY_INTERVAL)
        for meeting_id in directory.expire(time.time()):
            logger.info("expired meeting=%s", meeting_id)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[security_headers], client_max_size=MAX_API_BODY_BYTES)
    app[SETTINGS] = settings
    app[DIRECTORY] = Directory(meeting_lifetime=settings.meeting_lifetime)
    app[SFU] = Sfu(
        public_ip=settings.public_ip,
        media_port=settings.media_port,
        media_timeout=settings.media_timeout,
    )
    app[HUB] = Hub(settings=settings, directory=app[DIRECTORY], sfu=app[SFU])
    app.cleanup_ctx.append(_media)
    app.router.add_get("/", _page("index.html"))
    app.router.add_get("/m/{meeting_id}", meeting_page)
    app.router.add_post("/api/meetings", create_meeting)
    app.router.add_put("/api/meetings/{meeting_id}/join-key", register_join_key)
    app.router.add_get("/api/meetings/{meeting_id}", meeting_info)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/ws", websocket)
    app.router.add_static("/static/", STATIC_DIR)
    return app
