"""The initiative commands of the tabletop cog: `init` (show), `gm`, `system`, `add`, `npc`,
`remove`, `clear`, `roll` and `flip`.

Thin: the rolling and ordering are initiative.py's, the display initiative_orders.py's, the
SQL store.py's. A mixin of `Tabletop` (cog.py), which is the cog.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands
from discord.utils import escape_markdown

from bot.checks import Level, caller_level
from bot.cogs.tabletop import initiative, store
from bot.cogs.tabletop.initiative_orders import (
    SYSTEM_NAMES,
    order_from_json,
    order_to_json,
    render_order,
)
from bot.errors import BadInput
from bot.ui import pages_from_lines, safe_text, send_pages

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

Ctx = commands.Context["Guildhouse"]
SystemName = Literal["sr1", "sr2", "sr3", "cp2020", "cpr"]

MAX_NAME = 32


def _check_name(name: str) -> str:
    name = " ".join(name.split())
    if not 1 <= len(name) <= MAX_NAME:
        raise BadInput(
            f"A combatant's name has 1-{MAX_NAME} characters; "
            f"`{safe_text(name, 40)}` has {len(name)}."
        )
    if any(c in name for c in "`*_~|<>@#"):
        raise BadInput("A combatant's name may not contain `` ` * _ ~ | < > @ # ``.")
    return name


def _check_dice(dice: int, modifier: int) -> None:
    if not 1 <= dice <= 10:
        raise BadInput(f"Initiative dice must be 1-10, not {dice}.")
    if not -100 <= modifier <= 100:
        raise BadInput(f"The initiative modifier must be -100 to +100, not {modifier}.")


class InitiativeCommands:
    """The `init` group: a channel's table, its GM, its combatants and their order."""

    bot: Guildhouse

    async def _table(self, ctx: Ctx) -> store.Table | None:
        return await store.get_table(self.bot.pool, ctx.channel.id)

    async def _is_gm(self, ctx: Ctx, table: store.Table | None) -> bool:
        if table is not None and table.gm_id == ctx.author.id:
            return True
        return await caller_level(ctx) >= Level.MODERATOR

    async def _require_gm(self, ctx: Ctx) -> store.Table | None:
        table = await self._table(ctx)
        if await self._is_gm(ctx, table):
            return table
        if table is None or table.gm_id is None:
            raise BadInput("This channel has no GM yet: `init gm` makes you the GM.")
        raise BadInput(f"Only the GM (<@{table.gm_id}>) or a moderator can do that here.")

    @commands.hybrid_group(
        name="init",
        aliases=["initiative"],
        fallback="show",
        extras={
            "examples": [
                "init gm",
                "init system sr3",
                "init add Ann 2 5",
                "init npc Troll 1 4",
                "init roll",
                "init flip",
                "init remove Troll",
                "init clear npcs",
            ]
        },
    )
    async def init(self, ctx: Ctx) -> None:
        """Show this channel's table: GM, system, combatants and the last initiative order."""
        table = await self._table(ctx)
        people = await store.combatants(self.bot.pool, ctx.channel.id)
        system = table.system if table else "sr3"
        gm = f"<@{table.gm_id}>" if table and table.gm_id else "none yet (`init gm`)"
        lines = [f"GM: {gm} · System: {SYSTEM_NAMES[system]}"]
        if people:
            lines.append("**Combatants**")
            for c in people:
                kind = "NPC" if c.is_npc else f"<@{c.user_id}>" if c.user_id else "PC"
                dice = f"{c.dice}d6" if system.startswith("sr") else "1d10"
                lines.append(f"{escape_markdown(c.name)} ({kind}): {dice}{c.modifier:+d}")
        else:
            lines.append("No combatants yet: `init add <name> [dice] [modifier]`.")
        if table and table.last_order:
            lines.append("**Last roll**")
            lines.extend(render_order(order_from_json(table.last_order), system))
        await send_pages(ctx, pages_from_lines("Initiative", lines, per_page=40))

    @init.command(name="gm", extras={"examples": ["init gm", "init gm @Ann"]})
    @app_commands.describe(member="The new GM (default: you)")
    async def init_gm(self, ctx: Ctx, member: discord.Member | None = None) -> None:
        """Become this channel's GM, or hand the role to someone (GM or moderators)."""
        table = await self._table(ctx)
        who = member or ctx.author
        free = table is None or table.gm_id is None
        if not free and not await self._is_gm(ctx, table):
            assert table is not None
            raise BadInput(
                f"<@{table.gm_id}> is the GM here; only they or a moderator can change that."
            )
        if (
            member is not None
            and free
            and not await self._is_gm(ctx, table)
            and member.id != ctx.author.id
        ):
            raise BadInput(
                "Only a moderator can make someone else the GM; `init gm` makes you the GM."
            )
        await store.set_gm(
            self.bot.pool, ctx.channel.id, ctx.guild.id if ctx.guild else None, who.id
        )
        await ctx.send(f"{who.mention} is now the GM of this channel.")

    @init.command(name="system", extras={"examples": ["init system sr3", "init system cpr"]})
    @app_commands.describe(system="sr1, sr2, sr3 (Shadowrun), cp2020 or cpr (Cyberpunk RED)")
    async def init_system(self, ctx: Ctx, system: SystemName) -> None:
        """Choose the initiative rules of this table (GM)."""
        await self._require_gm(ctx)
        await store.set_system(
            self.bot.pool, ctx.channel.id, ctx.guild.id if ctx.guild else None, system
        )
        await ctx.send(f"Initiative here now follows {SYSTEM_NAMES[system]}.")

    async def _add(self, ctx: Ctx, name: str, dice: int, modifier: int, *, npc: bool) -> None:
        name = _check_name(name)
        _check_dice(dice, modifier)
        table = await self._table(ctx)
        gm = await self._is_gm(ctx, table)
        existing = await store.find_combatant(self.bot.pool, ctx.channel.id, name)
        if existing is not None:
            name = existing.name
            if not gm and existing.user_id != ctx.author.id:
                raise BadInput(
                    f"**{escape_markdown(name)}** belongs to someone else at this table."
                )
        new = await store.add_combatant(
            self.bot.pool,
            ctx.channel.id,
            ctx.guild.id if ctx.guild else None,
            store.Combatant(name, None if npc else ctx.author.id, npc, dice, modifier),
            replace=True,
        )
        what = "NPC" if npc else "character"
        verb = "Added" if new else "Updated"
        await ctx.send(f"{verb} {what} **{escape_markdown(name)}** ({dice} dice, {modifier:+d}).")

    @init.command(name="add", extras={"examples": ["init add Ann 2 5", "init add Rook 3 -1"]})
    @app_commands.describe(
        name="Your character's name",
        dice="Initiative dice (Shadowrun d6s; Cyberpunk always rolls 1d10)",
        modifier="Reaction (Shadowrun) or REF + bonuses (Cyberpunk)",
    )
    async def init_add(self, ctx: Ctx, name: str, dice: int = 1, modifier: int = 0) -> None:
        """Add your character to this channel's table, or update it."""
        await self._add(ctx, name, dice, modifier, npc=False)

    @init.command(name="npc", extras={"examples": ["init npc Troll 1 4"]})
    @app_commands.describe(name="The NPC's name", dice="Initiative dice", modifier="Modifier")
    async def init_npc(self, ctx: Ctx, name: str, dice: int = 1, modifier: int = 0) -> None:
        """Add an NPC to this channel's table, or update it (GM)."""
        await self._require_gm(ctx)
        await self._add(ctx, name, dice, modifier, npc=True)

    @init.command(name="remove", extras={"examples": ["init remove Troll"]})
    @app_commands.describe(name="Who to remove")
    async def init_remove(self, ctx: Ctx, *, name: str) -> None:
        """Remove a combatant (your own, or any as the GM)."""
        found = await store.find_combatant(self.bot.pool, ctx.channel.id, " ".join(name.split()))
        if found is None:
            raise BadInput(
                f"No **{escape_markdown(safe_text(name, 40))}** at this table; `init` lists them."
            )
        if found.user_id != ctx.author.id or found.is_npc:
            await self._require_gm(ctx)
        await store.remove_combatant(self.bot.pool, ctx.channel.id, found.name)
        await ctx.send(f"Removed **{escape_markdown(found.name)}**.")

    @init.command(name="clear", extras={"examples": ["init clear", "init clear npcs"]})
    @app_commands.describe(which="all (default) or npcs")
    async def init_clear(self, ctx: Ctx, which: Literal["all", "npcs"] = "all") -> None:
        """Clear the table: everyone, or only the NPCs (GM)."""
        await self._require_gm(ctx)
        n = await store.clear_combatants(self.bot.pool, ctx.channel.id, npcs_only=which == "npcs")
        await ctx.send(
            f"Removed {n} {'NPC' if which == 'npcs' else 'combatant'}{'s' if n != 1 else ''}."
        )

    @init.command(name="roll", extras={"examples": ["init roll"]})
    async def init_roll(self, ctx: Ctx) -> None:
        """Roll initiative for everyone at this table, in the table's system (GM)."""
        table = await self._require_gm(ctx)
        people = await store.combatants(self.bot.pool, ctx.channel.id)
        if not people:
            raise BadInput("Nobody at this table yet: `init add <name> [dice] [modifier]`.")
        system: initiative.System = table.system if table else "sr3"  # type: ignore[assignment]
        order = initiative.roll_initiative(
            [initiative.Combatant(c.name, c.is_npc, c.dice, c.modifier) for c in people], system
        )
        await store.save_order(self.bot.pool, ctx.channel.id, order_to_json(order))
        lines = render_order(order, system)
        await send_pages(
            ctx, pages_from_lines(f"Initiative · {SYSTEM_NAMES[system]}", lines, per_page=40)
        )

    @init.command(name="flip", extras={"examples": ["init flip"]})
    async def init_flip(self, ctx: Ctx) -> None:
        """Show the last initiative order reversed (lowest first), e.g. to declare actions."""
        table = await self._table(ctx)
        if table is None or not table.last_order:
            raise BadInput("No initiative rolled here yet: `init roll`.")
        order = initiative.flip(order_from_json(table.last_order))
        lines = render_order(order, table.system, reversed_=True)
        await send_pages(ctx, pages_from_lines("Initiative, reversed", lines, per_page=40))
