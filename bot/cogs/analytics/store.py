"""Usage analytics' SQL (migration 0011_community.sql): a batch written in one transaction,
the figures read back, and the retention."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import date, timedelta

import asyncpg

from bot.cogs.analytics.figures import (
    HOUR_DAYS,
    KEEP_DAYS,
    KEEP_HOURS,
    CommandFigures,
    Figures,
    Rows,
    day_series,
    hour_series,
    hours_start,
)


async def write(pool: asyncpg.Pool, rows: Rows) -> None:
    """Add a folded batch: three statements in one transaction, whatever its size."""
    days = list(rows.days.items())
    hours = list(rows.hours.items())
    users = list(rows.users.items())
    async with pool.acquire() as conn, conn.transaction():
        if days:
            await conn.execute(
                """
                INSERT INTO analytics_days AS t (guild_id, day, command, outcome, uses, latency_ms)
                SELECT * FROM unnest($1::bigint[], $2::date[], $3::text[], $4::text[],
                                     $5::int[], $6::bigint[])
                ON CONFLICT (guild_id, day, command, outcome) DO UPDATE
                SET uses = t.uses + excluded.uses, latency_ms = t.latency_ms + excluded.latency_ms
                """,
                [k[0] for k, _ in days],
                [k[1] for k, _ in days],
                [k[2] for k, _ in days],
                [k[3] for k, _ in days],
                [v[0] for _, v in days],
                [v[1] for _, v in days],
            )
        if hours:
            await conn.execute(
                """
                INSERT INTO analytics_hours AS t
                    (guild_id, hour, command, outcome, uses, latency_ms)
                SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[],
                                     $5::int[], $6::bigint[])
                ON CONFLICT (guild_id, hour, command, outcome) DO UPDATE
                SET uses = t.uses + excluded.uses, latency_ms = t.latency_ms + excluded.latency_ms
                """,
                [k[0] for k, _ in hours],
                [k[1] for k, _ in hours],
                [k[2] for k, _ in hours],
                [k[3] for k, _ in hours],
                [v[0] for _, v in hours],
                [v[1] for _, v in hours],
            )
        if users:
            await conn.execute(
                """
                INSERT INTO analytics_users AS t (guild_id, day, user_id, uses)
                SELECT * FROM unnest($1::bigint[], $2::date[], $3::bigint[], $4::int[])
                ON CONFLICT (guild_id, day, user_id) DO UPDATE SET uses = t.uses + excluded.uses
                """,
                [k[0] for k, _ in users],
                [k[1] for k, _ in users],
                [k[2] for k, _ in users],
                [n for _, n in users],
            )


async def figures(
    db: asyncpg.Pool | asyncpg.Connection,
    guild_id: int | None,
    days: int,
    today: date,
    *,
    top: int = 10,
) -> Figures:
    """The last `days` UTC days to `today` of one server (None: every server)."""
    first = today - timedelta(days=days - 1)
    async with _connection(db) as conn:
        per_day = await conn.fetch(
            """
            SELECT day, sum(uses)::bigint AS uses FROM analytics_days
            WHERE ($1::bigint IS NULL OR guild_id = $1) AND day BETWEEN $2 AND $3
            GROUP BY day
            """,
            guild_id,
            first,
            today,
        )
        commands = await conn.fetch(
            """
            SELECT command, sum(uses)::bigint AS uses,
                   coalesce(sum(uses) FILTER (WHERE outcome = 'error'), 0)::bigint AS errors,
                   coalesce(sum(uses) FILTER (WHERE outcome = 'refused'), 0)::bigint AS refused,
                   sum(latency_ms)::float8 / greatest(sum(uses), 1) AS avg_ms
            FROM analytics_days
            WHERE ($1::bigint IS NULL OR guild_id = $1) AND day BETWEEN $2 AND $3
            GROUP BY command ORDER BY uses DESC, command
            """,
            guild_id,
            first,
            today,
        )
        per_hour = await conn.fetch(
            """
            SELECT hour, sum(uses)::bigint AS uses FROM analytics_hours
            WHERE ($1::bigint IS NULL OR guild_id = $1) AND hour >= $2 AND hour < $3
            GROUP BY hour
            """,
            guild_id,
            hours_start(today),
            hours_start(today) + timedelta(days=HOUR_DAYS),
        )
        active = await conn.fetchval(
            """
            SELECT count(DISTINCT user_id) FROM analytics_users
            WHERE ($1::bigint IS NULL OR guild_id = $1) AND day BETWEEN $2 AND $3
            """,
            guild_id,
            first,
            today,
        )
    listed = [
        CommandFigures(r["command"], r["uses"], r["errors"], r["refused"], r["avg_ms"])
        for r in commands
    ]
    return Figures(
        first=first,
        last=today,
        per_day=day_series(first, today, {r["day"]: r["uses"] for r in per_day}),
        top=listed[:top],
        uses=sum(c.uses for c in listed),
        refused=sum(c.refused for c in listed),
        errors=sum(c.errors for c in listed),
        active_users=int(active or 0),
        per_hour=hour_series(today, {r["hour"]: r["uses"] for r in per_hour}),
    )


async def prune(conn: asyncpg.Connection, today: date) -> tuple[int, int, int]:
    """The retention, in the caller's transaction: per-hour rows older than KEEP_HOURS days
    deleted; per-day rows older than KEEP_DAYS rolled up into months, then deleted with the
    per-member rows of those days. Returns the rows removed (hours, days, members)."""
    hours_before = today - timedelta(days=KEEP_HOURS)
    days_before = today - timedelta(days=KEEP_DAYS)
    hours = await conn.execute("DELETE FROM analytics_hours WHERE hour < $1::date", hours_before)
    days = await conn.fetchval(
        """
        WITH old AS (DELETE FROM analytics_days WHERE day < $1 RETURNING *),
        rolled AS (
            INSERT INTO analytics_months AS t (guild_id, month, command, outcome, uses, latency_ms)
            SELECT guild_id, date_trunc('month', day)::date, command, outcome, sum(uses),
                   sum(latency_ms)
            FROM old GROUP BY 1, 2, 3, 4
            ON CONFLICT (guild_id, month, command, outcome) DO UPDATE
            SET uses = t.uses + excluded.uses, latency_ms = t.latency_ms + excluded.latency_ms
        )
        SELECT count(*) FROM old
        """,
        days_before,
    )
    users = await conn.execute("DELETE FROM analytics_users WHERE day < $1", days_before)
    return _count(hours), int(days), _count(users)


@contextlib.asynccontextmanager
async def _connection(db: asyncpg.Pool | asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(db, asyncpg.Connection):
        yield db
        return
    async with db.acquire() as conn:
        yield conn


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])
