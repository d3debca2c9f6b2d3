"""Reminder deliveries and their jobs: each delivery (one lead time of one event of a reminder)
is a row of `reminder_deliveries` (its nonce, and what became of it) and a job of kind
`reminders.deliver` in the shared scheduler (bot/jobs/), keyed `delivery:<id>`, which carries
the claim, the lease and the attempts. `sender.py` is the job's handler.

A delivery's life: `pending` (its job pending or running) -> `sent` or `failed`, marked in the
transaction that completes (or fails) its job; or `cancelled` with its job while pending. The
next repeat's delivery and its job are added in that same transaction, under a lock on the
reminder row (which `store.cancel` takes too: a repeat is never added to a cancelled reminder).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from bot import jobs
from bot.cogs.reminders.options import Repeat
from bot.cogs.reminders.plan import Series

log = logging.getLogger(__name__)

KIND = "reminders.deliver"

# The reminder's columns as the queries here and in store.py select them (alias r; without
# r.id, which a delivery's query selects as the delivery's).
REMINDER_COLUMNS = """
    r.author_id, r.guild_id, r.channel_id, r.target, r.via, r.message, r.status,
    r.zone, r.first_at, r.local_at, r.leads, r.repeat_unit, r.repeat_every, r.repeat_times,
    r.repeat_until
"""


def job_key(delivery_id: int) -> str:
    return f"delivery:{delivery_id}"


def new_nonce() -> str:
    return secrets.token_hex(5)


def series_of(row: asyncpg.Record) -> Series:
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


@dataclass(frozen=True)
class Planned:
    """A delivery to add: event `occurrence` of a reminder, `lead` seconds before it."""

    occurrence: int
    lead: int
    event_at: datetime
    fire_at: datetime


async def add(
    conn: asyncpg.Connection, reminder_id: int, shard_guild: int | None, planned: list[Planned]
) -> None:
    """Add deliveries and their jobs (in the caller's transaction; a delivery that exists is
    left as it is). `shard_guild`: the guild whose cluster sends it; None for DMs (any)."""
    for p in planned:
        delivery_id = await conn.fetchval(
            """
            INSERT INTO reminder_deliveries
                (reminder_id, occurrence, lead, event_at, fire_at, nonce, shard_guild)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (reminder_id, occurrence, lead) DO NOTHING
            RETURNING id
            """,
            reminder_id,
            p.occurrence,
            p.lead,
            p.event_at,
            p.fire_at,
            new_nonce(),
            shard_guild,
        )
        if delivery_id is not None:
            await jobs.store.schedule(
                conn,
                KIND,
                job_key(delivery_id),
                p.fire_at,
                guild_id=shard_guild,
                payload={"delivery": delivery_id},
            )


@dataclass(frozen=True)
class Due:
    """A delivery whose job was claimed, with what is needed to send it."""

    id: int
    reminder_id: int
    occurrence: int
    lead: int
    event_at: datetime
    fire_at: datetime
    nonce: str
    state: str  # the delivery's: pending (to send), sent, failed, cancelled
    attempts: int  # the job's, including this claim
    first_claimed_at: datetime
    claimed_at: datetime  # the runner's clock at the claim
    late_seconds: float  # claimed_at - fire_at
    shard_guild: int | None
    author_id: int
    guild_id: int | None
    channel_id: int
    target: str
    via: str
    message: str
    series: Series


async def load(conn: asyncpg.Pool | asyncpg.Connection, job: jobs.Job) -> Due | None:
    """The delivery a claimed job is for (None if it is gone: its reminder was deleted)."""
    row = await conn.fetchrow(
        f"""
        SELECT d.id, d.reminder_id, d.occurrence, d.lead, d.event_at, d.fire_at, d.nonce,
               d.status AS delivery_status, d.shard_guild, {REMINDER_COLUMNS}
        FROM reminder_deliveries d JOIN reminders r ON r.id = d.reminder_id
        WHERE d.id = $1
        """,  # noqa: S608 - constant fragments only
        int(job.payload["delivery"]),
    )
    if row is None:
        return None
    return Due(
        id=row["id"],
        reminder_id=row["reminder_id"],
        occurrence=row["occurrence"],
        lead=row["lead"],
        event_at=row["event_at"],
        fire_at=row["fire_at"],
        nonce=row["nonce"],
        state=row["delivery_status"],
        attempts=job.attempt,
        first_claimed_at=job.first_claimed_at,
        claimed_at=job.claimed_at,
        late_seconds=max(0.0, (job.claimed_at - row["fire_at"]).total_seconds()),
        shard_guild=row["shard_guild"],
        author_id=row["author_id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        target=row["target"],
        via=row["via"],
        message=row["message"],
        series=series_of(row),
    )


def next_of(due: Due) -> Planned | None:
    """The same lead time of the next repeat still ahead (missed repeats collapse into the
    one delivery being made), or None when the series is over."""
    found = due.series.next_delivery(due.occurrence, due.lead, due.claimed_at)
    if found is None:
        return None
    occurrence, fire_at = found
    return Planned(occurrence, due.lead, due.series.event_at(occurrence), fire_at)


async def finish(
    conn: asyncpg.Connection,
    due: Due,
    *,
    status: str,
    message_id: int | None = None,
    error: str | None = None,
) -> None:
    """Mark a delivery `sent` or `failed` and schedule the same lead time of the next repeat
    (if the reminder is still active); the reminder is done when nothing is left to send.
    Call in the transaction that completes or fails the delivery's job."""
    assert status in ("sent", "failed")
    reminder_status = await conn.fetchval(
        "SELECT status FROM reminders WHERE id = $1 FOR UPDATE", due.reminder_id
    )
    await conn.execute(
        """
        UPDATE reminder_deliveries
        SET status = $2, sent_at = CASE WHEN $2 = 'sent' THEN now() END,
            message_id = $3, error = $4, late_seconds = $5, attempts = $6,
            claimed_at = $7, first_claimed_at = $8
        WHERE id = $1 AND status = 'pending'
        """,
        due.id,
        status,
        message_id,
        error,
        round(due.late_seconds),
        due.attempts,
        due.claimed_at,
        due.first_claimed_at,
    )
    nxt = next_of(due)
    if nxt is not None and reminder_status == "active":
        await add(conn, due.reminder_id, due.shard_guild, [nxt])
    await conn.execute(
        """
        UPDATE reminders SET status = 'done'
        WHERE id = $1 AND status = 'active' AND NOT EXISTS (
            SELECT 1 FROM reminder_deliveries
            WHERE reminder_id = $1 AND status IN ('pending', 'firing'))
        """,
        due.reminder_id,
    )


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
