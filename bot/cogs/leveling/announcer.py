"""Telling members their XP news through Discord: level-ups (where the server's settings say),
level roles, achievement unlocks. The rest of the feature decides what the news is; this is the
one place that turns it into messages and role changes."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import discord

from bot.chat_light_path import Chat
from bot.cogs.leveling import rules
from bot.cogs.leveling.service import Outcome
from bot.cogs.leveling.settings import XpSettings
from bot.ui import safe_text

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)


def achievement_line(a: rules.Achievement) -> str:
    return f"🏆 **{a.name}**: {a.description}"


def _worth_telling(outcome: Outcome, settings: XpSettings) -> bool:
    """Whether an award needs Discord: a level-up to announce or reward, or an achievement to
    announce."""
    if outcome.level_up is not None and (settings.announce != "off" or settings.rewards):
        return True
    return bool(outcome.achievements) and settings.achievements_announce != "off"


class Announcer:
    def __init__(self, bot: Guildhouse) -> None:
        self.bot = bot
        self._tasks: set[asyncio.Task[None]] = set()

    def tell_later(self, chat: Chat, settings: XpSettings, outcome: Outcome) -> None:
        """The news of an award of chat (the service's `news`), told in a task of its own: the
        next batch of chat doesn't wait for Discord."""
        if _worth_telling(outcome, settings):
            task = asyncio.create_task(self._tell(chat, settings, outcome))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def _tell(self, chat: Chat, settings: XpSettings, outcome: Outcome) -> None:
        """Now (rarely) the member and the channel are worth a lookup. The member isn't cached
        (no member intent): one REST call."""
        guild = self.bot.get_guild(chat.guild_id)
        if guild is None:
            return
        # Not cached (a thread, say): by its id, as discord.py's full path gives a message's.
        channel = guild.get_channel_or_thread(chat.channel_id) or self.bot.get_partial_messageable(
            chat.channel_id, guild_id=guild.id
        )
        try:
            member = await guild.fetch_member(chat.author_id)
            await self.tell(member, channel, settings, outcome)
        except discord.HTTPException as exc:
            log.warning("could not tell member %s of their XP news: %s", chat.author_id, exc)

    async def tell(
        self, member: discord.Member, channel: Any, settings: XpSettings, outcome: Outcome
    ) -> None:
        if outcome.level_up is not None:
            await self.level_roles(member, settings, outcome.level_up)
            await self._announce(
                settings.announce,
                settings,
                member,
                channel,
                f"{member.mention} reached **level {outcome.level_up}**!",
            )
        if outcome.achievements:
            await self.achievements(member, channel, settings, outcome.achievements)

    async def achievements(
        self,
        member: discord.Member | discord.User,
        channel: Any,
        settings: XpSettings,
        unlocked: list[rules.Achievement],
    ) -> None:
        lines = "\n".join(achievement_line(a) for a in unlocked)
        where = (
            f" in **{safe_text(member.guild.name, 100)}**"
            if isinstance(member, discord.Member)
            else ""
        )
        await self._announce(
            settings.achievements_announce,
            settings,
            member,
            channel,
            f"{member.mention} unlocked{where}:\n{lines}",
        )

    async def level_roles(self, member: discord.Member, settings: XpSettings, level: int) -> None:
        top, lower = rules.reward_roles(settings.rewards, level)
        if top is None:
            return
        have = {r.id for r in member.roles}
        try:
            if top not in have:
                await member.add_roles(discord.Object(top), reason=f"reached level {level}")
            if settings.replace_rewards:
                old = [discord.Object(r) for r in lower if r in have]
                if old:
                    await member.remove_roles(*old, reason=f"reached level {level}")
        except discord.Forbidden as exc:
            log.warning(
                "level role for level %d in guild %s not given to %s: missing permission "
                "(the role must be below mine and I need Manage Roles): %s",
                level,
                member.guild.id,
                member.id,
                exc,
                extra={"guild": member.guild.id},
            )
        except discord.HTTPException as exc:
            log.warning("level role for level %d not given to %s: %s", level, member.id, exc)

    async def _announce(
        self,
        mode: str,
        settings: XpSettings,
        member: discord.Member | discord.User,
        channel: Any,
        text: str,
    ) -> None:
        target: Any
        if mode == "off":
            return
        if mode == "dm":
            target = member
        elif mode == "channel" and settings.announce_channel:
            target = self.bot.get_partial_messageable(
                settings.announce_channel, guild_id=settings.guild_id
            )
        else:
            target = channel
        mentions = discord.AllowedMentions(users=[member]) if mode != "dm" else None
        try:
            await target.send(text, allowed_mentions=mentions or discord.AllowedMentions.none())
        except discord.HTTPException as exc:
            log.info("could not announce to %s (%s): %s", mode, member.id, exc)
