"""The jobs table's SQL (bot/db/migrations/0007_jobs.sql).

A job's life: `pending` -> `running` (claimed: a worker token and a lease) -> `done` or
`failed`; or `cancelled` while pending. A `running` row whose lease has passed is claimable
again, and so is a `pending` row put back after a failed attempt once its `retry_at` passed.
The claim is one statement with `FOR UPDATE SKIP LOCKED`, so concurrent runners never claim the
same row; every later change of a claimed row checks `state = 'running' AND claimed_by = token`,
so a worker whose lease was taken over can change nothing.

Times: every function takes `now`, the runner's clock; None means the database's `now()`
(one clock for every cluster, which is what production uses; tests inject their own).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Pool | asyncpg.Connection

# A row this runner may claim: its kind is one of ours, it is due (and past any retry delay) or
# its lease passed, and its guild is on one of our shards (or it has none):
# shard = (guild_id >> 22) % shard_count, as Discord routes guilds.
_MINE = """
    j.kind = ANY($2::text[])
    AND (j.guild_id IS NULL OR ((j.guild_id >> 22) % $3) = ANY($4::int[]))
"""
_CLAIMABLE = """
    ((j.state = 'pending' AND j.due_at <= t.now AND (j.retry_at IS NULL OR j.retry_at <= t.now))
     OR (j.state = 'running' AND j.lease_until <= t.now))
