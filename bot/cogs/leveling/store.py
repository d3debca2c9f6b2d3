"""The leveling feature's SQL (plain asyncpg, $n parameters)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from ipc.leaderboard import Award


@dataclass(frozen=True)
class FlushResult:
    inserted: int
    duplicates: int


async def write_events(conn: asyncpg.Connection, events: Sequence[Award]) -> FlushResult:
    """Insert a batch of XP events; totals, active days and profiles change only for events
    inserted now (an award id seen before is skipped), all in one statement, so writing the
    same batch twice counts it once."""
    if not events:
        return FlushResult(0, 0)
    inserted = await conn.fetchval(
        """
        WITH input AS (
            SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::int[], $5::text[],
                                 $6::timestamptz[])
                AS t(award_id, guild_id, user_id, amount, kind, created_at)
        ), new AS (
            INSERT INTO xp_events (award_id, guild_id, user_id, amount, kind, created_at)
            SELECT DISTINCT ON (award_id) award_id, guild_id, user_id, amount, kind, created_at
            FROM input
            ON CONFLICT (award_id) DO NOTHING
            RETURNING guild_id, user_id, amount, kind, created_at
        ), totals AS (
            INSERT INTO xp_totals AS t (guild_id, user_id, xp, messages, last_award)
            SELECT guild_id, user_id, sum(amount), count(*) FILTER (WHERE kind = 'message'),
                   max(created_at)
            FROM new GROUP BY guild_id, user_id
            ON CONFLICT (guild_id, user_id) DO UPDATE SET
                xp = t.xp + excluded.xp,
                messages = t.messages + excluded.messages,
                last_award = GREATEST(t.last_award, excluded.last_award)
        ), days AS (
            INSERT INTO xp_days (guild_id, user_id, day)
            SELECT DISTINCT guild_id, user_id, (created_at AT TIME ZONE 'UTC')::date
            FROM new WHERE kind = 'message'
            ON CONFLICT DO NOTHING
        )
        SELECT count(*) FROM new
        """,
        [e.award_id for e in events],
        [e.guild_id for e in events],
        [e.user_id for e in events],
        [e.amount for e in events],
        [e.kind for e in events],
        [e.at for e in events],
    )
    latest: dict[int, Award] = {}
    for e in events:
        if e.name is not None:
            latest[e.user_id] = e
    if latest:
        await conn.execute(
            """
            INSERT INTO xp_profiles (user_id, name, avatar_url, updated_at)
            SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[])
            ON CONFLICT (user_id) DO UPDATE SET name = excluded.name,
                avatar_url = excluded.avatar_url, updated_at = excluded.updated_at
            WHERE xp_profiles.updated_at <= excluded.updated_at
            """,
            list(latest),
            [e.name for e in latest.values()],
            [e.avatar for e in latest.values()],
            [e.at for e in latest.values()],
        )
    n = int(inserted or 0)
    return FlushResult(n, len({e.award_id for e in events}) - n)


async def total(pool: asyncpg.Pool | asyncpg.Connection, guild_id: int, user_id: int) -> int:
    value = await pool.fetchval(
        "SELECT xp FROM xp_totals WHERE guild_id = $1 AND user_id = $2", guild_id, user_id
    )
    return int(value or 0)


@dataclass(frozen=True)
class MemberStats:
    xp: int = 0
    messages: int = 0
    commands: int = 0
    level: int = 0
    best_roll: int = 0


async def stats(pool: asyncpg.Pool, guild_id: int, user_id: int) -> MemberStats:
    row = await pool.fetchrow(
        "SELECT xp, messages, commands, level, best_roll FROM xp_totals "
        "WHERE guild_id = $1 AND user_id = $2",
        guild_id,
        user_id,
    )
    return MemberStats(**dict(row)) if row else MemberStats()


async def raise_level(pool: asyncpg.Pool, guild_id: int, user_id: int, level: int) -> bool:
    """Record that the member reached `level`. True if this call raised the recorded level;
    False if it was already there (another process, or an earlier message, announced it)."""
    row = await pool.fetchrow(
        """
        INSERT INTO xp_totals AS t (guild_id, user_id, level) VALUES ($1, $2, $3)
        ON CONFLICT (guild_id, user_id) DO UPDATE SET level = excluded.level
        WHERE t.level < excluded.level
        RETURNING level
        """,
        guild_id,
        user_id,
        level,
    )
    return row is not None


async def count_commands(pool: asyncpg.Pool, calls: Sequence[tuple[int, int]]) -> list[int]:
    """Count these commands, one (guild, user) pair each, in one statement; returns each
    call's member's command count after all of them."""
    if not calls:
        return []
    rows = await pool.fetch(
        """
        INSERT INTO xp_totals AS t (guild_id, user_id, commands)
        SELECT g, u, count(*) FROM unnest($1::bigint[], $2::bigint[]) AS c(g, u) GROUP BY g, u
        ON CONFLICT (guild_id, user_id) DO UPDATE SET commands = t.commands + excluded.commands
        RETURNING guild_id, user_id, commands
        """,
        [g for g, _ in calls],
        [u for _, u in calls],
    )
    after = {(r["guild_id"], r["user_id"]): int(r["commands"]) for r in rows}
    return [after[call] for call in calls]


async def record_roll(pool: asyncpg.Pool, guild_id: int, user_id: int, successes: int) -> int:
    value = await pool.fetchval(
        """
        INSERT INTO xp_totals AS t (guild_id, user_id, best_roll) VALUES ($1, $2, $3)
        ON CONFLICT (guild_id, user_id) DO UPDATE SET best_roll = GREATEST(t.best_roll, $3)
        RETURNING best_roll
        """,
        guild_id,
        user_id,
        successes,
    )
    return int(value)


async def recent_days(pool: asyncpg.Pool, guild_id: int, user_id: int, since: date) -> list[date]:
    rows = await pool.fetch(
        "SELECT day FROM xp_days WHERE guild_id = $1 AND user_id = $2 AND day >= $3",
        guild_id,
        user_id,
        since,
    )
    return [r["day"] for r in rows]


async def unlock(pool: asyncpg.Pool, guild_id: int, user_id: int, keys: Sequence[str]) -> list[str]:
    """Unlock achievements; returns those unlocked by this call (each unlocks once)."""
    if not keys:
        return []
    rows = await pool.fetch(
        """
        INSERT INTO achievements (guild_id, user_id, achievement)
        SELECT $1, $2, unnest($3::text[])
        ON CONFLICT DO NOTHING
        RETURNING achievement
        """,
        guild_id,
        user_id,
        list(keys),
    )
    return [r["achievement"] for r in rows]


async def unlocked(pool: asyncpg.Pool, guild_id: int, user_id: int) -> dict[str, datetime]:
    rows = await pool.fetch(
        "SELECT achievement, unlocked_at FROM achievements WHERE guild_id = $1 AND user_id = $2",
        guild_id,
        user_id,
    )
    return {r["achievement"]: r["unlocked_at"] for r in rows}


async def insert_adjustment(conn: asyncpg.Connection, event: Award) -> int:
    """An admin's give/take/reset, applied to Postgres at once (in the audited transaction):
    the event and the new total. Returns the new total."""
    await conn.execute(
        "INSERT INTO xp_events (award_id, guild_id, user_id, amount, kind, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        event.award_id,
        event.guild_id,
        event.user_id,
        event.amount,
        event.kind,
        event.at,
    )
    value = await conn.fetchval(
        """
        INSERT INTO xp_totals AS t (guild_id, user_id, xp, last_award) VALUES ($1, $2, $3, $4)
        ON CONFLICT (guild_id, user_id) DO UPDATE SET xp = t.xp + excluded.xp
        RETURNING xp
        """,
        event.guild_id,
        event.user_id,
        event.amount,
        event.at,
    )
    return int(value)


async def locked_total(conn: asyncpg.Connection, guild_id: int, user_id: int) -> int:
    """The member's total, row locked until the transaction ends (for take and reset)."""
    value = await conn.fetchval(
        "SELECT xp FROM xp_totals WHERE guild_id = $1 AND user_id = $2 FOR UPDATE",
        guild_id,
        user_id,
    )
    return int(value or 0)


