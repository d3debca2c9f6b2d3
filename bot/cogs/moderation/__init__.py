"""Moderation: warn, kick, ban and tempban, softban, unban, timeouts, purge, slowmode, lock,
nick and roles, each a numbered case per server with its audit row; notes; warning thresholds;
tempbans that end exactly once (bot/jobs); ban sync. docs/moderation.md has the whole story."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse


async def setup(bot: Guildhouse) -> None:
    from bot.cogs.moderation.actions import Moderator
    from bot.cogs.moderation.automod_cog import AutomodCog
    from bot.cogs.moderation.bans import BanSync
    from bot.cogs.moderation.cases_cog import Cases
    from bot.cogs.moderation.channel_cog import ChannelActions
    from bot.cogs.moderation.cog import MemberActions

    mod = Moderator(bot)
    await bot.add_cog(MemberActions(bot, mod))
    await bot.add_cog(Cases(bot, mod))
    await bot.add_cog(ChannelActions(bot, mod))
    await bot.add_cog(BanSync(bot, mod))
    await bot.add_cog(AutomodCog(bot, mod))
