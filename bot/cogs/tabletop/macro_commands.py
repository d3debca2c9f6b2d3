"""The macro commands of the tabletop cog: `macro` (list), `save`, `server-save`, `roll`,
`remove` and `server-remove`.

Thin: names and expressions are checked by store.py and the dice engine; a macro rolls through
the dice commands (dice_commands.py). A mixin of `Tabletop` (cog.py), which is the cog.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from discord import app_commands
from discord.ext import commands

from bot.checks import Level, requires
from bot.cogs.tabletop import store
from bot.cogs.tabletop.dice import DiceError, evaluate
from bot.errors import BadInput
from bot.ui import pages_from_lines, safe_text, send_pages

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

Ctx = commands.Context["Guildhouse"]


class MacroCommands:
    """The `macro` group; `_roll` comes from DiceCommands."""

    bot: Guildhouse

    if TYPE_CHECKING:

        async def _roll(self, ctx: Ctx, expression: str) -> None: ...

    @commands.hybrid_group(
        name="macro",
        fallback="list",
        extras={
            "examples": [
                "macro",
                "macro save dodge 6! tn4 # dodge",
                "macro roll dodge",
                "macro remove dodge",
                "macro server-save init-sr 2d6+5",
            ]
        },
    )
    async def macro(self, ctx: Ctx) -> None:
        """List your macros in this channel and this server's macros."""
        macros = await store.list_macros(
            self.bot.pool,
            channel_id=ctx.channel.id,
            guild_id=ctx.guild.id if ctx.guild else None,
            user_id=ctx.author.id,
        )
        if not macros:
            await ctx.send("No macros here yet. Save one: `macro save dodge 6! tn4`.")
            return
        lines = [
            f"{'server' if m.scope == 'guild' else 'yours'} · **{m.name}** "
            f"`{safe_text(m.expression, 120)}`"
            for m in macros
        ]
        await send_pages(ctx, pages_from_lines("Macros", lines, per_page=15))

    async def _parsed(self, expression: str) -> str:
        expression = expression.strip()
        try:
            evaluate(expression)  # checked once now, so it can't fail every time later
        except DiceError as exc:
            raise BadInput(f"That macro wouldn't roll: {exc}") from None
        return expression

    @macro.command(name="save", extras={"examples": ["macro save dodge 6! tn4 # dodge"]})
    @app_commands.describe(name="1-32 letters, digits, - or _", expression="What it rolls")
    async def macro_save(self, ctx: Ctx, name: str, *, expression: str) -> None:
        """Save a macro of your own in this channel (replaces one of the same name)."""
        name = store.validate_macro_name(name)
        expression = await self._parsed(expression)
        new = await store.save_macro(
            self.bot.pool,
            scope="channel",
            scope_id=ctx.channel.id,
            owner_id=ctx.author.id,
            name=name,
            expression=expression,
        )
        verb = "Saved" if new else "Updated"
        await ctx.send(
            f"{verb} macro **{name}**: `{safe_text(expression, 300)}`. Roll it: `roll {name}`."
        )

    @macro.command(name="server-save", extras={"examples": ["macro server-save init-sr 2d6+5"]})
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(name="1-32 letters, digits, - or _", expression="What it rolls")
    async def macro_server_save(self, ctx: Ctx, name: str, *, expression: str) -> None:
        """Save a macro everyone in this server can roll (moderators)."""
        assert ctx.guild is not None
        name = store.validate_macro_name(name)
        expression = await self._parsed(expression)
        new = await store.save_macro(
            self.bot.pool,
            scope="guild",
            scope_id=ctx.guild.id,
            owner_id=0,
            name=name,
            expression=expression,
        )
        verb = "Saved" if new else "Updated"
        await ctx.send(f"{verb} server macro **{name}**: `{safe_text(expression, 300)}`.")

    @macro.command(
        name="roll", extras={"examples": ["macro roll dodge", "macro roll dodge vs the troll"]}
    )
    @app_commands.describe(name="The macro", note="Optional words to add as a note")
    async def macro_roll(self, ctx: Ctx, name: str, *, note: str = "") -> None:
        """Roll a saved macro (yours in this channel first, then the server's)."""
        wanted = store.validate_macro_name(name)
        macro = await store.find_macro(
            self.bot.pool,
            channel_id=ctx.channel.id,
            guild_id=ctx.guild.id if ctx.guild else None,
            user_id=ctx.author.id,
            name=wanted,
        )
        if macro is None:
            raise BadInput(f"No macro called `{wanted}` here. `macro` lists them.")
        await self._roll(ctx, f"{macro.name} {note}".strip())

    @macro.command(name="remove", aliases=["delete"], extras={"examples": ["macro remove dodge"]})
    @app_commands.describe(name="Your macro to remove")
    async def macro_remove(self, ctx: Ctx, name: str) -> None:
        """Remove one of your macros in this channel."""
        wanted = store.validate_macro_name(name)
        if not await store.remove_macro(
            self.bot.pool,
            scope="channel",
            scope_id=ctx.channel.id,
            owner_id=ctx.author.id,
            name=wanted,
        ):
            raise BadInput(f"You have no macro called `{wanted}` in this channel.")
        await ctx.send(f"Removed macro **{wanted}**.")

    @macro.command(name="server-remove", extras={"examples": ["macro server-remove init-sr"]})
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(name="The server macro to remove")
    async def macro_server_remove(self, ctx: Ctx, name: str) -> None:
        """Remove a server macro (moderators)."""
        assert ctx.guild is not None
        wanted = store.validate_macro_name(name)
        if not await store.remove_macro(
            self.bot.pool, scope="guild", scope_id=ctx.guild.id, owner_id=0, name=wanted
        ):
            raise BadInput(f"This server has no macro called `{wanted}`.")
        await ctx.send(f"Removed server macro **{wanted}**.")
