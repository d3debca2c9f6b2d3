"""Tabletop commands: roll (with a reroll button), history, macros and initiative.

Thin: arguments are parsed here, the work is done by dice.py, initiative.py, render.py and
store.py, which tests call without Discord.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands
from discord.utils import escape_markdown, format_dt

from bot import components, outages
from bot.checks import Level, level_of, requires
from bot.cogs.tabletop import initiative, store
from bot.cogs.tabletop.dice import SYNTAX_HELP, DiceError, RollResult, evaluate
from bot.cogs.tabletop.render import SUMMARY_LIMIT, render, summary
from bot.cogs.tabletop.tables import SYSTEM_NAMES, order_from_json, order_to_json, render_order
from bot.errors import BadInput
from bot.ui import MESSAGE_CONTENT, pages_from_lines, safe_text, send_pages

if TYPE_CHECKING:
    from bot.core import Guildhouse

log = logging.getLogger(__name__)

Ctx = commands.Context["Guildhouse"]
SystemName = Literal["sr1", "sr2", "sr3", "cp2020", "cpr"]

REROLL_TIMEOUT = 900.0
MAX_NAME = 32

ROLL_HELP = f"""Roll dice: Shadowrun pools, Cyberpunk d10s and general dice expressions.

{SYNTAX_HELP}

