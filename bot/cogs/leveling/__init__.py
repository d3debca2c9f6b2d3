"""Leveling: XP for messages, levels, leaderboards across every shard, achievements.

- rules.py: pure: the level curve, multipliers, streaks, the achievement catalogue
- settings.py: per-guild XP settings (Postgres, cached per worker, invalidated over Redis)
- store.py: the SQL
- service.py: what an award does (Redis, level-up check, achievements), without Discord
- flusher.py: the Redis stream -> Postgres pipeline, in every worker
- rebuild.py: Redis leaderboards from Postgres
- cog.py: commands and listeners

See docs/leveling.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.core import Guildhouse


async def setup(bot: Guildhouse) -> None:
    from bot.cogs.leveling.cog import Leveling

    await bot.add_cog(Leveling(bot))
