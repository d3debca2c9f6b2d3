"""Moderation's SQL (migration 0009): cases, notes, settings, known bans, tempban jobs.

A case and its audit_log row are written in one transaction (`record`); so is a tempban's
end (a `jobs` row of kind `moderation.unban`), so a case never exists without its audit row
nor a tempban without its end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from bot import audit
from bot.cogs.moderation.automod_rules import Automod
from bot.cogs.moderation.rules import Threshold
from bot.jobs import store as jobs_store

UNBAN_JOB = "moderation.unban"

_CASE_COLUMNS = (
    "guild_id, number, action, target_id, moderator_id, reason, duration_s, expires_at, "
    "cites, details, audit_id, created_at, updated_at"
)


@dataclass(frozen=True)
class Case:
    guild_id: int
    number: int
    action: str
    target_id: int
    moderator_id: int | None
    reason: str | None
    duration_s: int | None
    expires_at: datetime | None
    cites: list[int]
    details: dict[str, Any]
    audit_id: int | None
    created_at: datetime
    updated_at: datetime | None

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> Case:
        data = dict(r)
        data["cites"] = list(data["cites"] or [])
        data["details"] = dict(data["details"] or {})
        return cls(**data)

    @property
    def duration(self) -> timedelta | None:
        return timedelta(seconds=self.duration_s) if self.duration_s else None


@dataclass(frozen=True)
class NewCase:
    """What a moderator did, before it has a number."""

    guild_id: int
    action: str
    target_id: int
    moderator_id: int | None
    reason: str | None = None
    duration: timedelta | None = None
    expires_at: datetime | None = None
    cites: list[int] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    channel_id: int | None = None  # where the command was given (audit row)


# Work done in the case's transaction, after the case row: a tempban's job, the known bans.
Extra = Callable[[asyncpg.Connection, Case], Awaitable[None]]


async def _next_number(conn: asyncpg.Connection, guild_id: int) -> int:
    number = await conn.fetchval(
        """
        INSERT INTO mod_case_numbers (guild_id, last) VALUES ($1, 1)
        ON CONFLICT (guild_id) DO UPDATE SET last = mod_case_numbers.last + 1
        RETURNING last
        """,
        guild_id,
    )
    return int(number)


async def open_case(conn: asyncpg.Connection, new: NewCase) -> Case:
    """The case and its audit row, in the caller's transaction."""
    number = await _next_number(conn, new.guild_id)
    seconds = int(new.duration.total_seconds()) if new.duration else None
    entry = await audit.write(
        conn,
        guild_id=new.guild_id,
        actor_id=new.moderator_id or 0,  # 0: not known (a ban made in Discord's own UI)
        action=f"moderation.{new.action}",
        channel_id=new.channel_id,
        target_id=new.target_id,
        before=None,
        after={
            "case": number,
            "reason": new.reason,
            "seconds": seconds,
            "cites": new.cites,
            **new.details,
        },
    )
    row = await conn.fetchrow(
        f"""
        INSERT INTO mod_cases (guild_id, number, action, target_id, moderator_id, reason,
                               duration_s, expires_at, cites, details, audit_id, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        RETURNING {_CASE_COLUMNS}
        """,  # noqa: S608 - constant fragments only
        new.guild_id,
        number,
        new.action,
        new.target_id,
        new.moderator_id,
        new.reason,
        seconds,
        new.expires_at,
        new.cites,
        new.details,
        entry.id,
        entry.created_at,
    )
    assert row is not None
    return Case.from_record(row)


