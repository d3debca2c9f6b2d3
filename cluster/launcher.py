"""`guildhouse run`: bring up what the bot needs, then the workers, and take it all down again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import asyncpg
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from cluster.console import (
    SANDBOX_FILE,
    ChatError,
    remove_sandbox_file,
    running_sandbox,
    write_sandbox_file,
)
from cluster.embedded import (
    EmbeddedError,
    NotRunning,
    Service,
    ServiceWatch,
    locate,
    services,
)
from cluster.http import AnalyticsPage, Probes, build_app, serve
from cluster.lifecycle import LauncherBusy, LauncherLock, reap_leftovers
from cluster.planning import PlanningError, check_session_starts, fetch_gateway, split_shards
from cluster.rolling import control_loop, request_rolling_restart
from cluster.settings import DEFAULT_API_URL, Settings
from cluster.workers import Supervisor
from ipc.client import Keys, create_redis
from ipc.registry import ClusterInfo, Registry

if TYPE_CHECKING:
    from bot.entry import AnalyticsConfig, StatsConfig, WorkerConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

IDENTIFY_INTERVAL = 5  # Discord: one IDENTIFY per 5 s per max_concurrency bucket


@dataclass(frozen=True)
class BackingUrls:
    database_url: str
    redis_url: str
    # The embedded servers behind the URLs (none for external ones): the launcher watches
    # the ones it owns and restarts them when they die.
    embedded: dict[str, Service] = field(default_factory=dict)


@contextlib.contextmanager
def backing_services(
    settings: Settings, *, redis: bool = True, postgres: bool = True
) -> Iterator[BackingUrls]:
    """URLs of PostgreSQL and Redis: from settings, or embedded servers started (or adopted)
    for this run. Only `run` and `migrate` start servers; helpers use `running_services`."""
    want_pg, want_redis = _embedded_wanted(settings, postgres=postgres, redis=redis)
    try:
        with services(settings.data_dir, postgres=want_pg, redis=want_redis) as found:
            yield _urls(settings, found)
    except EmbeddedError as exc:
        raise SystemExit(f"guildhouse: {exc}") from None


class NothingRunning(RuntimeError):
    """A helper command found none of what it needs running; the message says what."""


def running_services(
    settings: Settings, *, redis: bool = True, postgres: bool = True
) -> BackingUrls:
    """URLs of the servers a running launcher uses: from settings, or the embedded ones found
    under DATA_DIR. Starts nothing; raises NothingRunning."""
    want_pg, want_redis = _embedded_wanted(settings, postgres=postgres, redis=redis)
    found: dict[str, Service] = {}
    if want_pg or want_redis:
        try:
            found = locate(settings.data_dir, postgres=want_pg, redis=want_redis)
        except NotRunning as exc:
            raise NothingRunning(str(exc)) from None
    return _urls(settings, found)


def _embedded_wanted(settings: Settings, *, postgres: bool, redis: bool) -> tuple[bool, bool]:
    """Which of the servers asked for are embedded ones (no URL given for them)."""
    return postgres and settings.database_url is None, redis and settings.redis_url is None


def _urls(settings: Settings, found: dict[str, Service]) -> BackingUrls:
    """The URLs given in the settings, else those of the embedded servers found."""

    def url(name: str) -> str:
        return found[name].url if name in found else ""

    return BackingUrls(
        database_url=settings.database_url or url("postgres"),
        redis_url=settings.redis_url or url("redis"),
        embedded=dict(found),
    )


@contextlib.contextmanager
def stop_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM, installed before anything worth stopping starts."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def ping_postgres(dsn: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=2)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


async def ping_redis(redis: Redis) -> None:
    await redis.ping()


@dataclass(frozen=True)
class DiscordEndpoint:
    token: str
    api_url: str
    gateway_url: str | None
    identify_interval: float = IDENTIFY_INTERVAL


@contextlib.asynccontextmanager
async def discord_endpoint(
    settings: Settings, lock: LauncherLock | None = None
) -> AsyncIterator[DiscordEndpoint]:
    """Discord itself when a token is set; otherwise a sandbox started for this run."""
    if settings.discord_token is not None:
        yield DiscordEndpoint(
            token=settings.discord_token,
            api_url=settings.discord_api_url or DEFAULT_API_URL,
            gateway_url=settings.discord_gateway_url,
        )
        return
    log.info("no DISCORD_TOKEN: starting the built-in Discord sandbox")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--exit-with-parent",
        stdout=asyncio.subprocess.PIPE,
        # Out of the terminal's process group: a Ctrl-C is the launcher's to handle, and the
        # sandbox must outlast the workers' drain, not die before it.
        start_new_session=True,
    )
    if lock is not None:
        lock.record_child("sandbox", proc.pid)
    banner = settings.data_dir / SANDBOX_FILE
    wrote = False
    drain: asyncio.Task[None] | None = None
    try:
        assert proc.stdout is not None
        info = await _read_sandbox_banner(proc.stdout)
        # The sandbox's later stdout lines must not fill the pipe and block it.
        drain = asyncio.create_task(_discard(proc.stdout), name="sandbox-stdout")
        log.info(
            "sandbox up: REST %s, gateway %s; talk to the bot with "
            "`guildhouse chat` (control API %s)",
            info["api_url"],
            info["gateway_url"],
            info.get("control_url", "?"),
        )
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        write_sandbox_file(banner, {**info, "owner_pid": os.getpid()})
        wrote = True
        yield DiscordEndpoint(
            token=str(info["token"]),
            api_url=str(info["api_url"]),
            gateway_url=str(info["gateway_url"]),
            identify_interval=float(info.get("identify_interval", IDENTIFY_INTERVAL)),
        )
    finally:
        if wrote:
            remove_sandbox_file(banner)
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if drain is not None:
            drain.cancel()
        if lock is not None:
            lock.record_child("sandbox", None)


async def _discard(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def _read_sandbox_banner(stream: asyncio.StreamReader) -> dict[str, Any]:
    async def first_banner() -> dict[str, Any]:
        while line := await stream.readline():
            text = line.decode(errors="replace").strip()
            if text.startswith("SANDBOX "):
                data: dict[str, Any] = orjson.loads(text[len("SANDBOX ") :])
                return data
        raise SystemExit("guildhouse: the sandbox exited before it was ready")

    try:
        return await asyncio.wait_for(first_banner(), 60)
    except TimeoutError:
        raise SystemExit("guildhouse: the sandbox did not start within 60 s") from None


def worker_configs(
    settings: Settings,
    *,
    endpoint: DiscordEndpoint,
    urls: BackingUrls,
    shard_count: int,
    gateway_url: str | None,
    max_concurrency: int = 1,
) -> list[WorkerConfig]:
    from bot.entry import WorkerConfig

    stats, analytics = feature_configs(settings)
    ranges = split_shards(shard_count, settings.clusters_for(shard_count))
    ids = [settings.cluster_id] if settings.cluster_id is not None else range(len(ranges))
    return [
        WorkerConfig(
            cluster_id=i,
            cluster_count=len(ranges),
            shard_ids=ranges[i],
            shard_count=shard_count,
            token=endpoint.token,
            database_url=urls.database_url,
            redis_url=urls.redis_url,
            redis_prefix=settings.redis_prefix,
            api_url=endpoint.api_url,
            gateway_url=gateway_url,
            owner_ids=settings.owner_ids,
            identify_interval=endpoint.identify_interval,
            max_concurrency=max_concurrency,
            # Twice the identify queue's worst case for the whole bot, plus slack.
            shard_ready_timeout=2 * IDENTIFY_INTERVAL * -(-shard_count // max_concurrency) + 120,
            log_level=settings.log_level,
            log_format=settings.log_format,
            rest_rate=settings.rest_rate,
            gateway_compression=settings.gateway_compression,
            throttle_user=settings.throttle_user,
            throttle_command=settings.throttle_command,
            throttle_guild=settings.throttle_guild,
            throttle_exempt_mods=settings.throttle_exempt_mods,
            stats=stats,
            analytics=analytics,
        )
        for i in ids
    ]


def feature_configs(settings: Settings) -> tuple[StatsConfig, AnalyticsConfig]:
    """Statistics' and analytics' settings as the workers take them."""
    from bot.entry import AnalyticsConfig, StatsConfig

    stats = StatsConfig(
        rename_window=settings.stats_rename_window,
        settle=settings.stats_settle,
        rename_budget=settings.stats_rename_budget,
        poll=settings.stats_poll,
        flush=settings.stats_flush,
        heartbeat_channel=settings.stats_heartbeat_channel,
        heartbeat_every=settings.stats_heartbeat_every * 60,
        presence_every=settings.stats_presence_every,
        presence_lines=settings.stats_presence_lines,
    )
    analytics = AnalyticsConfig(
        flush=settings.analytics_flush,
        link_secret=settings.analytics_link_secret,
        public_url=settings.public_url,
    )
    return stats, analytics


async def run(settings: Settings) -> int:
    lock = LauncherLock(settings.data_dir, settings.cluster_id)
    try:
        previous = lock.acquire()
    except LauncherBusy as exc:
        print(f"guildhouse: {exc}", file=sys.stderr)
        return 1
    try:
        # Normally nothing: children die with their launcher. Before any shard starts.
        await asyncio.to_thread(reap_leftovers, previous)
        return await _run(settings, lock)
    finally:
        lock.release()


async def _run(settings: Settings, lock: LauncherLock) -> int:
    with stop_signals() as stop, backing_services(settings) as urls:
        # Inside the services' lifetime: the watch has stopped before they are stopped.
        async with ServiceWatch(urls.embedded.values()) as watch:
            code = await _serve(settings, lock, urls, watch, stop)
    log.info("stopped")
    return code


async def _serve(
    settings: Settings,
    lock: LauncherLock,
    urls: BackingUrls,
    watch: ServiceWatch,
    stop: asyncio.Event,
) -> int:
    """Migrate, plan the shards, run the workers and the HTTP side until `stop`."""
    if not await _stores_ready(urls):
        return 1
    async with discord_endpoint(settings, lock) as endpoint:
        planned = await _plan(settings, endpoint, urls)
        if planned is None:
            return 1
        configs, shard_count = planned
        if settings.uses_sandbox:
            # The sandbox starts empty every run, so its slash commands are registered
            # now. Against Discord this is `guildhouse commands sync`, run on demand.
            from bot.entry import sync_commands

            await sync_commands(configs[0])
        return await _supervise(
            settings, lock, urls, watch, stop, configs=configs, shard_count=shard_count
        )


async def _stores_ready(urls: BackingUrls) -> bool:
    """Migrations applied and Redis answering; False (logged) when the migrations fail."""
    from bot.entry import MigrationError, apply_migrations

    try:
        applied = await apply_migrations(urls.database_url)
    except MigrationError as exc:
        log.error("migration failed: %s", exc)
        return False
    log.info("database ready (%d migration(s) applied now)", len(applied))
    async with create_redis(urls.redis_url) as redis:
        await redis.ping()
    log.info("redis ready")
    return True


async def _plan(
    settings: Settings, endpoint: DiscordEndpoint, urls: BackingUrls
) -> tuple[list[WorkerConfig], int] | None:
    """This launcher's workers and the shard count, from `GET /gateway/bot`; None (logged)
    when the bot can't start (too few session starts left, a bad answer)."""
    try:
        info = await fetch_gateway(endpoint.api_url, endpoint.token)
        shard_count = settings.shard_count or info.shards
        configs = worker_configs(
            settings,
            endpoint=endpoint,
            urls=urls,
            shard_count=shard_count,
            gateway_url=endpoint.gateway_url or info.url,
            max_concurrency=info.max_concurrency,
        )
        check_session_starts(info, sum(len(c.shard_ids) for c in configs))
    except PlanningError as exc:
        log.error("cannot start: %s", exc)
        return None
    log.info(
        "%d shards in %d clusters (this launcher runs %s); max_concurrency %d",
        shard_count,
        settings.clusters_for(shard_count),
        [c.cluster_id for c in configs],
        info.max_concurrency,
    )
    return configs, shard_count


