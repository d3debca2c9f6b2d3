"""What earns XP and achievements comes in here: chat (bot/chat_light_path.py, whichever path
a message took), completed commands, dice rolls. This cog has no commands; it runs the
feature's pipeline while it is loaded: the settings' invalidation, the flusher (Redis stream ->
PostgreSQL), the check for boards to rebuild."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any

import asyncpg
from discord.ext import commands
from redis.exceptions import RedisError

from bot.chat_light_path import Chat
from bot.cogs.leveling.announcer import Announcer
from bot.cogs.leveling.flusher import Flusher
from bot.cogs.leveling.service import LevelingService
from bot.shards import ShardState

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)

Ctx = commands.Context["Guildhouse"]


class Intake(commands.Cog, name="Leveling intake"):
    def __init__(self, bot: Guildhouse, service: LevelingService, announcer: Announcer) -> None:
        self.bot = bot
        self.service = service
        self.announcer = announcer
        self.flusher = Flusher(
            bot.pool,
            bot.redis,
            bot.keys,
            consumer=f"cluster-{bot.config.cluster_id}-{os.getpid()}",
            cluster=service.cluster,
        )
        self._pipeline_started = False

    async def cog_load(self) -> None:
        if self.bot.rest_only:
            return  # `guildhouse commands sync`: no Redis, no chat
        await self.service.settings.start()
        self.bot.add_chat_sink(self.take)
        states = self.bot.shard_tracker.states.values()
        if self.bot.is_ready() or ShardState.READY in states:
            await self._start_pipeline()  # reloaded while connected

    async def _start_pipeline(self) -> None:
        """The flusher and the empty-Redis check run only in a bot that connects to the
        gateway (not in `guildhouse commands sync`, which only logs in)."""
        if self._pipeline_started:
            return
        self._pipeline_started = True
        await self.flusher.start()
        try:
            if not await self.service.board.is_ready():
                self.service.schedule_rebuild()
        except (RedisError, OSError) as exc:
            log.warning("leaderboards: cannot check Redis at start (%s)", exc)

    @commands.Cog.listener("on_connect")
    async def _connected(self) -> None:
        await self._start_pipeline()

    async def cog_unload(self) -> None:
        self.bot.remove_chat_sink(self.take)
        # The chat queued so far is counted before the flusher's last writes below.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.service.chats.drain(), 5)
        # And the commands counted since the last write (they gather for a second).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.service.achievements.command_counts.flush(), 5)
        self.announcer.close()
        await self.flusher.stop()
        await self.service.stop()
        await self.service.settings.stop()

    def take(self, chat: Chat) -> None:
        """The chat sink, in the gateway parser: queue and return. `!` earns nothing whatever
        this server's prefix: it is everyone's habit for commands."""
        if self.bot.accepting and not chat.content.startswith("!"):
            self.service.chats.push(chat)

    @commands.Cog.listener("on_command_completion")
    async def count_command(self, ctx: Ctx) -> None:
        if ctx.guild is None or ctx.author.bot:
            return
        try:
            unlocked = await self.service.achievements.command_done(ctx.guild.id, ctx.author.id)
        except asyncpg.PostgresError as exc:
            log.warning("command count not recorded: %s", exc)
            return
        if unlocked:
            settings = await self.service.settings.get(ctx.guild.id)
            await self.announcer.achievements(ctx.author, ctx.channel, settings, unlocked)

    @commands.Cog.listener("on_dice_rolled")
    async def dice_rolled(self, source: Any, result: Any) -> None:
        """The tabletop cog dispatches `dice_rolled` (context or message, RollResult)."""
        guild = getattr(source, "guild", None)
        author = getattr(source, "author", None)
        if guild is None or author is None or getattr(author, "bot", False):
            return
        successes = max(
            (int(getattr(s, "successes", 0) or 0) for s in getattr(result, "segments", ())),
            default=0,
        )
        try:
            unlocked = await self.service.achievements.dice_rolled(guild.id, author.id, successes)
        except asyncpg.PostgresError as exc:
            log.warning("dice roll not recorded for achievements: %s", exc)
            return
        if unlocked:
            settings = await self.service.settings.get(guild.id)
            await self.announcer.achievements(author, source.channel, settings, unlocked)
