"""Command aliases (issue 30): per server and per member, prefix only, resolved from a cache.
docs/community.md has the whole story."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse


async def setup(bot: Guildhouse) -> None:
    from bot.cogs.aliases.cog import Aliases

    await bot.add_cog(Aliases(bot))
