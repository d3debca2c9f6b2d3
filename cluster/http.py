"""The launcher's HTTP side: /metrics, /healthz, /readyz, the status page, the leaderboards, the
analytics pages (signed links from the `analytics` command; bot/cogs/analytics/web.py).

The status page (`/status`, a static HTML file that refreshes itself from `/status.json`) shows
every cluster of the bot, not only this pod's: it reads the Redis cluster registry. The public
leaderboards (`/leaderboard/{guild_id|global}`, JSON at `/api/leaderboard/...`) read the Redis
boards (see cluster/leaderboard_page.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import orjson
from aiohttp import web
from redis.exceptions import RedisError

from cluster import leaderboard_page as lbp
from cluster.metrics import render
from cluster.workers import Supervisor
from ipc.leaderboard import Leaderboard
from ipc.registry import Registry

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[None]]


class Probes:
    """Dependency checks for /readyz, cached briefly so a probe storm stays cheap."""

    def __init__(self, checks: dict[str, Probe], *, ttl: float = 2.0, timeout: float = 2.0):
        self.checks = checks
        self.ttl = ttl
        self.timeout = timeout
        self._at = 0.0
        self._problems: list[str] = []
        self._lock = asyncio.Lock()

    async def problems(self) -> list[str]:
        async with self._lock:
            if time.monotonic() - self._at > self.ttl:
                self._problems = [
                    p
                    for p in await asyncio.gather(
                        *(self._run(name, check) for name, check in self.checks.items())
                    )
                    if p
                ]
                self._at = time.monotonic()
            return list(self._problems)

    async def _run(self, name: str, check: Probe) -> str | None:
        try:
            await asyncio.wait_for(check(), self.timeout)
        except Exception as exc:  # any failure means "not ready", with its name
            return f"{name} unreachable: {exc.__class__.__name__}"
        return None


MAX_GUILD_ID = 2**64 - 1


def shard_of(guild_id: int, shard_count: int) -> int:
    """Discord's rule: (guild_id >> 22) % shard_count."""
    return (guild_id >> 22) % shard_count


async def status_snapshot(registry: Registry, shard_count: int) -> dict[str, Any]:
    clusters = await registry.clusters()
    return {
        "now": time.time(),
        "shard_count": shard_count,
        "clusters": [orjson.loads(c.to_json()) for c in clusters],
    }


def build_app(
    supervisor: Supervisor,
    probes: Probes,
    registry: Registry | None = None,
    shard_count: int = 1,
    *,
    leaderboard: Leaderboard | None = None,
    progress: lbp.Progress | None = None,
    services: Callable[[], dict[str, Any]] | None = None,
    guilds: lbp.GuildLookup | None = None,
    analytics: AnalyticsPage | None = None,
) -> web.Application:
    """The launcher's routes, added by area: health (`/healthz`, `/readyz`, `/metrics`), the
    leaderboards, the status page. The leaderboards read `leaderboard` (default: the
    registry's Redis and key prefix); `progress` is the level curve (default: the bot's);
    `services` describes the embedded servers this launcher keeps alive (none when they are
    external); `guilds` names the servers on their pages (default: asked of the workers over
    the bus)."""

    async def index(_: web.Request) -> web.Response:
        # Someone who opens the bare address wants to see the bot, not a 404.
        raise web.HTTPFound("/status")

    board = leaderboard
    if board is None and registry is not None:
        board = Leaderboard(registry.redis, registry.keys)
    if guilds is None and registry is not None:
        guilds = lbp.GuildDirectory(registry, shard_count)
    if progress is None:
        from bot.entry import xp_progress

        progress = xp_progress

    app = web.Application()
    app.router.add_get("/", index)
    _add_leaderboard_routes(app, board, progress, guilds)
    _add_health_routes(app, supervisor, probes)
    _add_status_routes(app, probes, registry, shard_count, services)
    if analytics is not None:
        _add_analytics_routes(app, analytics)
    return app


# (guild id or 0, the query) -> (status, content type, body): bot.entry.analytics_page.
AnalyticsPage = Callable[[int, dict[str, str]], Awaitable[tuple[int, str, bytes]]]


def _add_analytics_routes(app: web.Application, page: AnalyticsPage) -> None:
    """`/analytics/<guild id>`: a server's usage for a link the `analytics` command signed."""

    async def analytics_page(request: web.Request) -> web.Response:
        raw = request.match_info["guild_id"]
        if not raw.isdigit() or int(raw) > MAX_GUILD_ID:
            return web.Response(status=400, text="Not a server id.")
        try:
            status, content_type, body = await page(int(raw), dict(request.query))
        except OSError as exc:
            log.warning("analytics page: PostgreSQL unreachable: %s", exc)
            return web.Response(status=503, text="The database is unreachable; try again soon.")
        headers = {"Cache-Control": "private, no-store"}
        if content_type == "text/csv":
            headers["Content-Disposition"] = f'attachment; filename="analytics-{raw}.csv"'
        return web.Response(
            status=status, body=body, content_type=content_type, charset="utf-8", headers=headers
        )

    app.router.add_get("/analytics/{guild_id}", analytics_page)


def _add_health_routes(app: web.Application, supervisor: Supervisor, probes: Probes) -> None:
    async def healthz(_: web.Request) -> web.Response:
        # Answering at all shows the launcher's loop is responsive; workers' loops are watched
        # by the supervisor, which restarts a hung one.
        alive = sum(1 for w in supervisor.workers.values() if w.alive())
        return web.json_response(
            {"status": "ok", "workers_alive": alive, "workers": len(supervisor.workers)}
        )

    async def readyz(_: web.Request) -> web.Response:
        problems = await probes.problems()
        if not supervisor.ready():
            problems.append("not every shard is READY")
        status = 200 if not problems else 503
        return web.json_response({"ready": not problems, "problems": problems}, status=status)

    async def metrics(_: web.Request) -> web.Response:
        body, content_type = await asyncio.to_thread(render)
        return web.Response(body=body, headers={"Content-Type": content_type})

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


