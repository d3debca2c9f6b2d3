"""The tabletop cog: dice (roll, history), macros and initiative, one cog in `help`.

Its commands live by area in mixins: dice_commands.py, macro_commands.py,
initiative_commands.py. Each is thin: arguments are parsed there, the work is done by dice/,
initiative.py, roll_render.py, initiative_orders.py and store.py, which tests call without
Discord. discord.py collects the commands of every class a cog inherits from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from discord.ext import commands

from bot.cogs.tabletop.dice_commands import DiceCommands
from bot.cogs.tabletop.initiative_commands import InitiativeCommands
from bot.cogs.tabletop.macro_commands import MacroCommands

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse


# The bases' order makes the commands' order: dice, macros, initiative.
class Tabletop(InitiativeCommands, MacroCommands, DiceCommands, commands.Cog, name="Tabletop"):
    """Dice, initiative and macros for tabletop games."""

    def __init__(self, bot: Guildhouse) -> None:
        self.bot = bot
