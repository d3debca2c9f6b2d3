"""Statistics in PostgreSQL (migration 0010_stats.sql): settings, counter channels, the day
rows and their batched writes, reports sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg

from bot.cogs.stats.report import DayRow
from bot.cogs.stats.tally import DayTally, Key


@dataclass(frozen=True)
class Settings:
    guild_id: int
    category_id: int | None
    report_channel_id: int | None
    tz: str
    report_hour: int
    daily: bool
    weekly: bool


@dataclass(frozen=True)
class CounterRow:
    guild_id: int
    kind: str
    channel_id: int
    template: str
    shown: str | None
    renames: list[float]  # epoch seconds, oldest first


def _settings(row: asyncpg.Record) -> Settings:
    return Settings(
        row["guild_id"],
        row["category_id"],
        row["report_channel_id"],
        row["tz"],
        row["report_hour"],
        row["daily"],
        row["weekly"],
    )


async def settings(pool: asyncpg.Pool | asyncpg.Connection, guild_id: int) -> Settings | None:
    row = await pool.fetchrow("SELECT * FROM stats_settings WHERE guild_id = $1", guild_id)
    return _settings(row) if row else None


async def all_settings(pool: asyncpg.Pool, guild_ids: list[int]) -> list[Settings]:
    rows = await pool.fetch(
        "SELECT * FROM stats_settings WHERE guild_id = ANY($1::bigint[])", guild_ids
    )
    return [_settings(r) for r in rows]


_SETTABLE = {"category_id", "report_channel_id", "tz", "report_hour", "daily", "weekly"}


async def update_settings(pool: asyncpg.Pool, guild_id: int, **fields: object) -> Settings:
    unknown = set(fields) - _SETTABLE
    if unknown:
        raise ValueError(f"not a statistics setting: {sorted(unknown)}")
    names = sorted(fields)
    cols = ", ".join(names)
    params = ", ".join(f"${i + 2}" for i in range(len(names)))
    sets = ", ".join(f"{n} = EXCLUDED.{n}" for n in names)
    row = await pool.fetchrow(
        f"""
        INSERT INTO stats_settings (guild_id{", " if names else ""}{cols})
        VALUES ($1{", " if names else ""}{params})
        ON CONFLICT (guild_id) DO UPDATE SET {sets}{", " if names else ""}updated_at = now()
        RETURNING *
        """,  # noqa: S608 - column names from _SETTABLE, values as parameters
        guild_id,
        *(fields[n] for n in names),
    )
    assert row is not None
    return _settings(row)


def _counter(row: asyncpg.Record) -> CounterRow:
    return CounterRow(
        row["guild_id"],
        row["kind"],
        row["channel_id"],
        row["template"],
        row["shown"],
        [t.timestamp() for t in row["renames"]],
    )


async def counters(pool: asyncpg.Pool, guild_ids: list[int]) -> list[CounterRow]:
    rows = await pool.fetch(
        "SELECT * FROM stats_counters WHERE guild_id = ANY($1::bigint[])", guild_ids
    )
    return [_counter(r) for r in rows]


async def set_counter(
    pool: asyncpg.Pool,
    guild_id: int,
    kind: str,
    channel_id: int,
    *,
    template: str,
    shown: str | None,
) -> CounterRow:
    """Make `channel_id` the server's `kind` counter (a channel is one counter at most)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM stats_counters WHERE channel_id = $1 AND (guild_id, kind) <> ($2, $3)",
            channel_id,
            guild_id,
            kind,
        )
        row = await conn.fetchrow(
            """
            INSERT INTO stats_counters (guild_id, kind, channel_id, template, shown)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (guild_id, kind) DO UPDATE SET channel_id = EXCLUDED.channel_id,
                template = EXCLUDED.template, shown = EXCLUDED.shown,
                renames = CASE WHEN stats_counters.channel_id = EXCLUDED.channel_id
                               THEN stats_counters.renames ELSE '{}' END
            RETURNING *
            """,
            guild_id,
            kind,
            channel_id,
            template,
            shown,
        )
    assert row is not None
    return _counter(row)


async def set_template(
    pool: asyncpg.Pool, guild_id: int, kind: str, template: str
) -> CounterRow | None:
    row = await pool.fetchrow(
        "UPDATE stats_counters SET template = $3 WHERE guild_id = $1 AND kind = $2 RETURNING *",
        guild_id,
        kind,
        template,
    )
    return _counter(row) if row else None


async def drop_counters(pool: asyncpg.Pool, guild_id: int) -> list[CounterRow]:
    rows = await pool.fetch("DELETE FROM stats_counters WHERE guild_id = $1 RETURNING *", guild_id)
    return [_counter(r) for r in rows]


async def renamed(pool: asyncpg.Pool, channel_id: int, name: str, at: float) -> None:
    """Remember a rename (its name and time; the last two times are kept)."""
    await pool.execute(
        """
        UPDATE stats_counters SET shown = $2,
            renames = (array_append(renames, $3::timestamptz))[greatest(1, cardinality(renames)):]
        WHERE channel_id = $1
        """,
        channel_id,
        name,
        datetime.fromtimestamp(at, UTC),
    )


