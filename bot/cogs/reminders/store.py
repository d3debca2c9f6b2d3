"""The reminders' SQL (tables in bot/db/migrations/0003_reminders.sql).

A delivery's life: `pending` -> `firing` (claimed: a worker token and a lease) -> `sent` or
`failed`; or `cancelled`. A `firing` row whose lease has passed is claimable again, and so is a
`pending` row put back after a failed attempt (`retry_at`). The claim is one statement with
`FOR UPDATE SKIP LOCKED`, so concurrent schedulers never claim the same row; finishing a row
checks the worker token, so a worker whose lease was taken over can't mark it. Scheduling the
next repeat happens in the transaction that finishes the current one, under a lock on the
reminder row (which `cancel` takes too: a repeat is never added to a cancelled reminder).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from bot.cogs.reminders.parsing import Repeat
from bot.cogs.reminders.schedule import Plan, Series

log = logging.getLogger(__name__)


def new_nonce() -> str:
    return secrets.token_hex(5)


class LimitReached(Exception):
    def __init__(self, active: int) -> None:
        super().__init__(f"{active} active reminders")
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
        await conn.executemany(
            """
            INSERT INTO reminder_deliveries
                (reminder_id, occurrence, lead, event_at, fire_at, nonce, shard_guild)
            VALUES ($1, 0, $2, $3, $4, $5, $6)
            """,
            [
                (reminder_id, lead, s.first_at, fire_at, new_nonce(), shard_guild)
                for lead, fire_at in plan.first_fires()
            ],
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


# (Without r.id: the claim selects the delivery's id as `id`.)
_REMINDER_COLUMNS = """
    r.author_id, r.guild_id, r.channel_id, r.target, r.via, r.message, r.status,
    r.zone, r.first_at, r.local_at, r.leads, r.repeat_unit, r.repeat_every, r.repeat_times,
    r.repeat_until
"""


def _series(row: asyncpg.Record) -> Series:
    unit, every = row["repeat_unit"], row["repeat_every"]
    return Series(
        first_at=row["first_at"],
        local_at=row["local_at"],
        zone=row["zone"],
        leads=tuple(row["leads"]),
        repeat=Repeat(unit, every) if unit is not None else None,
        times=row["repeat_times"],
        until=row["repeat_until"],
    )


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
        series=_series(row),
        next_fire=row["next_fire"] if "next_fire" in keys else None,
        pending=row["pending"] if "pending" in keys else 0,
    )


async def get(conn: asyncpg.Pool | asyncpg.Connection, reminder_id: int) -> Reminder | None:
    row = await conn.fetchrow(
        f"SELECT r.id, {_REMINDER_COLUMNS} FROM reminders r WHERE r.id = $1",  # noqa: S608 - constant
        reminder_id,
    )
    return _reminder(row) if row else None


async def list_active(
    pool: asyncpg.Pool, *, author_id: int | None = None, guild_id: int | None = None
) -> list[Reminder]:
    """Active reminders of an author, or of a guild, the next to fire first."""
    rows = await pool.fetch(
        f"""
        SELECT r.id, {_REMINDER_COLUMNS}, d.next_fire, coalesce(d.pending, 0) AS pending
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
    status = await conn.fetch(
        """
        WITH c AS (
            UPDATE reminder_deliveries SET status = 'cancelled', lease_until = NULL
            WHERE reminder_id = $1 AND status = 'pending' RETURNING id
        )
        SELECT (SELECT count(*) FROM c) AS cancelled,
               (SELECT count(*) FROM reminder_deliveries
                WHERE reminder_id = $1 AND status = 'firing') AS firing
        """,
        reminder_id,
    )
    return Cancelled(int(status[0]["cancelled"]), int(status[0]["firing"]))


# -- the scheduler's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """A claimed delivery with what is needed to send it."""

    id: int
    reminder_id: int
    occurrence: int
    lead: int
    event_at: datetime
    fire_at: datetime
    nonce: str
    attempts: int  # including this claim
    first_claimed_at: datetime
    claimed_at: datetime  # the database's clock at the claim
    late_seconds: float  # claimed_at - fire_at
    shard_guild: int | None
    author_id: int
    guild_id: int | None
    channel_id: int
    target: str
    via: str
    message: str
    series: Series