async def _supervise(
    settings: Settings,
    lock: LauncherLock,
    urls: BackingUrls,
    watch: ServiceWatch,
    stop: asyncio.Event,
    *,
    configs: list[WorkerConfig],
    shard_count: int,
) -> int:
    """The workers under the supervisor, the rolling-restart control loop and the HTTP side,
    until `stop`; then the workers are drained and the HTTP server closed."""
    async with create_redis(urls.redis_url) as redis:
        registry = Registry(redis, Keys(settings.redis_prefix))

        async def count_restart(cluster_id: int) -> None:
            with contextlib.suppress(RedisError, OSError):
                await registry.count_restart(cluster_id)

        with contextlib.suppress(RedisError, OSError):
            await registry.reset_restarts([c.cluster_id for c in configs])
        supervisor = Supervisor(
            configs,
            log_level=settings.log_level,
            log_format=settings.log_format,
            on_restart=count_restart,
            on_spawn=lambda cid, pid: lock.record_child(f"cluster-{cid}", pid),
        )
        await supervisor.start()
        control = asyncio.create_task(
            control_loop(redis, Keys(settings.redis_prefix), supervisor), name="control"
        )
        probes = Probes(
            {
                "postgres": partial(ping_postgres, urls.database_url),
                "redis": partial(ping_redis, redis),
            }
        )
        try:
            http, port = await serve(
                build_app(
                    supervisor,
                    probes,
                    registry,
                    shard_count,
                    services=watch.snapshot,
                    analytics=_analytics_page(urls.database_url, configs[0]),
                ),
                settings.http_port,
            )
        except OSError as exc:
            log.error(
                "cannot serve HTTP on port %d (HTTP_PORT): %s; stopping",
                settings.http_port,
                exc.strerror or exc,
            )
            control.cancel()
            await supervisor.stop()
            return 1
        lock.record(http_port=port)
        log.info("guildhouse is up; press Ctrl-C to stop")
        try:
            await stop.wait()
        finally:
            log.info("stopping: draining workers")
            control.cancel()
            await supervisor.stop()
            await http.cleanup()
    return 0


