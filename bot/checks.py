"""Permission levels, declared on each command: `@requires(Level.MODERATOR)`.

The level of a caller comes from Discord permissions or the guild's configured roles. The
declared level is stored on the command (`extras["level"]`) so `help` can show it and list only
what the caller may use, and is enforced by a check that runs for prefix and slash invocations.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from enum import IntEnum
from typing import TYPE_CHECKING, Any, TypeVar

import discord
from discord.ext import commands

if TYPE_CHECKING:
    from bot.guild_settings import GuildSettings
    from bot.guildhouse import Guildhouse

T = TypeVar("T")


class Level(IntEnum):
    EVERYONE = 0
    MODERATOR = 1
    ADMIN = 2
    OWNER = 3

    @property
    def label(self) -> str:
        return {0: "everyone", 1: "moderators", 2: "admins", 3: "the bot's owners"}[self.value]


_MOD_PERMISSIONS = ("manage_messages", "kick_members", "ban_members", "moderate_members")
# The same as bit masks: `level_in` runs for every command and tests bits of one integer.
_ADMIN_BITS = discord.Permissions(administrator=True, manage_guild=True).value
_ADMINISTRATOR = discord.Permissions(administrator=True).value
_MOD_BITS = discord.Permissions(**dict.fromkeys(_MOD_PERMISSIONS, True)).value


class NotAllowed(commands.CheckFailure):
    """The caller's level is below the command's."""

    def __init__(self, needed: Level) -> None:
        super().__init__(f"This command is for {needed.label}.")
        self.needed = needed


async def level_of(bot: Guildhouse, user: discord.abc.User, guild: discord.Guild | None) -> Level:
    """The level of `user` in `guild`, looking the guild's settings up; a command has it as
    `ctx.level` (bot/context.py), looked up once."""
    settings = None
    if guild is not None and isinstance(user, discord.Member) and user.id != guild.owner_id:
        settings = await bot.guild_settings.get(guild.id)
    return level_in(bot.config.owner_ids, user, guild, settings)


def level_in(
    owner_ids: Collection[int],
    user: discord.abc.User,
    guild: discord.Guild | None,
    settings: GuildSettings | None,
) -> Level:
    """The level of `user` in `guild`, whose settings (its moderator and admin roles) are
    `settings` (None: none configured)."""
    if user.id in owner_ids:
        return Level.OWNER
    if not isinstance(user, discord.Member) or guild is None:
        return Level.EVERYONE
    if guild.owner_id == user.id:
        return Level.ADMIN
    # The member's guild-wide permissions, as `Member.guild_permissions` computes them, in one
    # pass over the role ids (it sorts the member's roles, and this runs for every command),
    # as an integer whose bits are tested directly.
    value = guild.default_role.permissions.value
    role_ids = user._roles  # the ids `Member.roles` is built from
    for role_id in role_ids:
        role = guild.get_role(role_id)
        if role is not None:
            value |= role.permissions.value
    if not value & _ADMINISTRATOR and user.timed_out_until is not None and user.is_timed_out():
        # As discord.py: a timeout leaves only reading, none of the permissions looked at here.
        value = 0
    admin_roles = settings.admin_roles if settings is not None else frozenset[int]()
    mod_roles = settings.mod_roles if settings is not None else frozenset[int]()
    if value & _ADMIN_BITS or not admin_roles.isdisjoint(role_ids):
        return Level.ADMIN
    if value & _MOD_BITS or not mod_roles.isdisjoint(role_ids):
        return Level.MODERATOR
    return Level.EVERYONE


def command_level(command: commands.Command[Any, ..., Any]) -> Level:
    level = Level.EVERYONE
    cmd: commands.Command[Any, ..., Any] | None = command
    while cmd is not None:  # a group's level applies to its subcommands
        marks = getattr(cmd.callback, "__guildhouse_extras__", {})
        declared = cmd.extras.get("level") or marks.get("level", Level.EVERYONE)
        level = max(level, declared)
        cmd = cmd.parent  # type: ignore[assignment]
    return level


async def check_level(ctx: commands.Context[Guildhouse], level: Level) -> bool:
    """The check behind `requires`; a cog whose commands all need one level calls it from its
    `cog_check` (and declares the level on each command, for help)."""
    if level >= Level.MODERATOR and ctx.guild is None and level < Level.OWNER:
        raise commands.NoPrivateMessage()
    if await caller_level(ctx) < level:
        raise NotAllowed(level)
    return True


async def caller_level(ctx: commands.Context[Guildhouse]) -> Level:
    """The caller's level: the one the command's context resolved (bot/context.py), or, for a
    context made elsewhere, looked up."""
    known = getattr(ctx, "level", None)
    if isinstance(known, Level):
        return known
    return await level_of(ctx.bot, ctx.author, ctx.guild)


def requires(level: Level) -> Callable[[T], T]:
    """Declare the level a command needs; enforced for prefix and slash use alike."""

    async def predicate(ctx: commands.Context[Guildhouse]) -> bool:
        return await check_level(ctx, level)

    def decorator(func: T) -> T:
        if isinstance(func, commands.Command):
            func.extras["level"] = level
        else:
            extras = getattr(func, "__guildhouse_extras__", {})
            extras["level"] = level
            func.__guildhouse_extras__ = extras  # type: ignore[attr-defined]
        return commands.check(predicate)(func)

    return decorator
