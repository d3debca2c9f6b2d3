"""Punishments shared by the commands and automod: a ban (or tempban, with its end as a job),
and a warning with the server's thresholds applied."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import asyncpg
import discord

from bot import jobs
from bot.cogs.moderation import rules, store
from bot.cogs.moderation.actions import Moderator, Refused, audit_reason, discord_call
from bot.cogs.moderation.rules import Threshold
from bot.cogs.moderation.store import Case, NewCase


async def ban(
    mod: Moderator,
    guild: discord.Guild,
    new: NewCase,
    *,
    duration: timedelta | None,
    days: int,
    header: str,
) -> Case:
    """Ban, then the case; with a duration a tempban, whose end is scheduled in the case's
    transaction (bot/cogs/moderation/bans.py runs it)."""
    mod.expect(guild.id, new.target_id, "ban")
    await discord_call(
        "ban them",
        guild.ban(
            discord.Object(new.target_id), reason=header, delete_message_seconds=days * 86400
        ),
    )
    if duration is None:
        return await mod.record(new)
    runner = jobs.of(mod.bot)
    due = (runner.now() or mod.clock()) + duration
    tempban = replace(new, action="tempban", duration=duration, expires_at=due)

    async def end(conn: asyncpg.Connection, case: Case) -> None:
        await store.schedule_unban(conn, guild.id, new.target_id, due, case.number)

    case = await mod.record(tempban, end)
    await runner.notify()
    return case


async def warn(mod: Moderator, member: discord.Member, new: NewCase) -> tuple[Case, int, str]:
    """Record the warning; if the member's active warnings now reach a threshold, apply it.
    Returns the case, the number of active warnings and a sentence about the threshold ('' if
    none was reached)."""
    guild = member.guild
    case = await mod.record(new)
    settings = await store.get_settings(mod.bot.pool, guild.id)
    active = await store.active_warnings(
        mod.bot.pool, guild.id, member.id, expiry=settings.warn_expiry, now=mod.clock()
    )
    threshold = rules.reached(settings.thresholds, len(active))
    said = ""
    if threshold is not None:
        said = await apply_threshold(mod, member, threshold, active, new.channel_id)
    return case, len(active), said


async def apply_threshold(
    mod: Moderator, member: discord.Member, t: Threshold, cites: list[int], channel_id: int | None
) -> str:
    """The threshold's action as its own case, by the bot, citing the warnings."""
    guild = member.guild
    me = guild.me
    reason = f"Reached {t.count} warnings (cases {', '.join(str(n) for n in cites)})"
    new = NewCase(
        guild_id=guild.id,
        action=t.action,
        target_id=member.id,
        moderator_id=me.id,
        reason=reason,
        cites=cites,
        channel_id=channel_id,
    )
    header = audit_reason(me, reason)
    try:
        if me.top_role.position <= member.top_role.position or member.id == guild.owner_id:
            raise Refused(f"I rank at or below {member.mention}, so I can't {t.action} them.")
        if t.action == "timeout":
            assert t.duration is not None
            until = discord.utils.utcnow() + t.duration
            await discord_call("time them out", member.timeout(until, reason=header))
            case = await mod.record(replace(new, duration=t.duration, expires_at=until))
        elif t.action == "kick":
            await mod.tell(guild, member, "kicked from", reason)
            await discord_call("kick them", member.kick(reason=header))
            case = await mod.record(new)
        else:
            await mod.tell(guild, member, "banned from", reason)
            case = await ban(mod, guild, new, duration=t.duration, days=0, header=header)
    except Refused as exc:
        return f"The threshold ({t.describe()}) was reached but not applied: {exc}"
    return f"Threshold reached ({t.describe()}): case {case.number}."