A saved macro rolls by its name: `roll dodge` (see `macro`). The Reroll button under a roll
rolls the same thing again (for whoever rolled it, for 15 minutes)."""


@dataclass(frozen=True)
class RollOrigin:
    """Who rolled where; what `on_dice_rolled` listeners receive (the attributes of a Context)."""

    author: discord.abc.User
    guild: discord.Guild | None
    channel: Any


def _name(user: discord.abc.User) -> str:
    return escape_markdown(safe_text(getattr(user, "display_name", user.name), 64))


class Reroll(components.Handler, name="reroll"):
    """The Reroll button under a roll: for whoever rolled, for 15 minutes, once (the new roll
    comes with a button of its own). The expression travels in the button's custom_id when it
    fits, so a roll costs no round trip for it; any worker answers the press."""

    ttl = REROLL_TIMEOUT
    once = True
    refusal = "Only whoever rolled can reroll; roll it yourself with `roll`."
    action_room = 0

    async def pressed(self, press: components.Press) -> None:
        expression = str(press.state)
        try:
            result = evaluate(expression)
        except DiceError as exc:  # the expression parsed before; only if limits changed
            await press.tell(str(exc))
            return
        cog = press.bot.get_cog("Tabletop")
        if not isinstance(cog, Tabletop):
            await press.tell("Dice are not available right now.")
            return
        await press.retire()  # this button is used; the new roll brings the next one
        await press.reply(
            cog.format_roll(press.user, result, rerolled=True),
            view=await reroll_view(press.bot, expression, press.user.id),
        )
        await cog.record(RollOrigin(press.user, press.guild, press.channel), expression, result)


async def reroll_view(bot: Guildhouse, expression: str, owner_id: int) -> discord.ui.View:
    ref = await Reroll.new(bot, owner=owner_id, state=expression)
    return components.view(ref.button("Reroll", emoji="\N{GAME DIE}"))


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


def history_result(stored: str) -> str:
    """What a history line shows after the expression: one roll's result (`→ 7`), or, for
    several, each with its label (`: 2d6 → 7; d20 → 13`), whole (render.summary keeps every
    result within SUMMARY_LIMIT)."""
    text = safe_text(stored, SUMMARY_LIMIT)
    arrows = stored.count(" → ")
    if arrows == 1:  # one roll: the expression beside it says what was rolled
        return " → " + text.partition(" → ")[2]
    if arrows == 0:  # labels left out of a long line: results only
        return " → " + text
    return ": " + text


def _check_dice(dice: int, modifier: int) -> None:
    if not 1 <= dice <= 10:
        raise BadInput(f"Initiative dice must be 1-10, not {dice}.")
    if not -100 <= modifier <= 100:
        raise BadInput(f"The initiative modifier must be -100 to +100, not {modifier}.")


class Tabletop(commands.Cog, name="Tabletop"):
    """Dice, initiative and macros for tabletop games."""

    def __init__(self, bot: Guildhouse) -> None:
        self.bot = bot

    # ----------------------------------------------------------------------- rolling

    def format_roll(
        self, user: discord.abc.User, result: RollResult, *, rerolled: bool = False
    ) -> str:
        head = f"**{_name(user)}** {'rerolled' if rerolled else 'rolled'}\n"
        return head + render(result, MESSAGE_CONTENT - len(head))

    async def record(self, origin: RollOrigin, expression: str, result: RollResult) -> None:
        """History and the `dice_rolled` event (achievements listen to it)."""
        channel_id = getattr(origin.channel, "id", 0)
        try:
            await store.add_roll(
                self.bot.pool,
                channel_id=channel_id,
                user_id=origin.author.id,
                guild_id=origin.guild.id if origin.guild else None,
                expression=expression,
                summary=summary(result),
            )
        except Exception as exc:  # history is a convenience: never lose the roll over it
            # A database outage is logged once for the worker, not with every roll.
            if outages.note(exc, "the roll history") is None:
                log.exception("could not record a roll in the history")
        self.bot.dispatch("dice_rolled", origin, result)

    async def _resolve(self, ctx: Ctx, expression: str) -> tuple[str, RollResult]:
        """The expression as typed, or, if it doesn't parse and starts with a macro's name,
        that macro (the rest of the line becomes its note)."""
        try:
            return expression, evaluate(expression)
        except DiceError as exc:
            first, _, rest = expression.strip().partition(" ")
            if store.MACRO_NAME.match(first.lower()):
                macro = await store.find_macro(
                    self.bot.pool,
                    channel_id=ctx.channel.id,
                    guild_id=ctx.guild.id if ctx.guild else None,
                    user_id=ctx.author.id,
                    name=first.lower(),
                )
                if macro is not None:
                    text = macro.expression
                    if rest:  # the rest of the line is a note (after the macro's own, if any)
                        text += (" " if "#" in text else " # ") + rest
                    try:
                        return text, evaluate(text)
                    except DiceError as inner:
                        raise BadInput(
                            f"Macro `{macro.name}`: {safe_text(str(inner), 300)}"
                        ) from None
                if first[0].isalpha() and exc.position < len(first):
                    raise BadInput(
                        f"`{first}` is neither dice nor a macro of yours here ({exc}). "
                        "`help roll` shows the syntax, `macro` lists the macros."
                    ) from None
            raise BadInput(f"{safe_text(str(exc), 400)}. `help roll` shows the syntax.") from None

    async def _roll(self, ctx: Ctx, expression: str) -> None:
        text, result = await self._resolve(ctx, expression)
        await self.record(RollOrigin(ctx.author, ctx.guild, ctx.channel), text, result)
        view = await reroll_view(self.bot, text, ctx.author.id)
        await ctx.send(self.format_roll(ctx.author, result), view=view)

    @commands.hybrid_command(
        name="roll",
        aliases=["r"],
        help=ROLL_HELP,
        extras={
            "examples": [
                "roll 6! tn4",
                "roll 5! tn3 vs 6! otn4",
                "roll 6t -5",
                "roll cpr +7",
                "roll 4d6kh3",
                "roll 6 4d6dl1",
                "roll 2d6+3 # fire damage; d20",
            ]
        },
    )
    @app_commands.describe(expression="Dice, e.g. 6! tn4, 3d6+2, cpr +7, or a macro's name")
    # `/roll dice:2d6` reads as what it is; the prefix command takes the dice as they come.
    @app_commands.rename(expression="dice")
    async def roll(self, ctx: Ctx, *, expression: str) -> None:
        await self._roll(ctx, expression)

    @commands.hybrid_command(name="history", extras={"examples": ["history", "history @Ann"]})
    @app_commands.describe(member="Whose rolls (default: yours)")
    async def history(self, ctx: Ctx, member: discord.User | None = None) -> None:
        """Show the last rolls in this channel (yours, or a member's)."""
        who = member or ctx.author
        rows = await store.history(
            self.bot.pool, channel_id=ctx.channel.id, user_id=who.id, limit=10
        )
        if not rows:
            await ctx.send(f"No rolls by **{_name(who)}** in this channel yet.")
            return
        lines = [
            f"{format_dt(r['created_at'], 'R')} `{safe_text(r['expression'], 80)}`"
            f"{history_result(r['summary'])}"
            for r in rows
        ]
        await send_pages(ctx, pages_from_lines(f"Last rolls of {who.display_name}", lines))

    # ------------------------------------------------------------------------ macros

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
        try:
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
        except store.StoreError as exc:
            raise BadInput(str(exc)) from None
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
        try:
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
        except store.StoreError as exc:
            raise BadInput(str(exc)) from None
        verb = "Saved" if new else "Updated"
        await ctx.send(f"{verb} server macro **{name}**: `{safe_text(expression, 300)}`.")

    @macro.command(
        name="roll", extras={"examples": ["macro roll dodge", "macro roll dodge vs the troll"]}
    )
    @app_commands.describe(name="The macro", note="Optional words to add as a note")
    async def macro_roll(self, ctx: Ctx, name: str, *, note: str = "") -> None:
        """Roll a saved macro (yours in this channel first, then the server's)."""
        try:
            wanted = store.validate_macro_name(name)
        except store.StoreError as exc:
            raise BadInput(str(exc)) from None
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
        try:
            wanted = store.validate_macro_name(name)
        except store.StoreError as exc:
            raise BadInput(str(exc)) from None
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
        try:
            wanted = store.validate_macro_name(name)
        except store.StoreError as exc:
            raise BadInput(str(exc)) from None
        if not await store.remove_macro(
            self.bot.pool, scope="guild", scope_id=ctx.guild.id, owner_id=0, name=wanted
        ):
            raise BadInput(f"This server has no macro called `{wanted}`.")
        await ctx.send(f"Removed server macro **{wanted}**.")

    # -------------------------------------------------------------------- initiative

    async def _table(self, ctx: Ctx) -> store.Table | None:
        return await store.get_table(self.bot.pool, ctx.channel.id)

    async def _is_gm(self, ctx: Ctx, table: store.Table | None) -> bool:
        if table is not None and table.gm_id == ctx.author.id:
            return True
        return await level_of(self.bot, ctx.author, ctx.guild) >= Level.MODERATOR

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
        try:
            new = await store.add_combatant(
                self.bot.pool,
                ctx.channel.id,
                ctx.guild.id if ctx.guild else None,
                store.Combatant(name, None if npc else ctx.author.id, npc, dice, modifier),
                replace=True,
            )
        except store.StoreError as exc:
            raise BadInput(str(exc)) from None
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
