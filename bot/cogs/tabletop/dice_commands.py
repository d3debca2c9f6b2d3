"""The dice commands of the tabletop cog: `roll` (with its Reroll button) and `history`.

Thin: arguments are parsed here, the work is done by dice/, roll_render.py and store.py, which
tests call without Discord. A mixin of `Tabletop` (cog.py), which is the cog.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands
from discord.utils import escape_markdown, format_dt

from bot import components, outages
from bot.cogs.tabletop import store
from bot.cogs.tabletop.dice import SYNTAX_HELP, DiceError, RollResult, evaluate
from bot.cogs.tabletop.roll_render import SUMMARY_LIMIT, render, summary
from bot.errors import BadInput
from bot.ui import MESSAGE_CONTENT, pages_from_lines, safe_text, send_pages

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)

Ctx = commands.Context["Guildhouse"]

REROLL_TIMEOUT = 900.0

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
        if not isinstance(cog, DiceCommands):
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


def history_result(stored: str) -> str:
    """What a history line shows after the expression: one roll's result (`→ 7`), or, for
    several, each with its label (`: 2d6 → 7; d20 → 13`), whole (roll_render.summary keeps every
    result within SUMMARY_LIMIT)."""
    text = safe_text(stored, SUMMARY_LIMIT)
    arrows = stored.count(" → ")
    if arrows == 1:  # one roll: the expression beside it says what was rolled
        return " → " + text.partition(" → ")[2]
    if arrows == 0:  # labels left out of a long line: results only
        return " → " + text
    return ": " + text


class DiceCommands:
    """`roll` and `history`; `record` and `format_roll` are what the Reroll button uses."""

    bot: Guildhouse

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
