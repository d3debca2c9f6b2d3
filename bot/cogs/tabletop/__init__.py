"""Tabletop sessions: dice, initiative, macros and roll history (reminders are their own cog)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse


async def setup(bot: Guildhouse) -> None:
    from bot.cogs.tabletop.cog import Tabletop

    await bot.add_cog(Tabletop(bot))
