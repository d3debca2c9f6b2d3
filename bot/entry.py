"""The entry points the launcher (cluster/) uses. cluster/ imports nothing else from bot/."""

from __future__ import annotations

import asyncio
from pathlib import Path

import discord

from bot.config import WorkerConfig
from bot.db import migrations
from bot.db.pool import connect
from bot.shards import Reporter, ShardState

__all__ = [
    "MigrationError",
    "Reporter",
    "ShardState",
    "SyncError",
    "WorkerConfig",
    "apply_migrations",
    "migration_status",
    "rebuild_leaderboards",
    "run_worker",
    "sync_commands",
]

MigrationError = migrations.MigrationError


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
    """Register the slash commands with Discord over REST only (no gateway connection).

    Run by one process on demand (`guildhouse commands sync`), never on every start: syncing
    is rate limited by Discord and needless syncs delay command updates for users.
    """
    from bot.core import Guildhouse
    from bot.db.pool import create_pool
    from bot.discord_urls import point_at
    from ipc.client import create_redis

    point_at(config.api_url, config.gateway_url)
    pool = await create_pool(config.database_url, min_size=1, max_size=2)
    try:
        async with create_redis(config.redis_url) as redis:
            bot = Guildhouse(config, pool=pool, redis=redis)
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
    finally:
        await pool.close()
