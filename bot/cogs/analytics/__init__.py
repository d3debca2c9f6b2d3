"""Usage analytics (issue 30): every command use counted in batches, `analytics` with a PNG
chart, retention on the job scheduler. docs/community.md has the whole story."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse


async def setup(bot: Guildhouse) -> None:
    from bot.cogs.analytics.cog import Analytics

    await bot.add_cog(Analytics(bot))
