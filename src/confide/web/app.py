"""The aiohttp application: pages, the meeting API, the WebSocket, and the SFU's
UDP socket and the optional meeting store, opened and closed with the app."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from ..config import Settings
from ..limits import RateLimiter, address_key
from ..rooms.meeting import Directory, MeetingError, is_meeting_id
from ..rooms.store import MeetingStore
from ..sfu.sfu import Sfu
from ..sfu.transport import open_media_socket, run_timer
from ..signalling.hub import Hub
from ..signalling.messages import RemoteProtocolError, parse_base64url
from .health import Gauge, Readiness, metrics_text, readiness_checks, readiness_text

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
SETTINGS = web.AppKey("settings", Settings)
DIRECTORY = web.AppKey("directory", Directory)
SFU = web.AppKey("sfu", Sfu)
HUB = web.AppKey("hub", Hub)
CREATIONS = web.AppKey("creations", RateLimiter)
"""New meetings per client address."""
STORE = web.AppKey("store", MeetingStore)
"""Present only with `--store`."""
READINESS = web.AppKey("readiness", Readiness)
MAX_API_BODY_BYTES = 1024

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

STRICT_TRANSPORT_SECURITY = "max-age=63072000"
"""Two years, sent only over HTTPS (RFC 6797 section 7.2: never over plain HTTP)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response, errors included (an on_response_prepare signal sees those;
    a middleware would miss the ones raised as HTTPException)."""
    response.headers.update(SECURITY_HEADERS)
    if request.secure:
        response.headers["Strict-Transport-Security"] = STRICT_TRANSPORT_SECURITY


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
    if not request.app[CREATIONS].allow(address_key(request.remote or ""), time.monotonic()):
        request.app[HUB].counters["create_rate_limited"] += 1
        raise web.HTTPTooManyRequests(text="too many new meetings from your address: wait a minute")
    now = time.time()
    meeting = request.app[DIRECTORY].create(now)
    store = request.app.get(STORE)
    if store is not None:
        store.save(meeting, now)
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
    meeting_id, directory = request.match_info["meeting_id"], request.app[DIRECTORY]
    now = time.time()
    host_key = body.get("host_key")
    if host_key is not None and not isinstance(host_key, str):
        raise web.HTTPBadRequest(text="host_key must be a 32-byte Ed25519 public key, base64url")
    try:
        key = parse_base64url("join_key", join_key, 32)
        host = parse_base64url("host_key", host_key, 32) if host_key is not None else None
        directory.register_join_key(meeting_id, key, now, host_key=host)
    except RemoteProtocolError as error:
        raise web.HTTPBadRequest(text=error.message) from error
    except MeetingError as error:
        raise _meeting_error(error) from error
    store = request.app.get(STORE)
    if store is not None:
        store.save(directory.get(meeting_id), now)
    return web.Response(status=204)


async def meeting_info(request: web.Request) -> web.Response:
    try:
        meeting = request.app[DIRECTORY].get(request.match_info["meeting_id"])
    except MeetingError as error:
        raise _meeting_error(error) from error
    return web.json_response({"meeting_id": meeting.id, "ready": meeting.join_key is not None})


def _metrics(app: web.Application) -> str:
    hub, sfu = app[HUB], app[SFU]
    gauges = [
        Gauge("confide_meetings", "Meetings the server knows, with people in them or not.",
              len(app[DIRECTORY].meetings)),
        Gauge("confide_participants", "People in a meeting (past the lobby).",
              sum(len(m) for m in hub.sessions.values())),
        Gauge("confide_lobby_waiting", "People waiting in a lobby for a host.",
              sum(len(lobby) for lobby in hub.lobbies.values())),
        Gauge("confide_websockets", "Open WebSocket connections, joined or not.",
              len(hub.open_sessions)),
        Gauge("confide_media_connections", "Browsers with a media connection to the SFU.",
              len(sfu.endpoints_by_ufrag)),
        Gauge("confide_ready", "1 while /readyz would answer ready.",
              int(all(_readiness(app).values()))),
    ]
    return metrics_text(gauges, sfu.counters, hub.counters)


def _readiness(app: web.Application) -> dict[str, bool]:
    store = app.get(STORE)
    return readiness_checks(app[READINESS], store.reachable() if store is not None else None)


async def healthz(request: web.Request) -> web.Response:
    """The process answers: for a supervisor that restarts it when it does not."""
    return web.Response(text="ok\n", headers={"Cache-Control": "no-store"})


async def readyz(request: web.Request) -> web.Response:
    """It accepts meetings: for a load balancer or an orchestrator."""
    checks = _readiness(request.app)
    return web.Response(text=readiness_text(checks), status=200 if all(checks.values()) else 503,
                        headers={"Cache-Control": "no-store"})


async def _metrics_listener(app: web.Application) -> AsyncIterator[None]:
    """/metrics on an address of the operator's own (say 127.0.0.1): meeting and
    participant counts are not for the public."""
    listen = app[SETTINGS].metrics_listen
    if listen is None:
        yield
        return

    async def serve_metrics(request: web.Request) -> web.Response:
        return web.Response(text=_metrics(app))

    metrics_app = web.Application()
    metrics_app.router.add_get("/metrics", serve_metrics)
    runner = web.AppRunner(metrics_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, listen[0], listen[1]).start()
    yield
    await runner.cleanup()


async def websocket(request: web.Request) -> web.StreamResponse:
    return await request.app[HUB].serve(request)


async def _keep_meetings(app: web.Application) -> AsyncIterator[None]:
    """With --store: take back the meetings kept in the file, and write what is left
    to write on shutdown."""
    store, directory = app.get(STORE), app[DIRECTORY]
    if store is None:
        yield
        return
    now = time.time()
    for kept in store.open():
        directory.restore(kept.id, kept.join_key, kept.created_at, kept.last_used_at,
                          kept.host_key, kept.signed_state)
    _erase_expired(app, now)
    logger.info("loaded meetings=%d", len(directory.meetings))
    yield
    store.save_last_uses(directory.meetings.values(), time.time(), throttle=False)
    store.close()


async def _media(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    transport = await open_media_socket(app[SFU], settings.host, settings.media_port)
    app[READINESS].media_bound = True
    timer = asyncio.create_task(run_timer(app[SFU]))
    expiry = asyncio.create_task(_expire_meetings(app))
    yield
    app[READINESS].media_bound = False
    timer.cancel()
    expiry.cancel()
    transport.close()


async def _close_sockets(app: web.Application) -> None:
    """Shutdown begins: tell every client now, before aiohttp waits for handlers."""
    app[READINESS].stopping = True
    await app[HUB].close_all()


def _erase_expired(app: web.Application, now: float) -> None:
    """Forget expired meetings, in memory and in the store, and write recent uses."""
    expired = app[DIRECTORY].expire(now)
    for meeting_id in expired:
        logger.info("expired meeting=%s", meeting_id)
    store = app.get(STORE)
    if store is not None:
        store.delete(expired)
        store.save_last_uses(app[DIRECTORY].meetings.values(), now)


async def _expire_meetings(app: web.Application) -> None:
    while True:
        await asyncio.sleep(app[SETTINGS].expiry_interval)
        try:
            _erase_expired(app, time.time())
            # Rate limits refill within minutes; then their entries go too.
            now = time.monotonic()
            app[HUB].forget_idle(now)
            app[CREATIONS].forget_idle(now)
            # A closed connection leaves a reference cycle (aiohttp's request and
            # handler) that still holds the client's address until a full collection;
            # `confide serve` runs with an allocator that overwrites what is freed.
            gc.collect()
        except Exception:
            logger.exception("expiring meetings failed")


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=MAX_API_BODY_BYTES)
    app.on_response_prepare.append(add_security_headers)
    app[SETTINGS] = settings
    app[READINESS] = Readiness()
    app[DIRECTORY] = Directory(meeting_lifetime=settings.meeting_lifetime)
    app[SFU] = Sfu(
        public_ip=settings.public_ip,
        media_port=settings.media_port,
        media_timeout=settings.media_timeout,
        media_grace=settings.media_grace,
    )
    app[HUB] = Hub(settings=settings, directory=app[DIRECTORY], sfu=app[SFU])
    app[CREATIONS] = RateLimiter(
        settings.create_rate_per_address, settings.create_burst_per_address)
    if settings.store is not None:
        store = app[STORE] = MeetingStore(settings.store)
        # A meeting its host ended is erased from the file at once.
        app[HUB].on_meeting_ended = lambda meeting_id: store.delete([meeting_id])
        app[HUB].on_meeting_changed = lambda meeting: store.save(meeting, time.time())
    app.on_shutdown.append(_close_sockets)
    app.cleanup_ctx.append(_keep_meetings)
    app.cleanup_ctx.append(_media)
    app.cleanup_ctx.append(_metrics_listener)
    app.router.add_get("/", _page("index.html"))
    app.router.add_get("/m/{meeting_id}", meeting_page)
    app.router.add_post("/api/meetings", create_meeting)
    app.router.add_put("/api/meetings/{meeting_id}/join-key", register_join_key)
    app.router.add_get("/api/meetings/{meeting_id}", meeting_info)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_static("/static/", STATIC_DIR)
    return app