async def sync_commands(settings: Settings, guild_id: int | None) -> int:
    """`guildhouse commands sync`: one REST-only login, then a bulk overwrite. Needs only
    Discord's REST API, or the sandbox a running launcher started."""
    from bot.entry import SyncError
    from bot.entry import sync_commands as sync

    if settings.discord_token is not None:
        endpoint = DiscordEndpoint(
            token=settings.discord_token,
            api_url=settings.discord_api_url or DEFAULT_API_URL,
            gateway_url=settings.discord_gateway_url,
        )
    else:
        try:
            info = running_sandbox(settings.data_dir)
        except ChatError as exc:
            print(f"guildhouse: {exc}", file=sys.stderr)
            return 1
        endpoint = DiscordEndpoint(
            token=str(info["token"]), api_url=str(info["api_url"]), gateway_url=None
        )
    (config,) = worker_configs(
        replace(settings, cluster_count=1, cluster_id=None),
        endpoint=endpoint,
        urls=BackingUrls(database_url="", redis_url=""),
        shard_count=1,
        gateway_url=endpoint.gateway_url,
    )
    try:
        names = await sync(config, guild_id)
    except SyncError as exc:
        print(f"guildhouse: sync failed: {exc}", file=sys.stderr)
        return 1
    except aiohttp.ClientError as exc:
        print(f"guildhouse: cannot reach {endpoint.api_url}: {exc}", file=sys.stderr)
        return 1
    where = f"guild {guild_id}" if guild_id else "all guilds (global)"
    print(f"synced {len(names)} slash commands to {where}: {', '.join(sorted(names))}")
    return 0


