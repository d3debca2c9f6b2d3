"""What a command passes before it runs: the guild's prefix, then two checks that every
command has, prefix or slash: not disabled in the guild, not throttled.

Plain functions of the context (a `CommandContext`, bot/context.py: the guild's settings and
the caller's level come with it, looked up once per command); the bot registers them once
(`command_prefix`, `add_check(..., call_once=True)`); commands add their own checks on top.
The throttle check also reserves the command's answer with the REST limiter (`reserve_reply`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot import command_throttles, errors, metrics, rest_limits
from bot.checks import Level
from bot.context import CommandContext, prefixes
from ipc.ratelimit import Reservation

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

# A prefix command's answer: a message in its channel.
ANSWER_ROUTE = "POST /channels/{major}/messages"


async def prefix_for(bot: Guildhouse, message: discord.Message) -> list[str]:
    """A mention of the bot, or the guild's prefix (`!` in DMs): discord.py's `get_prefix`.
    A command's context reads its prefix from the settings it looks up (bot/context.py)."""
    settings = await bot.guild_settings.get(message.guild.id) if message.guild else None
    return list(prefixes(bot, settings))


async def not_disabled(ctx: CommandContext) -> bool:
    """Refuse a command (or its group) that the guild's admins disabled."""
    settings = ctx.settings
    if settings is None or ctx.command is None or not settings.disabled:
        return True
    root = ctx.command.root_parent or ctx.command
    if ctx.command.qualified_name in settings.disabled or root.name in settings.disabled:
        raise errors.CommandDisabled(ctx.command.qualified_name)
    return True


def reserve_reply(ctx: CommandContext) -> Reservation:
    """Reserve the command's answer with the REST limiter (ipc/ratelimit/, `reserve`): a
    prefix command nearly always answers with a message in its channel, whose slot of the
    global window comes from this process's allotment when it has one (no round trip); the
    command's channel and guild, of this process's shards, are buckets no other process sends
    in. Its requests spend the reservation (bot/rest_limits.py, `answering`);
    `Guildhouse.invoke` settles it when the command ends."""
    channel = str(ctx.channel.id)
    owns = (channel, str(ctx.guild.id)) if ctx.guild is not None else ()
    route, major = (ANSWER_ROUTE, channel) if ctx.interaction is None else ("", "")
    reservation = ctx.bot.rest_limiter.reserve(route, major, owns=owns)
    ctx.reservation = reservation
    rest_limits.answering(reservation)
    return reservation


def settle_reply(ctx: commands.Context[Guildhouse]) -> None:
    """The command has ended: settle the reservation `reserve_reply` made for its answer."""
    reservation = getattr(ctx, "reservation", None)
    if reservation is not None:
        ctx.bot.rest_limiter.settle(reservation)


async def not_throttled(ctx: CommandContext) -> bool:
    """Refuse a command over one of its throttle windows (bot/command_throttles.py); owners, and
    moderators where the guild exempts them, pass. A reply slot the allotment had none for is
    bought with the throttle's verdict (in its round trip, or with the background count of a
    verdict made here), so the answer waits for no round trip of its own, or only what is left
    of one. Refused or unused, it is settled when the command ends."""
    if ctx.command is None:
        return True
    bot = ctx.bot
    reservation = reserve_reply(ctx)
    settings, level = ctx.settings, ctx.level
    if level >= Level.OWNER or (
        level >= Level.MODERATOR and command_throttles.exempt_mods(bot.throttle_defaults, settings)
    ):
        return True
    guild_id = ctx.guild.id if ctx.guild else None
    windows = command_throttles.windows(
        ctx.command, ctx.author.id, guild_id, bot.throttle_defaults, settings
    )
    root = (ctx.command.root_parent or ctx.command).name
    buy = bot.rest_limiter.buy_call(reservation) if windows else None
    verdict = await bot.throttle.hit(windows, told_key=f"{ctx.author.id}:{root}", also=buy)
    if buy is not None:
        bot.rest_limiter.bought(reservation, verdict.also)
    if verdict.allowed:
        return True
    metrics.THROTTLED.labels(bot.cluster_label, root).inc()
    raise errors.Throttled(verdict.retry_after, tell=verdict.tell)
