"""What a command passes before it runs: the guild's prefix, then two checks that every
command has, prefix or slash: not disabled in the guild, not throttled.

Plain functions of the context (its `bot` is the Guildhouse): the bot registers them once
(`command_prefix`, `add_check(..., call_once=True)`); commands add their own checks on top.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot import command_throttles, errors, metrics
from bot.checks import Level, level_of

if TYPE_CHECKING:
    from bot.core import Guildhouse

    Ctx = commands.Context[Guildhouse]


async def prefix_for(bot: Guildhouse, message: discord.Message) -> list[str]:
    """A mention of the bot, or the guild's prefix (`!` in DMs)."""
    mention = commands.when_mentioned(bot, message)
    if message.guild is None:
        return [*mention, "!"]
    settings = await bot.guild_settings.get(message.guild.id)
    return [*mention, settings.prefix]


async def not_disabled(ctx: Ctx) -> bool:
    """Refuse a command (or its group) that the guild's admins disabled."""
    if ctx.guild is None or ctx.command is None:
        return True
    settings = await ctx.bot.guild_settings.get(ctx.guild.id)
    root = ctx.command.root_parent or ctx.command
    if ctx.command.qualified_name in settings.disabled or root.name in settings.disabled:
        raise errors.CommandDisabled(ctx.command.qualified_name)
    return True


async def not_throttled(ctx: Ctx) -> bool:
    """Refuse a command over one of its throttle windows (bot/command_throttles.py); owners, and
    moderators where the guild exempts them, pass."""
    if ctx.command is None:
        return True
    bot = ctx.bot
    limiter = bot.rest_limiter
    # A prefix command nearly always answers with a message in its channel: the REST slot
    # for that message comes from this process's allotment of the global window when it
    # has one (no round trip), else it is asked for with the throttle's verdict (in its
    # round trip, or with the background count of a verdict made here), so the answer
    # waits for no round trip of its own, or only what is left of one (ipc/ratelimit.py,
    # `Prepaid`). Refused or unused, the slot lapses.
    if ctx.guild is not None:
        # A command is answered in its own channel, of a guild of this process's shards:
        # those buckets are this process's own (ipc/ratelimit.py, `own_buckets`).
        limiter.own_buckets(str(ctx.channel.id), str(ctx.guild.id))
    first = None
    if ctx.interaction is None:
        first = ("POST /channels/{major}/messages", str(ctx.channel.id))
        if limiter.prepay_from_allotment(*first):
            first = None
    settings = await bot.guild_settings.get(ctx.guild.id) if ctx.guild else None
    level = await level_of(bot, ctx.author, ctx.guild)
    if level >= Level.OWNER or (
        level >= Level.MODERATOR and command_throttles.exempt_mods(bot.throttle_defaults, settings)
    ):
        return True
    windows = command_throttles.windows(
        ctx.command,
        ctx.author.id,
        ctx.guild.id if ctx.guild else None,
        bot.throttle_defaults,
        settings,
    )
    root = (ctx.command.root_parent or ctx.command).name
    route = first if windows else None
    verdict = await bot.throttle.hit(
        windows,
        told_key=f"{ctx.author.id}:{root}",
        also=limiter.prepay_call(*route) if route else None,
    )
    if route is not None and verdict.also is not None:
        limiter.prepaid(*route, verdict.also)
    if verdict.allowed:
        return True
    metrics.THROTTLED.labels(bot.cluster_label, root).inc()
    raise errors.Throttled(verdict.retry_after, tell=verdict.tell)
