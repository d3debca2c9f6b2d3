"""The context every command runs with: the guild's settings and the caller's level, resolved
once per command.

`Guildhouse.get_context` makes a `CommandContext` for every message on discord.py's full path
and every interaction a hybrid command answers: it looks the guild's settings up once (the
prefix is read from them), and the checks (bot/gate.py, bot/checks.py), the error handler and
the cogs read `ctx.settings` and `ctx.level` from then on instead of asking the settings store
again. `ctx.reservation` is what the command may spend on its answer with the REST limiter
(bot/gate.py reserves it, `Guildhouse.invoke` settles it).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands
from discord.ext.commands.view import StringView

from bot.checks import Level, level_in
from bot.guild_settings import DEFAULT_PREFIX, GuildSettings
from ipc.ratelimit import Reservation

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse


class CommandContext(commands.Context["Guildhouse"]):
    """discord.py's context, with what every command's checks ask about its guild and caller."""

    settings: GuildSettings | None = None  # the guild's; None in DMs
    reservation: Reservation | None = None  # the answer's, with the REST limiter

    @functools.cached_property
    def level(self) -> Level:
        """The caller's permission level here (bot/checks.py), from `settings`."""
        return level_in(self.bot.config.owner_ids, self.author, self.guild, self.settings)


def prefixes(bot: Guildhouse, settings: GuildSettings | None) -> tuple[str, ...]:
    """What a command starts with: a mention of the bot, or the guild's prefix (`!` in DMs)."""
    prefix = settings.prefix if settings is not None else DEFAULT_PREFIX
    user = bot.user
    if user is None:
        return (prefix,)
    return (f"<@{user.id}> ", f"<@!{user.id}> ", prefix)


async def resolve(
    bot: Guildhouse, origin: discord.Message | discord.Interaction[Any], cls: type[Any]
) -> Any:
    """The context of `origin` (a `cls`, a CommandContext unless a caller asks otherwise),
    with the guild's settings looked up once."""
    if isinstance(origin, discord.Interaction):
        ctx = await cls.from_interaction(origin)
        guild = ctx.guild
        ctx.settings = await bot.guild_settings.get(guild.id) if guild is not None else None
        return ctx
    return await _of_message(bot, origin, cls)


async def _of_message(bot: Guildhouse, message: discord.Message, cls: type[Any]) -> Any:
    """discord.py's `Bot.get_context` for a message, with the prefix read from the guild's
    settings, which the context keeps: what discord.py's does with `command_prefix` and
    `strip_after_prefix`, the command looked up by its first word."""
    view = StringView(message.content)
    ctx = cls(prefix=None, view=view, bot=bot, message=message)
    if bot.user is not None and message.author.id == bot.user.id:
        return ctx
    guild = message.guild
    ctx.settings = settings = await bot.guild_settings.get(guild.id) if guild else None
    for prefix in prefixes(bot, settings):
        if view.skip_string(prefix):
            break
    else:
        return ctx
    if bot.strip_after_prefix:
        view.skip_ws()
    invoker = view.get_word()
    ctx.invoked_with = invoker
    ctx.prefix = prefix
    ctx.command = bot.all_commands.get(invoker)
    return ctx


async def guild_settings_of(ctx: commands.Context[Guildhouse]) -> GuildSettings:
    """The settings of the guild a (guild-only) command runs in: the context's, or, for a
    context made elsewhere, looked up."""
    settings = getattr(ctx, "settings", None)
    if isinstance(settings, GuildSettings):
        return settings
    if ctx.guild is None:
        raise commands.NoPrivateMessage()
    return await ctx.bot.guild_settings.get(ctx.guild.id)