async def set_level(conn: asyncpg.Connection, guild_id: int, user_id: int, level: int) -> None:
    """After a take or reset: the announced level follows the XP down (so it is announced
    again when earned again)."""
    await conn.execute(
        "UPDATE xp_totals SET level = LEAST(level, $3) WHERE guild_id = $1 AND user_id = $2",
        guild_id,
        user_id,
        level,
    )


# -- rebuild snapshot -------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    alltime: list[tuple[int, int, int]]  # guild, user, xp
    periods: list[tuple[int, int, int, int, int]]  # guild, user, month, week, day sums
    profiles: list[tuple[int, str, str | None]]


async def snapshot(
    conn: asyncpg.Connection, month: datetime, week: datetime, day: datetime
) -> Snapshot:
    """Everything the boards are built from, read in the caller's (REPEATABLE READ)
    transaction."""
    alltime = await conn.fetch("SELECT guild_id, user_id, xp FROM xp_totals WHERE xp > 0")
    periods = await conn.fetch(
        """
        SELECT guild_id, user_id,
               COALESCE(sum(amount) FILTER (WHERE created_at >= $1), 0) AS month,
               COALESCE(sum(amount) FILTER (WHERE created_at >= $2), 0) AS week,
               COALESCE(sum(amount) FILTER (WHERE created_at >= $3), 0) AS day
        FROM xp_events WHERE created_at >= LEAST($1, $2)
        GROUP BY guild_id, user_id
        """,
        month,
        week,
        day,
    )
    profiles = await conn.fetch("SELECT user_id, name, avatar_url FROM xp_profiles")
    return Snapshot(
        alltime=[(r["guild_id"], r["user_id"], r["xp"]) for r in alltime],
        periods=[(r[0], r[1], r[2], r[3], r[4]) for r in periods],
        profiles=[(r[0], r[1], r[2]) for r in profiles],
    )


async def known_awards(conn: asyncpg.Connection, award_ids: list[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT award_id FROM xp_events WHERE award_id = ANY($1::text[])", award_ids
    )
    return {r["award_id"] for r in rows}
