"""Polls' SQL (migration 0011_community.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Poll:
    id: int
    guild_id: int
    channel_id: int
    message_id: int | None
    author_id: int
    question: str
    options: list[str]
    multiple: bool
    anonymous: bool
    closes_at: datetime
    closed_at: datetime | None


def _poll(r: Any) -> Poll:
    return Poll(
        r["id"],
        r["guild_id"],
        r["channel_id"],
        r["message_id"],
        r["author_id"],
        r["question"],
        list(r["options"]),
        r["multiple"],
        r["anonymous"],
        r["closes_at"],
        r["closed_at"],
    )


async def create(
    conn: asyncpg.Connection,
    *,
    guild_id: int,
    channel_id: int,
    author_id: int,
    question: str,
    options: list[str],
    multiple: bool,
    anonymous: bool,
    seconds: int,
) -> Poll:
    row = await conn.fetchrow(
        """
        INSERT INTO polls (guild_id, channel_id, author_id, question, options, multiple,
                           anonymous, closes_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))
        RETURNING *
        """,
        guild_id,
        channel_id,
        author_id,
        question,
        options,
        multiple,
        anonymous,
        float(seconds),
    )
    return _poll(row)


async def set_message(pool: asyncpg.Pool, poll_id: int, message_id: int) -> None:
    await pool.execute("UPDATE polls SET message_id = $2 WHERE id = $1", poll_id, message_id)


async def get(pool: asyncpg.Pool | asyncpg.Connection, poll_id: int) -> Poll | None:
    row = await pool.fetchrow("SELECT * FROM polls WHERE id = $1", poll_id)
    return _poll(row) if row is not None else None


async def counts(pool: asyncpg.Pool | asyncpg.Connection, poll: Poll) -> list[int]:
    rows = await pool.fetch(
        "SELECT option, count(*) AS n FROM poll_votes WHERE poll_id = $1 GROUP BY option", poll.id
    )
    got = {r["option"]: r["n"] for r in rows}
    return [got.get(i, 0) for i in range(len(poll.options))]


async def vote(pool: asyncpg.Pool, poll_id: int, option: int, user_id: int) -> tuple[str, Poll]:
    """Toggle the member's vote for `option`: 'added', 'removed', or 'closed' (the poll is
    past its time: nothing changes). In a single-choice poll a new vote replaces the
    member's other one. The poll row is locked FOR SHARE, so a vote and the close don't
    pass each other, and the member's votes in the poll by an advisory lock, so two presses
    at once (a double click, two buttons) are one after the other."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('poll:' || $1 || ':' || $2, 0))",
            str(poll_id),
            str(user_id),
        )
        row = await conn.fetchrow(
            "SELECT *, now() >= closes_at AS over FROM polls WHERE id = $1 FOR SHARE", poll_id
        )
        poll = _poll(row)
        if row["over"] or poll.closed_at is not None or not 0 <= option < len(poll.options):
            return "closed", poll
        removed = await conn.execute(
            "DELETE FROM poll_votes WHERE poll_id = $1 AND option = $2 AND user_id = $3",
            poll_id,
            option,
            user_id,
        )
        if removed.endswith(" 1"):
            return "removed", poll
        if not poll.multiple:
            await conn.execute(
                "DELETE FROM poll_votes WHERE poll_id = $1 AND user_id = $2", poll_id, user_id
            )
        await conn.execute(
            "INSERT INTO poll_votes (poll_id, option, user_id) VALUES ($1, $2, $3)",
            poll_id,
            option,
            user_id,
        )
    return "added", poll


async def close(conn: asyncpg.Connection, poll_id: int) -> Poll | None:
    """Close the poll in the caller's transaction; None if it was closed already."""
    row = await conn.fetchrow(
        "UPDATE polls SET closed_at = now() WHERE id = $1 AND closed_at IS NULL RETURNING *",
        poll_id,
    )
    return _poll(row) if row is not None else None


async def end_now(conn: asyncpg.Connection, poll_id: int) -> Poll | None:
    """Move an open poll's end to now (votes stop with it), in the caller's transaction, so
    its close job can be moved with it; None if it is closed or past its end already."""
    row = await conn.fetchrow(
        """
        UPDATE polls SET closes_at = now()
        WHERE id = $1 AND closed_at IS NULL AND closes_at > now() RETURNING *
        """,
        poll_id,
    )
    return _poll(row) if row is not None else None


async def voters(pool: asyncpg.Pool, poll_id: int) -> dict[int, list[int]]:
    rows = await pool.fetch(
        "SELECT option, user_id FROM poll_votes WHERE poll_id = $1 ORDER BY voted_at", poll_id
    )
    out: dict[int, list[int]] = {}
    for r in rows:
        out.setdefault(r["option"], []).append(r["user_id"])
    return out
