"""The aliases' SQL (migration 0011_community.sql)."""

from __future__ import annotations

import asyncpg

from bot.cogs.aliases.rules import SERVER, GuildAliases


async def load(pool: asyncpg.Pool, guild_id: int) -> GuildAliases:
    rows = await pool.fetch(
        "SELECT owner_id, name, expansion FROM aliases WHERE guild_id = $1", guild_id
    )
    return GuildAliases.of_rows([(r["owner_id"], r["name"], r["expansion"]) for r in rows])


async def add(
    pool: asyncpg.Pool,
    guild_id: int,
    owner_id: int,
    name: str,
    expansion: str,
    *,
    created_by: int,
    limit: int,
) -> str | None:
    """Make or replace the alias; None if the owner already has `limit` others, else
    'added' or 'replaced'. The count and the write are one statement under a lock of the
    owner's aliases, so two at once can't pass the limit."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('aliases:' || $1 || ':' || $2, 0))",
            str(guild_id),
            str(owner_id),
        )
        rows = await conn.fetch(
            "SELECT name FROM aliases WHERE guild_id = $1 AND owner_id = $2", guild_id, owner_id
        )
        names = {r["name"] for r in rows}
        if name not in names and len(names) >= limit:
            return None
        await conn.execute(
            """
            INSERT INTO aliases (guild_id, owner_id, name, expansion, created_by)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (guild_id, owner_id, name)
            DO UPDATE SET expansion = excluded.expansion, created_by = excluded.created_by,
                          created_at = now()
            """,
            guild_id,
            owner_id,
            name,
            expansion,
            created_by,
        )
    return "replaced" if name in names else "added"


async def remove(pool: asyncpg.Pool, guild_id: int, owner_id: int, name: str) -> bool:
    done = await pool.execute(
        "DELETE FROM aliases WHERE guild_id = $1 AND owner_id = $2 AND name = $3",
        guild_id,
        owner_id,
        name,
    )
    return bool(done.endswith(" 1"))


__all__ = ["SERVER", "add", "load", "remove"]
