"""The audit log: every state-changing moderator/admin/owner action, written with the change.

`audited()` runs the change and writes its audit row in one transaction: a change that fails
writes no row, and a row never describes a change that did not happen. After the commit the
entry is posted to the guild's log channel, if one is set.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg
import discord
from discord.ext import commands

from bot.ui import fit_embed, truncate

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)

Change = Callable[[asyncpg.Connection], Awaitable[tuple[Any, Any]]]


@dataclass(frozen=True)
class AuditEntry:
    id: int
    guild_id: int
    actor_id: int
    action: str
    channel_id: int | None
    target_id: int | None
    before: Any
    after: Any
    created_at: datetime

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> AuditEntry:
        return cls(**dict(r))


async def write(
    conn: asyncpg.Connection,
    *,
    guild_id: int,
    actor_id: int,
    action: str,
    channel_id: int | None = None,
    target_id: int | None = None,
    before: Any = None,
    after: Any = None,
) -> AuditEntry:
    row = await conn.fetchrow(
        """
        INSERT INTO audit_log (guild_id, actor_id, action, channel_id, target_id, before, after)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        RETURNING id, guild_id, actor_id, action, channel_id, target_id, before, after, created_at
        """,
        guild_id,
        actor_id,
        action,
        channel_id,
        target_id,
        before,
        after,
    )
    assert row is not None
    return AuditEntry.from_record(row)


async def record_change(
    pool: asyncpg.Pool,
    *,
    guild_id: int,
    actor_id: int,
    action: str,
    change: Change,
    channel_id: int | None = None,
    target_id: int | None = None,
) -> AuditEntry:
    """Run `change(conn)` -> (before, after) and write its audit row, in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        before, after = await change(conn)
        return await write(
            conn,
            guild_id=guild_id,
            actor_id=actor_id,
            action=action,
            channel_id=channel_id,
            target_id=target_id,
            before=before,
            after=after,
        )


async def audited(bot: Guildhouse, **kwargs: Any) -> AuditEntry:
    """`record_change`, then post the entry to the guild's log channel."""
    entry = await record_change(bot.pool, **kwargs)
    await post(bot, entry)
    return entry


class Settings(Protocol):
    def as_json(self) -> Any: ...


async def audited_settings(
    bot: Guildhouse,
    ctx: commands.Context[Any],
    action: str,
    *,
    old: Settings,
    new: Settings,
    save: Callable[[asyncpg.Connection, Any], Awaitable[None]],
    target_id: int | None = None,
) -> AuditEntry:
    """A moderator's or admin's change of a guild's settings: `save(conn, new)` and the audit
    row (before/after from `as_json()`) in one transaction, then posted to the log channel.
    The caller announces the change to the other workers once this returns."""
    assert ctx.guild is not None

    async def change(conn: asyncpg.Connection) -> tuple[Any, Any]:
        await save(conn, new)
        return old.as_json(), new.as_json()

    return await audited(
        bot,
        guild_id=ctx.guild.id,
        actor_id=ctx.author.id,
        action=action,
        change=change,
        channel_id=ctx.channel.id,
        target_id=target_id,
    )


async def recent(
    pool: asyncpg.Pool,
    guild_id: int,
    *,
    target_id: int | None = None,
    actor_id: int | None = None,
    action: str | None = None,
    limit: int = 250,
) -> list[AuditEntry]:
    rows = await pool.fetch(
        """
        SELECT id, guild_id, actor_id, action, channel_id, target_id, before, after, created_at
        FROM audit_log
        WHERE guild_id = $1
          AND ($2::bigint IS NULL OR target_id = $2 OR actor_id = $2)
          AND ($3::bigint IS NULL OR actor_id = $3)
          AND ($4::text IS NULL OR action LIKE $4 || '%')
        ORDER BY created_at DESC, id DESC
        LIMIT $5
        """,
        guild_id,
        target_id,
        actor_id,
        action,
        limit,
    )
    return [AuditEntry.from_record(r) for r in rows]


def _short(value: Any) -> str:
    if value is None:
        return "—"
    return truncate(str(value), 200)


def describe(entry: AuditEntry) -> str:
    when = discord.utils.format_dt(entry.created_at, "R")
    target = f" on <@{entry.target_id}>" if entry.target_id else ""
    where = f" in <#{entry.channel_id}>" if entry.channel_id else ""
    return (
        f"`#{entry.id}` {when} <@{entry.actor_id}> **{entry.action}**{target}{where}: "
        f"{_short(entry.before)} → {_short(entry.after)}"
    )


async def post(bot: Guildhouse, entry: AuditEntry) -> None:
    settings = await bot.guild_settings.get(entry.guild_id)
    if settings.log_channel is None:
        return
    channel = bot.get_channel(settings.log_channel)
    if not isinstance(channel, discord.abc.Messageable):
        return  # deleted, or not visible to us: the database row is what counts
    embed = discord.Embed(
        title=f"Audit: {entry.action}",
        description=describe(entry),
        colour=0xF0B232,
        timestamp=entry.created_at,
    )
    try:
        await channel.send(embed=fit_embed(embed), allowed_mentions=discord.AllowedMentions.none())
    except discord.HTTPException as exc:
        log.warning("could not post audit entry %s to the log channel: %s", entry.id, exc)
