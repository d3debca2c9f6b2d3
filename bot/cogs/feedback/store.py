"""Feedback's SQL (migration 0011_community.sql)."""

from __future__ import annotations

from typing import Any

import asyncpg

from bot.cogs.feedback.tickets import Ticket


def _ticket(r: Any) -> Ticket:
    return Ticket(
        r["id"],
        r["guild_id"],
        r["channel_id"],
        r["author_id"],
        r["text"],
        r["status"],
        r["by_dm"],
        r["created_at"],
    )


async def create(
    pool: asyncpg.Pool, guild_id: int, channel_id: int, author_id: int, text: str
) -> Ticket:
    row = await pool.fetchrow(
        """
        INSERT INTO feedback (guild_id, channel_id, author_id, text, by_dm)
        VALUES ($1, $2, $3, $4, EXISTS (SELECT 1 FROM feedback_dm WHERE user_id = $3))
        RETURNING *
        """,
        guild_id,
        channel_id,
        author_id,
        text,
    )
    return _ticket(row)


async def get(pool: asyncpg.Pool, ticket_id: int) -> Ticket | None:
    row = await pool.fetchrow("SELECT * FROM feedback WHERE id = $1", ticket_id)
    return _ticket(row) if row is not None else None


async def note(
    pool: asyncpg.Pool, ticket_id: int, staff_id: int, kind: str, text: str
) -> Ticket | None:
    """Record a reply or a status (which also becomes the ticket's); the ticket as it is now."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            UPDATE feedback SET updated_at = now(),
                status = CASE WHEN $2 = 'status' THEN $3 ELSE status END
            WHERE id = $1 RETURNING *
            """,
            ticket_id,
            kind,
            text,
        )
        if row is None:
            return None
        await conn.execute(
            "INSERT INTO feedback_notes (feedback_id, staff_id, kind, text)"
            " VALUES ($1, $2, $3, $4)",
            ticket_id,
            staff_id,
            kind,
            text,
        )
    return _ticket(row)


async def listed(
    pool: asyncpg.Pool, guild_id: int | None, status: str | None, *, limit: int = 500
) -> list[Ticket]:
    rows = await pool.fetch(
        """
        SELECT * FROM feedback
        WHERE ($1::bigint IS NULL OR guild_id = $1) AND ($2::text IS NULL OR status = $2)
        ORDER BY id DESC LIMIT $3
        """,
        guild_id,
        status,
        limit,
    )
    return [_ticket(r) for r in rows]


async def channels(pool: asyncpg.Pool, guild_id: int) -> list[int]:
    """The channels a ticket of `guild_id` goes to: the server's, then the owners'."""
    rows = await pool.fetch(
        "SELECT channel_id FROM feedback_channels WHERE guild_id = ANY($1::bigint[])"
        " ORDER BY guild_id DESC",
        [guild_id, 0],
    )
    return [r["channel_id"] for r in rows]


async def set_channel(pool: asyncpg.Pool, guild_id: int, channel_id: int | None, by: int) -> None:
    if channel_id is None:
        await pool.execute("DELETE FROM feedback_channels WHERE guild_id = $1", guild_id)
        return
    await pool.execute(
        """
        INSERT INTO feedback_channels (guild_id, channel_id, set_by) VALUES ($1, $2, $3)
        ON CONFLICT (guild_id) DO UPDATE
        SET channel_id = excluded.channel_id, set_by = excluded.set_by, set_at = now()
        """,
        guild_id,
        channel_id,
        by,
    )


async def set_dm(pool: asyncpg.Pool, user_id: int, on: bool) -> None:
    """Whether the member hears back by DM, from now on and for their open tickets."""
    async with pool.acquire() as conn, conn.transaction():
        if on:
            await conn.execute(
                "INSERT INTO feedback_dm (user_id) VALUES ($1) ON CONFLICT DO NOTHING", user_id
            )
        else:
            await conn.execute("DELETE FROM feedback_dm WHERE user_id = $1", user_id)
        await conn.execute(
            "UPDATE feedback SET by_dm = $2 WHERE author_id = $1 AND status <> 'done'",
            user_id,
            on,
        )
