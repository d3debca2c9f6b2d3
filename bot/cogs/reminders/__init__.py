"""Reminders: one-off, with lead times before a session, or repeating; to the author or a
table's players, in the channel or by DM; delivered exactly once across every cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse


async def setup(bot: Guildhouse) -> None:
    from bot.cogs.reminders.cog import Reminders

    await bot.add_cog(Reminders(bot))
