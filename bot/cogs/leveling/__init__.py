"""Leveling: XP for messages, levels, leaderboards across every shard, achievements.

- rules.py: pure: the level curve, multipliers, streaks, the achievement catalogue
- settings.py: per-guild XP settings (Postgres, cached per worker, invalidated over Redis)
- store.py: the SQL
- service.py: what an award does (Redis, level-up check), without Discord; owns the batcher
  that chat goes through
- achievements.py: which achievements unlock, once each
- announcer.py: level-ups, level roles and achievement unlocks told through Discord
- intake.py: chat, completed commands and dice rolls in; runs the pipeline while loaded
- flusher.py: the Redis stream -> Postgres pipeline, in every worker
- rebuild.py: Redis leaderboards from Postgres
- importer.py: XP imported from another bot's CSV
- cog.py: the commands for everyone; admin_cog.py: the commands for admins

See docs/leveling.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse


async def setup(bot: Guildhouse) -> None:
    from bot.cogs.leveling.admin_cog import LevelingAdmin
    from bot.cogs.leveling.announcer import Announcer
    from bot.cogs.leveling.cog import Leveling
    from bot.cogs.leveling.intake import Intake
    from bot.cogs.leveling.service import LevelingService

    announcer = Announcer(bot)
    service = LevelingService(
        bot.pool,
        bot.redis,
        bot.keys,
        cluster=str(bot.config.cluster_id),
        news=announcer.tell_later,
    )
    # The intake first: it starts what the commands rely on (the settings' invalidation).
    await bot.add_cog(Intake(bot, service, announcer))
    await bot.add_cog(Leveling(bot, service.board))
    await bot.add_cog(LevelingAdmin(bot, service, announcer))
