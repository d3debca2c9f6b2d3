"""The Aliases cog: `alias add/remove/list`, `alias server add/remove`, and running an alias
when a prefix command isn't found.

Resolution happens only for a message whose first word after the prefix is no command
(discord.py reports it as CommandNotFound), from a per-worker cache of each server's aliases
(bot/guild_cache.py: loaded once, then kept current across clusters by a Redis announcement
on every change), so a message costs no database round trip; a server with no aliases is
cached as empty.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from discord import app_commands
from discord.ext import commands

from bot.checks import Level, requires
from bot.cogs.aliases import store
from bot.cogs.aliases.rules import (
    MAX_MEMBER,
    MAX_SERVER,
    SERVER,
    AliasError,
    GuildAliases,
    check_expansion,
    check_name,
    expand,
)
from bot.context import CommandContext
from bot.guild_cache import GuildCache
from bot.ui import pages_from_lines, safe_text, send_pages

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

Ctx = CommandContext


class Aliases(commands.Cog, name="Aliases"):
    """Short names for commands you use often."""

    def __init__(self, bot: Guildhouse) -> None:
        self.bot = bot
        self.cache: GuildCache[GuildAliases] = GuildCache(
            bot.redis,
            bot.keys("events", "aliases"),
            lambda guild_id: store.load(bot.pool, guild_id),
            what="aliases",
            fallback=lambda _: GuildAliases(),
        )

    async def cog_load(self) -> None:
        if self.bot.rest_only:  # `guildhouse commands sync`: no Redis, no aliases to run
            return
        await self.cache.start()

    async def cog_unload(self) -> None:
        await self.cache.stop()

    def _builtins(self) -> set[str]:
        return {name.lower() for name in self.bot.all_commands}

    # -- running an alias ------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_command_error(self, ctx: commands.Context[Any], error: Exception) -> None:
        if (
            not isinstance(error, commands.CommandNotFound)
            or ctx.guild is None
            or not ctx.invoked_with
            or ctx.prefix is None
            or ctx.interaction is not None
            or getattr(ctx, "alias_of", None) is not None  # an alias's own message: never again
        ):
            return
        aliases = await self.cache.get(ctx.guild.id)
        expansion = aliases.find(ctx.author.id, ctx.invoked_with)
        if expansion is None:
            return
        message = copy.copy(ctx.message)
        message.content = f"{ctx.prefix}{expand(expansion, ctx.view.read_rest())}"
        run = await self.bot.get_context(message)
        if run.command is None:  # its command was removed since: say nothing, as for a typo
            return
        run.alias_of = ctx.invoked_with.lower()
        await self.bot.invoke(run)

    # -- commands --------------------------------------------------------------------------

    @commands.hybrid_group(
        name="alias",
        fallback="list",
        extras={
            "examples": [
                "alias add dodge roll 6! tn4",
                "alias list",
                "alias remove dodge",
                "alias server add init initiative add",
            ]
        },
    )
    @commands.guild_only()
    async def alias(self, ctx: Ctx) -> None:
        """Short names for commands: `alias add dodge roll 6! tn4`, then `!dodge # vs the
        goblin` runs `!roll 6! tn4 # vs the goblin` (what you type after the name is added).

        Aliases work with the prefix only, not as slash commands: Discord lets a bot register
        at most 100 slash commands and 200 changes a day per server, so aliases made by members
        can't be slash commands. An alias runs a built-in command, can't reuse a built-in
        command's name (or its short name, like `r` for `roll`) and can't run another alias.
        Your own aliases win over the server's of the same name. Each member may have
        15 aliases in a server, and the server's admins 50 for everyone."""
        assert ctx.guild is not None
        aliases = await self.cache.get(ctx.guild.id)
        prefix = ctx.settings.prefix if ctx.settings is not None else ctx.clean_prefix
        mine = aliases.members.get(ctx.author.id, {})
        lines = [f"**Yours** ({len(mine)} of {MAX_MEMBER})"]
        lines += [f"`{prefix}{n}` → `{prefix}{safe_text(e, 200)}`" for n, e in sorted(mine.items())]
        if not mine:
            lines.append("none yet: `alias add <name> <command>`")
        lines.append(f"**The server's** ({len(aliases.server)} of {MAX_SERVER})")
        lines += [
            f"`{prefix}{n}` → `{prefix}{safe_text(e, 200)}`"
            for n, e in sorted(aliases.server.items())
        ]
        if not aliases.server:
            lines.append("none")
        await send_pages(ctx, pages_from_lines("Aliases", lines, per_page=20))

    @alias.command(name="add", extras={"examples": ["alias add dodge roll 6! tn4"]})
    @commands.guild_only()
    @app_commands.describe(name="The short name", command="What it runs, e.g. roll 6! tn4")
    async def add(self, ctx: Ctx, name: str, *, command: str) -> None:
        """Make (or change) an alias of your own for a command with arguments."""
        await self._add(ctx, ctx.author.id, name, command, MAX_MEMBER)

    @alias.command(name="remove", aliases=["delete"], extras={"examples": ["alias remove dodge"]})
    @commands.guild_only()
    @app_commands.describe(name="One of your aliases")
    async def remove(self, ctx: Ctx, name: str) -> None:
        """Remove one of your own aliases."""
        await self._remove(ctx, ctx.author.id, name)

    @alias.group(name="server", extras={"examples": ["alias server add init initiative add"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    async def server(self, ctx: Ctx) -> None:
        """The server's aliases, which everyone may use (admins)."""
        if ctx.invoked_subcommand is None:
            await ctx.send(
                "Use `alias server add <name> <command>` or `alias server remove <name>`."
            )

    @server.command(name="add", extras={"examples": ["alias server add init initiative add"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(name="The short name", command="What it runs, e.g. roll 6! tn4")
    async def server_add(self, ctx: Ctx, name: str, *, command: str) -> None:
        """Make (or change) an alias everyone in the server may use."""
        await self._add(ctx, SERVER, name, command, MAX_SERVER)

    @server.command(name="remove", extras={"examples": ["alias server remove init"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(name="One of the server's aliases")
    async def server_remove(self, ctx: Ctx, name: str) -> None:
        """Remove one of the server's aliases."""
        await self._remove(ctx, SERVER, name)

    async def _add(self, ctx: Ctx, owner: int, name: str, command: str, limit: int) -> None:
        assert ctx.guild is not None
        builtins = self._builtins()
        name = check_name(name, builtins)
        expansion = check_expansion(command, builtins)
        done = await store.add(
            self.bot.pool,
            ctx.guild.id,
            owner,
            name,
            expansion,
            created_by=ctx.author.id,
            limit=limit,
        )
        whose = "The server has" if owner == SERVER else "You have"
        if done is None:
            raise AliasError(
                f"{whose} {limit} aliases already, the most allowed; remove one first."
            )
        await self.cache.announce(ctx.guild.id)
        prefix = ctx.settings.prefix if ctx.settings is not None else "!"
        await ctx.send(
            f"Alias {done}: `{prefix}{name}` runs `{prefix}{safe_text(expansion, 300)}`"
            " (what you type after it is added)."
        )

    async def _remove(self, ctx: Ctx, owner: int, name: str) -> None:
        assert ctx.guild is not None
        name = name.strip().lower()
        if not await store.remove(self.bot.pool, ctx.guild.id, owner, name):
            whose = "the server has" if owner == SERVER else "you have"
            raise AliasError(f"No alias `{safe_text(name, 30)}` that {whose}; see `alias list`.")
        await self.cache.announce(ctx.guild.id)
        await ctx.send(f"Alias `{name}` removed.")