# -- the day rows ---------------------------------------------------------------------------


async def flush(pool: asyncpg.Pool, taken: dict[Key, DayTally]) -> None:
    """Add what the worker counted to the day rows, in one transaction."""
    if not taken:
        return
    keys = list(taken)
    ts = [taken[k] for k in keys]
    ch_g, ch_d, ch_c, ch_n = [], [], [], []
    ban_g, ban_d, ban_u, ban_n = [], [], [], []
    for (guild, day), t in taken.items():
        for channel, n in t.channels.items():
            ch_g.append(guild)
            ch_d.append(day)
            ch_c.append(channel)
            ch_n.append(n)
        for user, name in t.banned:
            ban_g.append(guild)
            ban_d.append(day)
            ban_u.append(user)
            ban_n.append(name)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """
            INSERT INTO stats_days AS d
                (guild_id, day, joins, leaves, bans, messages, peak_online, members)
            SELECT * FROM unnest($1::bigint[], $2::date[], $3::int[], $4::int[], $5::int[],
                                 $6::bigint[], $7::int[], $8::int[])
            ON CONFLICT (guild_id, day) DO UPDATE SET
                joins = d.joins + EXCLUDED.joins,
                leaves = d.leaves + EXCLUDED.leaves,
                bans = d.bans + EXCLUDED.bans,
                messages = d.messages + EXCLUDED.messages,
                peak_online = greatest(d.peak_online, EXCLUDED.peak_online),
                members = coalesce(EXCLUDED.members, d.members)
            """,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [t.joins for t in ts],
            [t.leaves for t in ts],
            [t.bans for t in ts],
            [t.messages for t in ts],
            [t.peak_online for t in ts],
            [t.members for t in ts],
        )
        if ch_g:
            await conn.execute(
                """
                INSERT INTO stats_channel_days AS c (guild_id, day, channel_id, messages)
                SELECT * FROM unnest($1::bigint[], $2::date[], $3::bigint[], $4::bigint[])
                ON CONFLICT (guild_id, day, channel_id)
                DO UPDATE SET messages = c.messages + EXCLUDED.messages
                """,
                ch_g,
                ch_d,
                ch_c,
                ch_n,
            )
        if ban_g:
            await conn.execute(
                """
                INSERT INTO stats_bans (guild_id, day, user_id, name)
                SELECT * FROM unnest($1::bigint[], $2::date[], $3::bigint[], $4::text[])
                """,
                ban_g,
                ban_d,
                ban_u,
                ban_n,
            )


async def days(pool: asyncpg.Pool, guild_id: int, first: date, last: date) -> list[DayRow]:
    rows = await pool.fetch(
        """
        SELECT day, joins, leaves, bans, messages, peak_online, members FROM stats_days
        WHERE guild_id = $1 AND day BETWEEN $2 AND $3 ORDER BY day
        """,
        guild_id,
        first,
        last,
    )
    return [DayRow(**dict(r)) for r in rows]


async def last_members_before(pool: asyncpg.Pool, guild_id: int, day: date) -> DayRow | None:
    row = await pool.fetchrow(
        """
        SELECT day, joins, leaves, bans, messages, peak_online, members FROM stats_days
        WHERE guild_id = $1 AND day < $2 AND members IS NOT NULL ORDER BY day DESC LIMIT 1
        """,
        guild_id,
        day,
    )
    return DayRow(**dict(row)) if row else None


async def channel_totals(
    pool: asyncpg.Pool, guild_id: int, first: date, last: date, top: int = 5
) -> dict[int, int]:
    rows = await pool.fetch(
        """
        SELECT channel_id, sum(messages)::bigint AS n FROM stats_channel_days
        WHERE guild_id = $1 AND day BETWEEN $2 AND $3
        GROUP BY channel_id ORDER BY n DESC, channel_id LIMIT $4
        """,
        guild_id,
        first,
        last,
        top,
    )
    return {r["channel_id"]: r["n"] for r in rows}


async def ban_names(pool: asyncpg.Pool, guild_id: int, first: date, last: date) -> list[str]:
    rows = await pool.fetch(
        "SELECT name FROM stats_bans WHERE guild_id = $1 AND day BETWEEN $2 AND $3 ORDER BY at",
        guild_id,
        first,
        last,
    )
    return [r["name"] for r in rows]


async def record_report(
    conn: asyncpg.Connection,
    guild_id: int,
    period: str,
    channel_id: int,
    message_id: int,
    *,
    late: bool,
) -> None:
    await conn.execute(
        """
        INSERT INTO stats_reports (guild_id, period, channel_id, message_id, late)
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (guild_id, period) DO NOTHING
        """,
        guild_id,
        period,
        channel_id,
        message_id,
        late,
    )


async def prune(pool: asyncpg.Pool, before: date) -> int:
    """Drop day rows (and their channels and bans) older than `before`; how many day rows."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM stats_channel_days WHERE day < $1", before)
        await conn.execute("DELETE FROM stats_bans WHERE day < $1", before)
        status = await conn.execute("DELETE FROM stats_days WHERE day < $1", before)
    return int(status.split()[-1])
