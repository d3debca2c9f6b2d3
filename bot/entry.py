"""The entry points the launcher (cluster/) uses. cluster/ imports nothing else from bot/."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import discord

from bot.config import AnalyticsConfig, StatsConfig, WorkerConfig
from bot.db import migrations
from bot.db.pool import connect
from bot.shards import Reporter, ShardState

if TYPE_CHECKING:
    from bot.cogs.leveling.importer import ImportReport

__all__ = [
    "MAX_IMPORT_BYTES",
    "AnalyticsConfig",
    "ImportRefused",
    "MigrationError",
    "Reporter",
    "ShardState",
    "StatsConfig",
    "SyncError",
    "WorkerConfig",
    "apply_migrations",
    "import_xp",
    "migration_status",
    "rebuild_leaderboards",
    "run_worker",
    "sync_commands",
    "xp_progress",
]

MigrationError = migrations.MigrationError
# The largest XP import file (bot.cogs.leveling.importer.MAX_FILE_BYTES, kept here so the CLI
# can refuse a file before loading the leveling code).
MAX_IMPORT_BYTES = 16 * 1024 * 1024


class ImportRefused(ValueError):
    """An XP import file refused as a whole (too large, not UTF-8, unreadable)."""


class SyncError(RuntimeError):
    """Discord refused the login or the command sync."""


async def apply_migrations(dsn: str, directory: Path | None = None) -> list[migrations.Migration]:
    conn = await connect(dsn)
    try:
        return await migrations.apply(conn, directory or migrations.MIGRATIONS_DIR)
    finally:
        await conn.close()


async def migration_status(dsn: str, directory: Path | None = None) -> list[migrations.Status]:
    conn = await connect(dsn)
    try:
        return await migrations.status(conn, directory or migrations.MIGRATIONS_DIR)
    finally:
        await conn.close()


async def rebuild_leaderboards(
    database_url: str, redis_url: str, redis_prefix: str
) -> tuple[int, int] | None:
    """Rebuild every XP leaderboard in Redis from Postgres (`guildhouse leaderboards
    rebuild`); (boards written, stream awards replayed), or None if another process holds the
    rebuild lock."""
    from bot.cogs.leveling.rebuild import rebuild
    from bot.db.pool import create_pool
    from ipc.client import Keys, create_redis

    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        async with create_redis(redis_url) as redis:
            result = await rebuild(pool, redis, Keys(redis_prefix), trigger="command")
    finally:
        await pool.close()
    return None if result is None else (result.boards, result.replayed)


def xp_progress(xp: float) -> tuple[int, int, int]:
    """(level, XP earned since that level, XP from that level to the next) for a total of
    `xp`, on the one level curve (bot/cogs/leveling/rules.py). For the web leaderboard."""
    from bot.cogs.leveling import rules

    p = rules.progress(xp)
    return p.level, p.into_level, p.needed


async def analytics_page(
    database_url: str,
    token: str,
    guild_id: int,
    query: dict[str, str],
    *,
    link_secret: str | None = None,
) -> tuple[int, str, bytes]:
    """(status, content type, body) of the web page `/analytics/<guild_id>` (0: every
    server) for a link signed by the `analytics` command (bot/cogs/analytics/web.py) with
    ANALYTICS_LINK_SECRET, or (None) a key derived from the token."""
    from bot.cogs.analytics import web

    return await web.page(database_url, token, guild_id, query, secret=link_secret)


async def import_xp(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    guild_id: int,
    data: bytes,
    *,
    dry_run: bool = False,
    source: str = "",
) -> ImportReport:
    """`guildhouse leaderboards import`: check a `user_id,xp` CSV file line by line, write its
    good lines to PostgreSQL (audited; see bot/cogs/leveling/importer.py for what a second
    import does), then rebuild the Redis boards from PostgreSQL. Raises ImportRefused for a
    file that can't be imported at all."""
    from bot.cogs.leveling import importer
    from bot.db.pool import create_pool
    from ipc.client import Keys, create_redis

    try:
        parsed = importer.parse(data)
    except importer.ImportRefused as exc:
        raise ImportRefused(str(exc)) from None
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        applied = await importer.apply(pool, guild_id, parsed, dry_run=dry_run, source=source)
        boards = "unchanged"
        if applied.events and not dry_run:
            async with create_redis(redis_url) as redis:
                boards = await importer.refresh_boards(pool, redis, Keys(redis_prefix))
    finally:
        await pool.close()
    return importer.ImportReport(guild_id, dry_run, parsed, applied, boards)


def run_worker(config: WorkerConfig, reporter: Reporter | None = None) -> None:
    """A worker process's body (blocking): the bot for config.shard_ids, on uvloop.

    `reporter` hears from the event loop about once a second (so the launcher can tell a
    blocked loop from a busy one) and learns each shard's state.
    """
    from bot.worker import run_worker as _run

    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(_run(config, reporter))
    else:
        uvloop.run(_run(config, reporter))


async def sync_commands(config: WorkerConfig, guild_id: int | None = None) -> list[str]:
    """Register the slash commands with Discord over REST only (no gateway connection, no
    PostgreSQL, no Redis).

    Run by one process on demand (`guildhouse commands sync`), never on every start: syncing
    is rate limited by Discord and needless syncs delay command updates for users.
    """
    import asyncpg
    from redis.asyncio import Redis

    from bot.dpy import urls
    from bot.guildhouse import Guildhouse

    urls.install(config.api_url, config.gateway_url)
    # The cogs are built with a pool and a Redis client, but a rest_only bot starts nothing
    # that uses them: these are never connected (a use would fail loudly, not reach a server).
    pool = asyncpg.create_pool(min_size=0, max_size=1)
    redis = Redis()
    bot = Guildhouse(config, pool=pool, redis=redis, rest_only=True)
    try:
        await bot.login(config.token)  # runs setup_hook: loads every cog
        guild = discord.Object(guild_id) if guild_id is not None else None
        if guild is not None:
            bot.tree.copy_global_to(guild=guild)
        synced = await bot.tree.sync(guild=guild)
        return [c.name for c in synced]
    except (discord.HTTPException, discord.LoginFailure) as exc:
        raise SyncError(str(exc)) from exc
    finally:
        await bot.close()
        await redis.aclose()