async def _with_running_redis(
    settings: Settings, use: Callable[[Redis, Keys], Awaitable[T]]
) -> T | None:
    """`use` the running bot's Redis (a helper command's); None, said in one line, when
    nothing runs or Redis can't be reached."""
    try:
        urls = running_services(settings, postgres=False)
    except NothingRunning as exc:
        print(f"guildhouse: {exc}", file=sys.stderr)
        return None
    async with create_redis(urls.redis_url) as redis:
        try:
            return await use(redis, Keys(settings.redis_prefix))
        except (RedisError, OSError) as exc:
            print(f"guildhouse: cannot reach Redis: {exc}", file=sys.stderr)
            return None


async def status(settings: Settings, *, as_json: bool) -> int:
    """`guildhouse status`: clusters and shards from the registry."""
    clusters = await _with_running_redis(settings, lambda r, k: Registry(r, k).clusters())
    if clusters is None:
        return 1
    if as_json:
        print(orjson.dumps([orjson.loads(c.to_json()) for c in clusters]).decode())
        return 0 if clusters else 1
    if not clusters:
        print(
            "guildhouse: no clusters are running (none has published to the registry in "
            "the last 15 s)",
            file=sys.stderr,
        )
        return 1
    print(render_status(clusters))
    return 0


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def render_status(clusters: list[ClusterInfo]) -> str:
    now = time.time()
    rows: list[tuple[str, ...]] = [
        ("CLUSTER", "STATE", "SHARDS", "GUILDS", "PID@HOST", "UP", "RESTARTS", "SEEN")
    ]
    shard_rows: list[tuple[str, ...]] = [("SHARD", "CLUSTER", "STATE", "LATENCY", "GUILDS")]
    for c in clusters:
        span = (
            f"{c.shard_ids[0]}-{c.shard_ids[-1]}" if len(c.shard_ids) > 1 else str(c.shard_ids[0])
        )
        rows.append(
            (
                str(c.cluster_id),
                c.state,
                span,
                str(c.guilds),
                f"{c.pid}@{c.host}",
                _ago(now - c.started),
                str(c.restarts),
                f"{_ago(now - c.heartbeat)} ago",
            )
        )
        for sid in sorted(c.shards):
            s = c.shards[sid]
            latency = (
                f"{s.latency_ms:.0f} ms"
                if s.latency_ms is not None
                else "measuring"
                if s.state == "ready"
                else "-"
            )
            shard_rows.append((str(sid), str(c.cluster_id), s.state, latency, str(s.guilds)))
    return _table(rows) + "\n\n" + _table(shard_rows)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


async def rolling_restart(settings: Settings) -> int:
    """`guildhouse restart --rolling`."""
    code = await _with_running_redis(settings, request_rolling_restart)
    return 1 if code is None else code


def _analytics_page(database_url: str, config: WorkerConfig) -> AnalyticsPage:
    """The `/analytics/<guild>` page (bot/cogs/analytics/web.py, through bot/entry.py), its
    links checked with the key the workers sign them with."""
    from bot.entry import analytics_page

    return partial(
        analytics_page, database_url, config.token, link_secret=config.analytics.link_secret
    )