async def record(pool: asyncpg.Pool, new: NewCase, extra: Extra | None = None) -> Case:
    """Write a case with its audit row (and `extra`) in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        case = await open_case(conn, new)
        if extra is not None:
            await extra(conn, case)
        return case


async def get_case(pool: asyncpg.Pool, guild_id: int, number: int) -> Case | None:
    row = await pool.fetchrow(
        f"SELECT {_CASE_COLUMNS} FROM mod_cases WHERE guild_id = $1 AND number = $2",  # noqa: S608
        guild_id,
        number,
    )
    return Case.from_record(row) if row else None


async def last_case(pool: asyncpg.Pool, guild_id: int, target_id: int, action: str) -> Case | None:
    row = await pool.fetchrow(
        f"""
        SELECT {_CASE_COLUMNS} FROM mod_cases
        WHERE guild_id = $1 AND target_id = $2 AND action = $3
        ORDER BY number DESC LIMIT 1
        """,  # noqa: S608 - constant fragments only
        guild_id,
        target_id,
        action,
    )
    return Case.from_record(row) if row else None


async def cases_for(
    pool: asyncpg.Pool, guild_id: int, target_id: int | None, *, limit: int = 200
) -> list[Case]:
    rows = await pool.fetch(
        f"""
        SELECT {_CASE_COLUMNS} FROM mod_cases
        WHERE guild_id = $1 AND ($2::bigint IS NULL OR target_id = $2)
        ORDER BY number DESC LIMIT $3
        """,  # noqa: S608 - constant fragments only
        guild_id,
        target_id,
        limit,
    )
    return [Case.from_record(r) for r in rows]


async def edit_reason(
    pool: asyncpg.Pool, guild_id: int, number: int, reason: str, *, actor_id: int, channel_id: int
) -> Case | None:
    """Change a case's reason, with an audit row naming the old and the new one."""
    async with pool.acquire() as conn, conn.transaction():
        old = await conn.fetchval(
            "SELECT reason FROM mod_cases WHERE guild_id = $1 AND number = $2 FOR UPDATE",
            guild_id,
            number,
        )
        row = await conn.fetchrow(
            f"""
            UPDATE mod_cases SET reason = $3, updated_at = now()
            WHERE guild_id = $1 AND number = $2 RETURNING {_CASE_COLUMNS}
            """,  # noqa: S608 - constant fragments only
            guild_id,
            number,
            reason,
        )
        if row is None:
            return None
        case = Case.from_record(row)
        await audit.write(
            conn,
            guild_id=guild_id,
            actor_id=actor_id,
            action="moderation.reason",
            channel_id=channel_id,
            target_id=case.target_id,
            before={"case": number, "reason": old},
            after={"case": number, "reason": reason},
        )
        return case


async def active_warnings(
    conn: asyncpg.Connection | asyncpg.Pool,
    guild_id: int,
    target_id: int,
    *,
    expiry: timedelta | None,
    now: datetime,
) -> list[int]:
    """The numbers of the member's warnings that have not expired, oldest first."""
    since = now - expiry if expiry else None
    rows = await conn.fetch(
        """
        SELECT number FROM mod_cases
        WHERE guild_id = $1 AND target_id = $2 AND action = 'warn'
          AND ($3::timestamptz IS NULL OR created_at > $3)
        ORDER BY number
        """,
        guild_id,
        target_id,
        since,
    )
    return [int(r["number"]) for r in rows]


# -- notes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    id: int
    author_id: int
    body: str
    created_at: datetime


