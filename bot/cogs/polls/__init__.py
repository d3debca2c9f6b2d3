"""Polls with persistent buttons, closed on time by the job scheduler (issue 30).
docs/community.md has the whole story."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse


async def setup(bot: Guildhouse) -> None:
    from bot.cogs.polls.cog import Polls

    await bot.add_cog(Polls(bot))
