"""The entry points the launcher (cluster/) uses. cluster/ imports nothing else from bot/."""

from __future__ import annotations

from pathlib import Path

from bot.db import migrations
from bot.db.pool import connect

__all__ = ["MigrationError", "apply_migrations", "migration_status"]

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
