"""The entry points the launcher (cluster/) uses. cluster/ imports nothing else from bot/."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.config import WorkerConfig
from bot.db import migrations
from bot.db.pool import connect

__all__ = [
    "MigrationError",
    "WorkerConfig",
    "apply_migrations",
    "migration_status",
    "run_worker",
]

MigrationError = migrations.MigrationError


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


def run_worker(config: WorkerConfig) -> None:
    """A worker process's body (blocking): the bot for config.shard_ids, on uvloop."""
    from bot.worker import run_worker as _run

    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(_run(config))
    else:
        uvloop.run(_run(config))