# Due, or reclaimable: pending and due (and past any retry delay), or firing with a passed lease.
# Channel deliveries only on the cluster whose shards include the guild's:
# shard = (guild_id >> 22) % shard_count, as Discord routes guilds.
_CLAIMABLE = """
    ((d.status = 'pending' AND d.fire_at <= now() AND (d.retry_at IS NULL OR d.retry_at <= now()))
     OR (d.status = 'firing' AND d.lease_until <= now()))
    AND (d.shard_guild IS NULL OR ((d.shard_guild >> 22) % $1) = ANY($2::int[]))
"""


async def claim(
    pool: asyncpg.Pool,
    *,
    worker: str,
    shard_count: int,
    shard_ids: list[int],
    limit: int,
    lease: float,
) -> list[Due]:
    """Claim up to `limit` due deliveries this worker may send, oldest first."""
    rows = await pool.fetch(
        f"""
        WITH due AS (
            SELECT d.id FROM reminder_deliveries d
            WHERE {_CLAIMABLE}
            ORDER BY d.fire_at, d.id
            LIMIT $3
            FOR UPDATE OF d SKIP LOCKED
        ), claimed AS (
            UPDATE reminder_deliveries d
            SET status = 'firing', claimed_by = $4, claimed_at = now(),
                first_claimed_at = coalesce(d.first_claimed_at, now()),
                lease_until = now() + $5 * interval '1 second',
                attempts = d.attempts + 1, retry_at = NULL
            FROM due WHERE d.id = due.id
            RETURNING d.*
        )
        SELECT c.id, c.reminder_id, c.occurrence, c.lead, c.event_at, c.fire_at, c.nonce,
               c.attempts, c.first_claimed_at, c.claimed_at, c.shard_guild,
               extract(epoch FROM c.claimed_at - c.fire_at)::float8 AS late_seconds,
               {_REMINDER_COLUMNS}
        FROM claimed c JOIN reminders r ON r.id = c.reminder_id
        ORDER BY c.fire_at, c.id
        """,  # noqa: S608 - constant fragments only
        shard_count,
        shard_ids,
        limit,
        worker,
        lease,
    )
    return [
        Due(
            id=r["id"],
            reminder_id=r["reminder_id"],
            occurrence=r["occurrence"],
            lead=r["lead"],
            event_at=r["event_at"],
            fire_at=r["fire_at"],
            nonce=r["nonce"],
            attempts=r["attempts"],
            first_claimed_at=r["first_claimed_at"],
            claimed_at=r["claimed_at"],
            late_seconds=max(0.0, float(r["late_seconds"])),
            shard_guild=r["shard_guild"],
            author_id=r["author_id"],
            guild_id=r["guild_id"],
            channel_id=r["channel_id"],
            target=r["target"],
            via=r["via"],
            message=r["message"],
            series=_series(r),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class Next:
    occurrence: int
    fire_at: datetime


async def finish(
    pool: asyncpg.Pool,
    due: Due,
    worker: str,
    *,
    status: str,
    nxt: Next | None,
    message_id: int | None = None,
    error: str | None = None,
) -> bool:
    """Mark a claimed delivery `sent` or `failed` and, in the same transaction, schedule the
    same lead time of the next repeat (if the reminder is still active). False if this worker
    no longer holds the claim (its lease passed and another worker took it over)."""
    assert status in ("sent", "failed")
    async with pool.acquire() as conn, conn.transaction():
        reminder_status = await conn.fetchval(
            "SELECT status FROM reminders WHERE id = $1 FOR UPDATE", due.reminder_id
        )
        done = await conn.fetchval(
            """
            UPDATE reminder_deliveries
            SET status = $3, sent_at = CASE WHEN $3 = 'sent' THEN now() END,
                message_id = $4, error = $5, late_seconds = $6, lease_until = NULL
            WHERE id = $1 AND status = 'firing' AND claimed_by = $2
            RETURNING id
            """,
            due.id,
            worker,
            status,
            message_id,
            error,
            round(due.late_seconds),
        )
        if done is None:
            return False
        if nxt is not None and reminder_status == "active":
            await conn.execute(
                """
                INSERT INTO reminder_deliveries
                    (reminder_id, occurrence, lead, event_at, fire_at, nonce, shard_guild)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (reminder_id, occurrence, lead) DO NOTHING
                """,
                due.reminder_id,
                nxt.occurrence,
                due.lead,
                due.series.event_at(nxt.occurrence),
                nxt.fire_at,
                new_nonce(),
                due.shard_guild,
            )
        await conn.execute(
            """
            UPDATE reminders SET status = 'done'
            WHERE id = $1 AND status = 'active' AND NOT EXISTS (
                SELECT 1 FROM reminder_deliveries
                WHERE reminder_id = $1 AND status IN ('pending', 'firing'))
            """,
            due.reminder_id,
        )
    return True


async def retry_later(
    pool: asyncpg.Pool, due: Due, worker: str, *, delay: float, error: str
) -> bool:
    """Give a claimed delivery back after an attempt that failed (or may have failed): pending
    again, not before `delay` seconds. The next claim looks for an earlier send first."""
    done = await pool.fetchval(
        """
        UPDATE reminder_deliveries
        SET status = 'pending', claimed_by = NULL, lease_until = NULL, error = $3,
            retry_at = now() + $4 * interval '1 second'
        WHERE id = $1 AND status = 'firing' AND claimed_by = $2
        RETURNING id
        """,
        due.id,
        worker,
        error,
        delay,
    )
    return done is not None


async def release(pool: asyncpg.Pool, worker: str, ids: list[int]) -> int:
    """On shutdown: make claimed rows this worker did not get to reclaimable at once."""
    if not ids:
        return 0
    result = await pool.execute(
        """
        UPDATE reminder_deliveries SET lease_until = now()
        WHERE id = ANY($2::bigint[]) AND status = 'firing' AND claimed_by = $1
        """,
        worker,
        ids,
    )
    return int(result.split()[-1])


async def expire_predecessors(pool: asyncpg.Pool, cluster_prefix: str, worker: str) -> int:
    """At start: leases held by earlier processes of this cluster are dead (one process per
    cluster runs at a time), so their rows are reclaimable now rather than when the lease
    passes. The nonce check still guards against a send they completed."""
    result = await pool.execute(
        """
        UPDATE reminder_deliveries SET lease_until = now()
        WHERE status = 'firing' AND claimed_by LIKE $1 || '%' AND claimed_by <> $2
          AND lease_until > now()
        """,
        cluster_prefix,
        worker,
    )
    return int(result.split()[-1])


@dataclass(frozen=True)
class Outlook:
    due: int  # claimable by this worker now
    wait: float | None  # seconds until the next one becomes claimable; None: nothing scheduled


async def outlook(pool: asyncpg.Pool, *, shard_count: int, shard_ids: list[int]) -> Outlook:
    row = await pool.fetchrow(
        f"""
        SELECT
            (SELECT count(*) FROM reminder_deliveries d WHERE {_CLAIMABLE}) AS due,
            extract(epoch FROM least(
                (SELECT min(greatest(d.fire_at, coalesce(d.retry_at, d.fire_at)))
                 FROM reminder_deliveries d
                 WHERE d.status = 'pending'
                   AND (d.shard_guild IS NULL OR ((d.shard_guild >> 22) % $1) = ANY($2::int[]))),
                (SELECT min(d.lease_until) FROM reminder_deliveries d
                 WHERE d.status = 'firing'
                   AND (d.shard_guild IS NULL OR ((d.shard_guild >> 22) % $1) = ANY($2::int[])))
            ) - now())::float8 AS wait
        """,  # noqa: S608 - constant fragments only
        shard_count,
        shard_ids,
    )
    assert row is not None
    wait = row["wait"]
    return Outlook(int(row["due"]), None if wait is None else float(wait))


async def table_players(pool: asyncpg.Pool, channel_id: int) -> tuple[int, ...] | None:
    """The players of a channel's tabletop table (combatants that are users, not NPCs) and its
    GM; None when the tabletop tables don't exist (that cog isn't installed)."""
    exists = await pool.fetchval(
        "SELECT to_regclass('tabletop_combatants') IS NOT NULL "
        "AND to_regclass('tabletop_tables') IS NOT NULL"
    )
    if not exists:
        return None
    try:
        rows = await pool.fetch(
            """
            SELECT user_id FROM tabletop_combatants
            WHERE channel_id = $1 AND user_id IS NOT NULL AND NOT is_npc
            UNION
            SELECT gm_id FROM tabletop_tables WHERE channel_id = $1 AND gm_id IS NOT NULL
            """,
            channel_id,
        )
    except asyncpg.UndefinedColumnError as exc:  # the tabletop schema changed under us
        log.warning("reminders: can't read the tabletop player list: %s", exc)
        return None
    return tuple(sorted({int(r["user_id"]) for r in rows}))


async def recipients(pool: asyncpg.Pool, due: Due) -> tuple[int, ...]:
    """Who a delivery pings: the author; for `players`, the table's players and GM as they are
    when it fires (the author if the table is gone or empty)."""
    if due.target != "players":
        return (due.author_id,)
    return await table_players(pool, due.channel_id) or (due.author_id,)