async def add_note(
    pool: asyncpg.Pool, *, guild_id: int, target_id: int, author_id: int, body: str, channel_id: int
) -> Note:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            INSERT INTO mod_notes (guild_id, target_id, author_id, body) VALUES ($1, $2, $3, $4)
            RETURNING id, author_id, body, created_at
            """,
            guild_id,
            target_id,
            author_id,
            body,
        )
        assert row is not None
        await audit.write(
            conn,
            guild_id=guild_id,
            actor_id=author_id,
            action="moderation.note",
            channel_id=channel_id,
            target_id=target_id,
            after={"note": row["id"]},
        )
        return Note(**dict(row))


async def notes_for(pool: asyncpg.Pool, guild_id: int, target_id: int) -> list[Note]:
    rows = await pool.fetch(
        """
        SELECT id, author_id, body, created_at FROM mod_notes
        WHERE guild_id = $1 AND target_id = $2 ORDER BY id DESC LIMIT 200
        """,
        guild_id,
        target_id,
    )
    return [Note(**dict(r)) for r in rows]


# -- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModSettings:
    guild_id: int
    dm_members: bool = True
    warn_expiry: timedelta | None = None
    thresholds: tuple[Threshold, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "dm_members": self.dm_members,
            "warn_expiry_s": int(self.warn_expiry.total_seconds()) if self.warn_expiry else None,
            "thresholds": [t.as_json() for t in self.thresholds],
        }


async def get_settings(pool: asyncpg.Pool | asyncpg.Connection, guild_id: int) -> ModSettings:
    row = await pool.fetchrow(
        "SELECT dm_members, warn_expiry_s, thresholds FROM mod_settings WHERE guild_id = $1",
        guild_id,
    )
    if row is None:
        return ModSettings(guild_id)
    return ModSettings(
        guild_id,
        dm_members=row["dm_members"],
        warn_expiry=timedelta(seconds=row["warn_expiry_s"]) if row["warn_expiry_s"] else None,
        thresholds=tuple(Threshold.from_json(t) for t in row["thresholds"] or []),
    )


async def save_settings(conn: asyncpg.Connection, new: ModSettings) -> None:
    data = new.as_json()
    await conn.execute(
        """
        INSERT INTO mod_settings (guild_id, dm_members, warn_expiry_s, thresholds)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (guild_id) DO UPDATE SET dm_members = excluded.dm_members,
            warn_expiry_s = excluded.warn_expiry_s, thresholds = excluded.thresholds
        """,
        new.guild_id,
        data["dm_members"],
        data["warn_expiry_s"],
        data["thresholds"],
    )


# -- automod -----------------------------------------------------------------------------------


async def get_automod(pool: asyncpg.Pool, guild_id: int) -> Automod:
    data = await pool.fetchval("SELECT rules FROM mod_automod WHERE guild_id = $1", guild_id)
    return Automod.from_json(data)


def automod_saver(guild_id: int) -> Callable[[asyncpg.Connection, Automod], Awaitable[None]]:
    async def save(conn: asyncpg.Connection, new: Automod) -> None:
        await conn.execute(
            """
            INSERT INTO mod_automod (guild_id, rules) VALUES ($1, $2)
            ON CONFLICT (guild_id) DO UPDATE SET rules = excluded.rules
            """,
            guild_id,
            new.as_json(),
        )

    return save


# -- tempban jobs ------------------------------------------------------------------------------


def unban_key(guild_id: int, user_id: int, case: int) -> str:
    """One job per tempban case (jobs are never deleted, so a key is never reused)."""
    return f"{guild_id}:{user_id}:{case}"


async def schedule_unban(
    conn: asyncpg.Connection, guild_id: int, user_id: int, due: datetime, case: int
) -> None:
    """A tempban's end, in the case's transaction; run by the jobs runner of the cluster whose
    shards have the server (bot/jobs)."""
    await jobs_store.schedule(
        conn,
        UNBAN_JOB,
        unban_key(guild_id, user_id, case),
        due,
        guild_id=guild_id,
        payload={"guild_id": guild_id, "user_id": user_id, "case": case},
    )


async def latest_ban_case(
    conn: asyncpg.Connection | asyncpg.Pool, guild_id: int, user_id: int
) -> Case | None:
    """The member's last case that banned or unbanned them: a tempban's end unbans only while
    its own case is the last (not after a manual unban, or a later ban)."""
    row = await conn.fetchrow(
        f"""
        SELECT {_CASE_COLUMNS} FROM mod_cases
        WHERE guild_id = $1 AND target_id = $2
          AND action IN ('ban', 'tempban', 'softban', 'unban')
        ORDER BY number DESC LIMIT 1
        """,  # noqa: S608 - constant fragments only
        guild_id,
        user_id,
    )
    return Case.from_record(row) if row else None


# -- known bans (ban sync) ---------------------------------------------------------------------


async def note_ban(
    conn: asyncpg.Connection | asyncpg.Pool, guild_id: int, user_id: int, banned: bool
) -> bool:
    """Record that the user is (or no longer is) banned; True if that is news."""
    if banned:
        status = await conn.execute(
            "INSERT INTO mod_bans (guild_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            guild_id,
            user_id,
        )
    else:
        status = await conn.execute(
            "DELETE FROM mod_bans WHERE guild_id = $1 AND user_id = $2", guild_id, user_id
        )
    return not status.endswith(" 0")


async def known_bans(pool: asyncpg.Pool, guild_id: int) -> set[int] | None:
    """The bans recorded at the last sync; None if the server was never synced."""
    async with pool.acquire() as conn:
        synced = await conn.fetchval("SELECT 1 FROM mod_ban_syncs WHERE guild_id = $1", guild_id)
        if synced is None:
            return None
        rows = await conn.fetch("SELECT user_id FROM mod_bans WHERE guild_id = $1", guild_id)
        return {int(r["user_id"]) for r in rows}


async def replace_bans(pool: asyncpg.Pool, guild_id: int, user_ids: Iterable[int]) -> None:
    ids = sorted(set(user_ids))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM mod_bans WHERE guild_id = $1", guild_id)
        await conn.executemany(
            "INSERT INTO mod_bans (guild_id, user_id) VALUES ($1, $2)", [(guild_id, u) for u in ids]
        )
        await conn.execute(
            """
            INSERT INTO mod_ban_syncs (guild_id) VALUES ($1)
            ON CONFLICT (guild_id) DO UPDATE SET synced_at = now()
            """,
            guild_id,
        )


async def moderated_guilds(pool: asyncpg.Pool) -> list[int]:
    """Servers that use moderation (a case, settings or a synced ban list): ban sync reads
    their ban lists at start; others are read when a ban event first arrives."""
    rows = await pool.fetch(
        """
        SELECT guild_id FROM mod_case_numbers
        UNION SELECT guild_id FROM mod_settings
        UNION SELECT guild_id FROM mod_ban_syncs
        """
    )
    return [int(r["guild_id"]) for r in rows]
