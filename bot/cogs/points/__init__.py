"""Points commands (cog.py); the ledger and the rest live in bot/points/."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse


async def setup(bot: Guildhouse) -> None:
    from bot import points
    from bot.cogs.points.cog import Points

    await bot.add_cog(Points(bot, points.of(bot)))