def _add_status_routes(
    app: web.Application,
    probes: Probes,
    registry: Registry | None,
    shard_count: int,
    services: Callable[[], dict[str, Any]] | None,
) -> None:
    page = resources.files("cluster").joinpath("static", "status.html").read_bytes()

    async def status_page(_: web.Request) -> web.Response:
        return web.Response(
            body=page,
            headers={
                "Content-Type": "text/html; charset=utf-8",
                "Cache-Control": "no-cache",
                # Everything the page needs is inline or same-origin.
                "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
                "script-src 'unsafe-inline'; connect-src 'self'",
            },
        )

    async def status_json(_: web.Request) -> web.Response:
        if registry is None:
            raise web.HTTPNotFound(text="no registry")
        # An outage is what the page must show best: the problems (and the embedded servers'
        # state) come with every answer, and an unreachable registry is one of them.
        problems = await probes.problems()
        try:
            snapshot = await status_snapshot(registry, shard_count)
        except (RedisError, OSError) as exc:
            snapshot = {"now": time.time(), "shard_count": shard_count, "clusters": []}
            problems.append(f"cluster registry unreachable (Redis): {exc.__class__.__name__}")
        snapshot["problems"] = problems
        snapshot["services"] = services() if services is not None else {}
        return web.Response(body=orjson.dumps(snapshot), content_type="application/json")

    async def which_shard(request: web.Request) -> web.Response:
        raw = request.match_info["guild_id"]
        if not raw.isdigit() or not 0 < int(raw) <= MAX_GUILD_ID:
            return web.json_response(
                {"error": "a guild id is a positive whole number (a Discord snowflake)"},
                status=400,
            )
        shard = shard_of(int(raw), shard_count)
        cluster = None
        if registry is not None:
            try:
                for info in await registry.clusters():
                    if shard in info.shard_ids:
                        cluster = info.cluster_id
            except (RedisError, OSError) as exc:
                return web.json_response({"error": f"Redis unreachable: {exc}"}, status=503)
        return web.json_response({"guild_id": raw, "shard_id": shard, "cluster_id": cluster})

    app.router.add_get("/status", status_page)
    app.router.add_get("/status.json", status_json)
    app.router.add_get("/status/guild/{guild_id}", which_shard)


LEADERBOARDS_UNAVAILABLE = "the leaderboards are unavailable right now; try again in a minute"
LEADERBOARD_HEADERS = {
    "Cache-Control": "public, max-age=10",
    # No script or style from elsewhere; avatars only from Discord's CDN.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; img-src https://cdn.discordapp.com "
    "https://media.discordapp.net; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
}


def _html_response(status: int, text: str) -> web.Response:
    headers = dict(LEADERBOARD_HEADERS)
    if status != 200:
        headers["Cache-Control"] = "no-store"
    return web.Response(
        status=status, text=text, content_type="text/html", charset="utf-8", headers=headers
    )


def _add_leaderboard_routes(
    app: web.Application,
    board: Leaderboard | None,
    curve: lbp.Progress,
    guilds: lbp.GuildLookup | None,
) -> None:
    async def board_data(request: web.Request) -> tuple[lbp.Query, dict[str, Any]]:
        """Raises BadRequest, RedisError/OSError, or LookupError when there is no Redis."""
        query = lbp.parse_query(request.match_info["scope"], request.query)
        if board is None:
            raise LookupError("no Redis")
        return query, await lbp.board_page(board, query, curve, guilds=guilds)

    async def leaderboard_html(request: web.Request) -> web.Response:
        try:
            query, data = await board_data(request)
        except lbp.BadRequest as exc:
            return _html_response(400, lbp.render_error_html(400, exc.message))
        except (RedisError, OSError, LookupError) as exc:
            log.warning("leaderboard page: Redis unreachable: %s", exc)
            return _html_response(503, lbp.render_error_html(503, LEADERBOARDS_UNAVAILABLE))
        return _html_response(200, lbp.render_html(query, data))

    async def leaderboard_json(request: web.Request) -> web.Response:
        try:
            _, data = await board_data(request)
        except lbp.BadRequest as exc:
            return web.json_response({"error": exc.message, "field": exc.field}, status=400)
        except (RedisError, OSError, LookupError) as exc:
            log.warning("leaderboard API: Redis unreachable: %s", exc)
            return web.json_response({"error": LEADERBOARDS_UNAVAILABLE}, status=503)
        return web.Response(
            body=orjson.dumps(data),
            content_type="application/json",
            headers={"Cache-Control": "public, max-age=10", "Access-Control-Allow-Origin": "*"},
        )

    async def leaderboard_index(_: web.Request) -> web.Response:
        raise web.HTTPFound("/leaderboard/global")

    app.router.add_get("/leaderboard", leaderboard_index)
    app.router.add_get("/leaderboard/{scope}", leaderboard_html)
    app.router.add_get("/api/leaderboard/{scope}", leaderboard_json)


async def serve(app: web.Application, port: int) -> tuple[web.AppRunner, int]:
    """Start serving on all interfaces (probes come from the kubelet); return the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "0.0.0.0", port)  # noqa: S104
    await site.start()
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    log.info("http server on port %d (/metrics, /healthz, /readyz, /status, /leaderboard)", bound)
    return runner, bound
