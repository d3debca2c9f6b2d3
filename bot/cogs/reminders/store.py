"""The reminders' SQL for the commands: creating, listing and cancelling reminders, and the
users' timezones (tables in bot/db/migrations/0003_reminders.sql). Deliveries, their jobs and
their marks are in `outbox.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from bot.cogs.reminders import outbox
from bot.cogs.reminders.outbox import REMINDER_COLUMNS, Planned, series_of
from bot.cogs.reminders.plan import Plan, Series
from bot.user_error import UserError


class LimitReached(UserError):
    def __init__(self, active: int) -> None:
        super().__init__(
            f"You have {active} active reminders, the most there may be; "
            "cancel one first (`remind list`, `remind cancel ID`)."
        )
        self.active = active


# -- the users table's timezone column ----------------------------------------------------------


async def get_zone(pool: asyncpg.Pool, user_id: int) -> str | None:
    value = await pool.fetchval("SELECT timezone FROM users WHERE id = $1", user_id)
    return str(value) if value is not None else None


async def set_zone(pool: asyncpg.Pool, user_id: int, zone: str | None) -> None:
    await pool.execute(
        """
        INSERT INTO users (id, timezone) VALUES ($1, $2)
        ON CONFLICT (id) DO UPDATE SET timezone = EXCLUDED.timezone
        """,
        user_id,
        zone,
    )


# -- creating, listing, cancelling ---------------------------------------------------------------


async def create(
    pool: asyncpg.Pool,
    plan: Plan,
    *,
    author_id: int,
    guild_id: int | None,
    channel_id: int,
    limit: int,
) -> int:
    """Store a reminder and its first deliveries; LimitReached when the author already has
    `limit` active ones (checked under a lock on the author's users row, so concurrent
    creations can't pass the limit together)."""
    s = plan.series
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO users (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", author_id
        )
        await conn.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", author_id)
        active = await conn.fetchval(
            "SELECT count(*) FROM reminders WHERE author_id = $1 AND status = 'active'",
            author_id,
        )
        if active >= limit:
            raise LimitReached(active)
        reminder_id = await conn.fetchval(
            """
            INSERT INTO reminders (author_id, guild_id, channel_id, target, via, message, zone,
                first_at, local_at, leads, repeat_unit, repeat_every, repeat_times, repeat_until)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
            RETURNING id
            """,
            author_id,
            guild_id,
            channel_id,
            plan.target,
            plan.via,
            plan.message,
            s.zone,
            s.first_at,
            s.local_at,
            list(s.leads),
            s.repeat.unit if s.repeat else None,
            s.repeat.every if s.repeat else None,
            s.times,
            s.until,
        )
        shard_guild = guild_id if plan.via == "channel" else None
        await outbox.add(
            conn,
            reminder_id,
            shard_guild,
            [Planned(0, lead, s.first_at, fire_at) for lead, fire_at in plan.first_fires()],
        )
    return int(reminder_id)


@dataclass(frozen=True)
class Reminder:
    id: int
    author_id: int
    guild_id: int | None
    channel_id: int
    target: str
    via: str
    message: str
    status: str
    series: Series
    next_fire: datetime | None = None  # the earliest delivery still to come
    pending: int = 0  # deliveries still to come (of the events scheduled so far)


def _reminder(row: asyncpg.Record) -> Reminder:
    keys = row.keys()
    return Reminder(
        id=row["id"],
        author_id=row["author_id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        target=row["target"],
        via=row["via"],
        message=row["message"],
        status=row["status"],
        series=series_of(row),
        next_fire=row["next_fire"] if "next_fire" in keys else None,
        pending=row["pending"] if "pending" in keys else 0,
    )


async def get(conn: asyncpg.Pool | asyncpg.Connection, reminder_id: int) -> Reminder | None:
    row = await conn.fetchrow(
        f"SELECT r.id, {REMINDER_COLUMNS} FROM reminders r WHERE r.id = $1",  # noqa: S608 - constant
        reminder_id,
    )
    return _reminder(row) if row else None


async def list_active(
    pool: asyncpg.Pool, *, author_id: int | None = None, guild_id: int | None = None
) -> list[Reminder]:
    """Active reminders of an author, or of a guild, the next to fire first."""
    rows = await pool.fetch(
        f"""
        SELECT r.id, {REMINDER_COLUMNS}, d.next_fire, coalesce(d.pending, 0) AS pending
        FROM reminders r
        LEFT JOIN LATERAL (
            SELECT min(fire_at) AS next_fire, count(*) AS pending
            FROM reminder_deliveries
            WHERE reminder_id = r.id AND status IN ('pending', 'firing')
        ) d ON true
        WHERE r.status = 'active'
          AND ($1::bigint IS NULL OR r.author_id = $1)
          AND ($2::bigint IS NULL OR r.guild_id = $2)
        ORDER BY d.next_fire NULLS LAST, r.id
        LIMIT 1000
        """,  # noqa: S608 - the column list is a constant
        author_id,
        guild_id,
    )
    return [_reminder(r) for r in rows]


@dataclass(frozen=True)
class Cancelled:
    deliveries: int  # pending deliveries cancelled
    firing: int  # deliveries being sent right now (they still arrive)


async def cancel(conn: asyncpg.Connection, reminder_id: int, by: int) -> Cancelled | None:
    """Cancel an active reminder and its pending deliveries (call inside a transaction).
    None if it isn't active (done, cancelled, or unknown)."""
    updated = await conn.fetchval(
        """
        UPDATE reminders SET status = 'cancelled', cancelled_by = $2
        WHERE id = $1 AND status = 'active' RETURNING id
        """,
        reminder_id,
        by,
    )
    if updated is None:
        return None
    # A pending delivery whose job is pending is cancelled with it; one whose job is running is
    # being sent right now (it still arrives). The job rows are locked here, so a runner can't
    # claim one in between (its claim skips locked rows).
    status = await conn.fetch(
        """
        WITH j AS (
            UPDATE jobs j SET state = 'cancelled', finished_at = now()
            FROM reminder_deliveries d
            WHERE d.reminder_id = $1 AND d.status = 'pending'
              AND j.kind = $2 AND j.key = 'delivery:' || d.id AND j.state = 'pending'
            RETURNING d.id
        ), c AS (
            UPDATE reminder_deliveries SET status = 'cancelled'
            WHERE id IN (SELECT id FROM j) RETURNING id
        )
        SELECT (SELECT count(*) FROM c) AS cancelled,
               (SELECT count(*) FROM reminder_deliveries
                WHERE reminder_id = $1 AND status = 'pending') - (SELECT count(*) FROM c)
               AS firing
        """,
        reminder_id,
        outbox.KIND,
    )
    return Cancelled(int(status[0]["cancelled"]), int(status[0]["firing"]))