"""
_NOW = "SELECT coalesce($1::timestamptz, now()) AS now"


@dataclass(frozen=True)
class Claimed:
    """A claimed row as the database returned it (the runner makes a `Job` of it)."""

    id: int
    kind: str
    key: str
    guild_id: int | None
    due_at: datetime
    payload: Any
    attempts: int  # including this claim
    first_claimed_at: datetime
    claimed_at: datetime


@dataclass(frozen=True)
class Routing:
    """Which rows a runner may claim: its kinds, and its shards of `shard_count`."""

    kinds: Sequence[str]
    shard_count: int
    shard_ids: Sequence[int]


async def claim(
    pool: Conn,
    routing: Routing,
    *,
    worker: str,
    leases: dict[str, float],
    limit: int,
    now: datetime | None,
) -> list[Claimed]:
    """Claim up to `limit` claimable jobs of `routing`, the longest due first; each gets the
    lease of its kind (`leases[kind]` seconds)."""
    kinds = list(routing.kinds)
    if not kinds:
        return []
    rows = await pool.fetch(
        f"""
        WITH t AS ({_NOW}), due AS (
            SELECT j.id FROM jobs j, t
            WHERE {_MINE} AND {_CLAIMABLE}
            ORDER BY j.due_at, j.id
            LIMIT $5
            FOR UPDATE OF j SKIP LOCKED
        ), lease AS (
            SELECT * FROM unnest($2::text[], $7::float8[]) AS l(kind, seconds)
        )
        UPDATE jobs j
        SET state = 'running', claimed_by = $6, claimed_at = t.now,
            first_claimed_at = coalesce(j.first_claimed_at, t.now),
            lease_until = t.now + lease.seconds * interval '1 second',
            attempts = j.attempts + 1, retry_at = NULL
        FROM due, t, lease
        WHERE j.id = due.id AND lease.kind = j.kind
        RETURNING j.id, j.kind, j.key, j.guild_id, j.due_at, j.payload, j.attempts,
                  j.first_claimed_at, j.claimed_at
        """,  # noqa: S608 - constant fragments only
        now,
        kinds,
        routing.shard_count,
        list(routing.shard_ids),
        limit,
        worker,
        [float(leases[k]) for k in kinds],
    )
    found = [Claimed(**dict(r)) for r in rows]
    found.sort(key=lambda c: (c.due_at, c.id))
    return found


async def finish(
    conn: Conn, job_id: int, worker: str, *, state: str, error: str | None = None
) -> bool:
    """Mark a claimed job `done` or `failed`. False if this worker no longer holds the claim
    (its lease passed and another worker took it over, or it was given back)."""
    assert state in ("done", "failed")
    done = await conn.fetchval(
        """
        UPDATE jobs SET state = $3, finished_at = now(), lease_until = NULL,
            error = coalesce($4, error)
        WHERE id = $1 AND state = 'running' AND claimed_by = $2
        RETURNING id
        """,
        job_id,
        worker,
        state,
        error,
    )
    return done is not None


async def retry_later(
    pool: Conn, job_id: int, worker: str, *, delay: float, error: str, now: datetime | None
) -> bool:
    """Give a claimed job back after an attempt that failed: pending again, not before `delay`
    seconds from `now`. False if this worker no longer held it."""
    done = await pool.fetchval(
        f"""
        WITH t AS ({_NOW})
        UPDATE jobs SET state = 'pending', claimed_by = NULL, lease_until = NULL, error = $4,
            retry_at = t.now + $5 * interval '1 second'
        FROM t
        WHERE id = $2 AND state = 'running' AND claimed_by = $3
        RETURNING id
        """,  # noqa: S608 - constant fragments only
        now,
        job_id,
        worker,
        error[:500],
        delay,
    )
    return done is not None


async def release(pool: Conn, worker: str, ids: Sequence[int], *, now: datetime | None) -> int:
    """On stop: make claimed rows this worker did not finish reclaimable at once."""
    if not ids:
        return 0
    result = await pool.execute(
        f"""
        WITH t AS ({_NOW})
        UPDATE jobs SET lease_until = t.now FROM t
        WHERE id = ANY($3::bigint[]) AND state = 'running' AND claimed_by = $2
        """,  # noqa: S608 - constant fragments only
        now,
        worker,
        list(ids),
    )
    return int(result.split()[-1])


async def expire_predecessors(
    pool: Conn, cluster_prefix: str, worker: str, *, now: datetime | None
) -> int:
    """At start: leases held by earlier processes of this cluster are dead (one process per
    cluster runs at a time), so their rows are reclaimable now rather than when the lease
    passes."""
    result = await pool.execute(
        f"""
        WITH t AS ({_NOW})
        UPDATE jobs j SET lease_until = t.now FROM t
        WHERE j.state = 'running' AND j.claimed_by LIKE $2 || '%' AND j.claimed_by <> $3
          AND j.lease_until > t.now
        """,  # noqa: S608 - constant fragments only
        now,
        cluster_prefix,
        worker,
    )
    return int(result.split()[-1])


@dataclass(frozen=True)
class Outlook:
    due: dict[str, int]  # claimable by this runner now, by kind
    wait: float | None  # seconds until the next one becomes claimable; None: nothing scheduled


async def outlook(pool: Conn, routing: Routing, *, now: datetime | None) -> Outlook:
    kinds = list(routing.kinds)
    if not kinds:
        return Outlook({}, None)
    rows = await pool.fetch(
        f"""
        WITH t AS ({_NOW})
        SELECT j.kind, count(*) AS due FROM jobs j, t
        WHERE {_MINE} AND {_CLAIMABLE}
        GROUP BY j.kind
        """,  # noqa: S608 - constant fragments only
        now,
        kinds,
        routing.shard_count,
        list(routing.shard_ids),
    )
    wait = await pool.fetchval(
        f"""
        WITH t AS ({_NOW})
        SELECT extract(epoch FROM least(
            (SELECT min(greatest(j.due_at, coalesce(j.retry_at, j.due_at))) FROM jobs j
             WHERE j.state = 'pending' AND {_MINE}),
            (SELECT min(j.lease_until) FROM jobs j WHERE j.state = 'running' AND {_MINE})
        ) - t.now)::float8 FROM t
        """,  # noqa: S608 - constant fragments only
        now,
        kinds,
        routing.shard_count,
        list(routing.shard_ids),
    )
    return Outlook({r["kind"]: int(r["due"]) for r in rows}, None if wait is None else wait)


# -- what features call: schedule, reschedule, cancel, look up ---------------------------------


@dataclass(frozen=True)
class Scheduled:
    """A job as `schedule`, `reschedule`, `cancel` and `get` see it."""

    id: int
    kind: str
    key: str
    state: str  # pending, running, done, failed, cancelled
    due_at: datetime
    created: bool = False  # `schedule` inserted it (False: the key was already there)


_SCHEDULED = "id, kind, key, state, due_at"


async def schedule(
    conn: Conn,
    kind: str,
    key: str,
    due_at: datetime,
    *,
    guild_id: int | None = None,
    payload: Any = None,
) -> Scheduled:
    inserted = await conn.fetchrow(
        f"""
        INSERT INTO jobs (kind, key, guild_id, due_at, payload)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (kind, key) DO NOTHING
        RETURNING {_SCHEDULED}
        """,  # noqa: S608 - constant fragments only
        kind,
        key,
        guild_id,
        due_at,
        {} if payload is None else payload,
    )
    if inserted is not None:
        return Scheduled(**dict(inserted), created=True)
    found = await get(conn, kind, key)
    assert found is not None  # jobs are never deleted
    return found


async def get(conn: Conn, kind: str, key: str) -> Scheduled | None:
    row = await conn.fetchrow(
        f"SELECT {_SCHEDULED} FROM jobs WHERE kind = $1 AND key = $2",  # noqa: S608 - constant
        kind,
        key,
    )
    return Scheduled(**dict(row)) if row else None


async def reschedule(
    conn: Conn, kind: str, key: str, due_at: datetime, *, payload: Any = None
) -> Scheduled | None:
    """Move a pending job to `due_at` (and replace its payload, if given); a job in any other
    state is left as it is. The job as it is now, or None if there is none."""
    row = await conn.fetchrow(
        f"""
        UPDATE jobs SET due_at = $3, payload = coalesce($4::jsonb, payload), retry_at = NULL
        WHERE kind = $1 AND key = $2 AND state = 'pending'
        RETURNING {_SCHEDULED}
        """,  # noqa: S608 - constant fragments only
        kind,
        key,
        due_at,
        payload,
    )
    return Scheduled(**dict(row)) if row else await get(conn, kind, key)


async def cancel(conn: Conn, kind: str, key: str) -> Scheduled | None:
    """Cancel a pending job; one in any other state is left as it is (a `running` one is being
    run right now and will finish). The job as it is now, or None if there is none."""
    row = await conn.fetchrow(
        f"""
        UPDATE jobs SET state = 'cancelled', finished_at = now(), retry_at = NULL
        WHERE kind = $1 AND key = $2 AND state = 'pending'
        RETURNING {_SCHEDULED}
        """,  # noqa: S608 - constant fragments only
        kind,
        key,
    )
    return Scheduled(**dict(row)) if row else await get(conn, kind, key)
