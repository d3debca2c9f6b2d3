"""Server statistics (issue 29): counter channels renamed within Discord's limits, counts kept
without the member cache, daily and weekly reports with a PNG chart on the shared job
scheduler, `stats` and `stats history`. docs/stats.md has the whole story."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse


async def setup(bot: Guildhouse) -> None:
    from bot.cogs.stats.cog import Stats

    await bot.add_cog(Stats(bot))
