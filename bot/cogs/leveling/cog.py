"""Leveling commands and listeners: XP for messages, rank, top, admin XP tools, level roles,
achievements. The logic lives in service.py, rules.py and store.py; this file talks to Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import asyncpg
import discord
from discord import app_commands
from discord.ext import commands
from redis.exceptions import RedisError

from bot import audit, outages
from bot.chat import Chat
from bot.checks import Level, requires
from bot.cogs.leveling import rules, store
from bot.cogs.leveling.flusher import Flusher
from bot.cogs.leveling.service import LevelingService, MessageInfo, Outcome
from bot.cogs.leveling.settings import (
    ANNOUNCE_MODES,
    MAX_OVERRIDES,
    MAX_REWARDS,
    XpSettings,
    XpSettingsError,
    XpSettingsStore,
    parse_multiplier,
    validate_cooldown,
    validate_rate,
)
from bot.errors import BadInput, UserError
from bot.shards import ShardState
from bot.ui import fit_embed, pages_from_lines, safe_text, send_pages
from ipc.leaderboard import PERIODS

if TYPE_CHECKING:
    from bot.core import Guildhouse

log = logging.getLogger(__name__)

Ctx = commands.Context["Guildhouse"]
Period = Literal["alltime", "month", "week", "day"]
Scope = Literal["server", "global"]
TOP_LIMIT = 100
MAX_ADJUST = 1_000_000
UNAVAILABLE = "The leaderboards are unavailable right now; try again shortly."
PERIOD_NAMES = {"alltime": "all time", "month": "this month", "week": "this week", "day": "today"}


def _mult(value: float) -> str:
    return "no XP" if value == 0 else f"×{value:g}"


def describe(s: XpSettings) -> discord.Embed:
    embed = discord.Embed(title="XP settings", colour=0x5865F2)
    embed.add_field(name="XP per message", value=f"{s.min_xp}-{s.max_xp}")
    embed.add_field(name="Cooldown", value=f"{s.cooldown}s")
    where = {
        "here": "in the channel of the message",
        "channel": f"in <#{s.announce_channel}>",
        "dm": "by DM",
        "off": "off",
    }
    embed.add_field(name="Level-ups", value=where[s.announce])
    embed.add_field(name="Achievements", value=where[s.achievements_announce])
    chans = [f"<#{c}> {_mult(m)}" for c, m in sorted(s.channel_multipliers.items())]
    roles = [f"<@&{r}> {_mult(m)}" for r, m in sorted(s.role_multipliers.items())]
    embed.add_field(name="Channels", value="\n".join(chans) or "all ×1", inline=False)
    embed.add_field(name="Roles", value="\n".join(roles) or "all ×1", inline=False)
    rewards = [f"level {lvl}: <@&{r}>" for lvl, r in sorted(s.rewards.items())]
    mode = "keep only the highest" if s.replace_rewards else "keep all"
    embed.add_field(name=f"Level roles ({mode})", value="\n".join(rewards) or "none", inline=False)
    return fit_embed(embed)


CHAT_BATCH = 500  # chat messages awarded per Redis round trip, at most
CHAT_LINGER = 0.05  # seconds the first chat message of a batch waits for company


def _worth_telling(outcome: Outcome, settings: XpSettings) -> bool:
    """Whether an award needs Discord: a level-up to announce or reward, or an achievement to
    announce."""
    if outcome.level_up is not None and (settings.announce != "off" or settings.rewards):
        return True
    return bool(outcome.achievements) and settings.achievements_announce != "off"


def achievement_line(a: rules.Achievement) -> str:
    return f"🏆 **{a.name}**: {a.description}"


class Leveling(commands.Cog, name="Leveling"):
    """XP, levels, leaderboards and achievements."""

    def __init__(self, bot: Guildhouse) -> None:
        self.bot = bot
        cluster = str(bot.config.cluster_id)
        self.settings = XpSettingsStore(bot.pool, bot.redis, bot.keys)
        self.service = LevelingService(bot.pool, bot.redis, bot.keys, cluster=cluster)
        self.board = self.service.board
        self.flusher = Flusher(
            bot.pool,
            bot.redis,
            bot.keys,
            consumer=f"cluster-{bot.config.cluster_id}-{os.getpid()}",
            cluster=cluster,
        )
        self._pipeline_started = False
        self._chat_tasks: set[asyncio.Task[None]] = set()
        self._chat_queue: list[Chat] = []
        self._chat_drainer: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        if self.bot.rest_only:
            return  # `guildhouse commands sync`: no Redis, no chat
        await self.settings.start()
        self.bot.add_chat_sink(self._on_chat)
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
            if not await self.board.is_ready():
                self.service.schedule_rebuild()
        except (RedisError, OSError) as exc:
            log.warning("leaderboards: cannot check Redis at start (%s)", exc)

    @commands.Cog.listener("on_connect")
    async def _connected(self) -> None:
        await self._start_pipeline()

    async def cog_unload(self) -> None:
        self.bot.remove_chat_sink(self._on_chat)
        if self._chat_drainer is not None:  # counts what was queued before the flush below
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._chat_drainer, 5)
        for task in list(self._chat_tasks):
            task.cancel()
        await self.flusher.stop()
        await self.service.stop()
        await self.settings.stop()

    # -- listeners ---------------------------------------------------------------------------

    @commands.Cog.listener("on_plain_message")
    async def award_xp(self, message: discord.Message) -> None:
        """Chat that took discord.py's full path: a guild message not addressed to the bot (no
        prefix, no mention; bot/core.py). Like the light path, `!` earns nothing either: it
        is everyone's habit for commands, whatever this guild's prefix."""
        if (
            message.guild is None
            or message.author.bot
            or not self.bot.accepting
            or not isinstance(message.author, discord.Member)
            or message.webhook_id is not None
            or message.content.startswith("!")
        ):
            return
        try:
            await self._award(message, message.author)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            # Redis errors are handled in the service; this is PostgreSQL (settings, levels,
            # achievements). A counted award stays counted; it just wasn't followed up. An
            # outage is logged once for the worker, not with every message.
            if outages.note(exc, "XP for chat") is None:
                log.warning("XP follow-up for message %s failed: %s", message.id, exc)

    def _on_chat(self, chat: Chat) -> None:
        """Chat on the light path (bot/chat.py). Queued; one task drains the queue, a batch at
        a time, with one Redis round trip per batch (no task or future per message)."""
        if not self.bot.accepting or chat.content.startswith("!"):
            return
        self._chat_queue.append(chat)
        if self._chat_drainer is None or self._chat_drainer.done():
            self._chat_drainer = asyncio.create_task(self._drain_chat(), name="xp-chat")

    async def _drain_chat(self) -> None:
        while self._chat_queue:
            if len(self._chat_queue) < CHAT_BATCH:
                # Let a few more arrive: XP needs no answer, so 50 ms of waiting turns a
                # round trip per message into one per batch at any busy rate.
                await asyncio.sleep(CHAT_LINGER)
            batch = self._chat_queue[:CHAT_BATCH]
            del self._chat_queue[:CHAT_BATCH]
            try:
                await self._award_chats(batch)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                # Redis errors are handled in the service (the awards are not counted); this
                # is PostgreSQL (settings, levels, achievements) after they were counted.
                if outages.note(exc, "XP for chat") is None:
                    log.warning("XP follow-up for %d messages failed: %s", len(batch), exc)

    async def _award_chats(self, batch: list[Chat]) -> None:
        items = []
        for chat in batch:
            settings = self.settings.cached(chat.guild_id) or await self.settings.get(chat.guild_id)
            info = MessageInfo(
                message_id=chat.message_id,
                guild_id=chat.guild_id,
                channel_id=chat.channel_id,
                parent_id=chat.parent_id,
                user_id=chat.author_id,
                role_ids=chat.role_ids,
                created_at=chat.created_at,
                name=chat.name,
                avatar=chat.avatar_url,
            )
            items.append((info, settings))
        outcomes = await self.service.award_messages(items)
        for chat, (_, settings), outcome in zip(batch, items, outcomes, strict=True):
            if outcome.status == "awarded" and _worth_telling(outcome, settings):
                task = asyncio.create_task(self._tell(chat, settings, outcome))
                self._chat_tasks.add(task)
                task.add_done_callback(self._chat_tasks.discard)

    async def _tell(self, chat: Chat, settings: XpSettings, outcome: Outcome) -> None:
        """A level-up or achievement to announce or reward (rare): now the member and channel
        are worth a lookup. The member isn't cached (no member intent): one REST call."""
        guild = self.bot.get_guild(chat.guild_id)
        channel = guild.get_channel(chat.channel_id) if guild else None
        if guild is None or channel is None:
            return
        try:
            member = await guild.fetch_member(chat.author_id)
            await self._after_award(member, channel, settings, outcome)
        except discord.HTTPException as exc:
            log.warning("could not tell member %s of their XP news: %s", chat.author_id, exc)

    async def _award(self, message: discord.Message, member: discord.Member) -> None:
        assert message.guild is not None
        settings = await self.settings.get(message.guild.id)
        channel = message.channel
        parent = getattr(channel, "category_id", None)
        info = MessageInfo(
            message_id=message.id,
            guild_id=message.guild.id,
            channel_id=channel.id,
            parent_id=parent,
            user_id=member.id,
            role_ids=tuple(r.id for r in member.roles),
            created_at=message.created_at,
            name=member.global_name or member.name,
            avatar=member.display_avatar.url,
        )
        outcome = await self.service.award_message(info, settings)
        if outcome.status == "awarded":
            await self._after_award(member, channel, settings, outcome)

    async def _after_award(
        self,
        member: discord.Member,
        channel: Any,
        settings: XpSettings,
        outcome: Outcome,
    ) -> None:
        if outcome.level_up is not None:
            await self._level_roles(member, settings, outcome.level_up)
            await self._announce(
                settings.announce,
                settings,
                member,
                channel,
                f"{member.mention} reached **level {outcome.level_up}**!",
            )
        if outcome.achievements:
            await self._announce_achievements(member, channel, settings, outcome.achievements)

    async def _announce_achievements(
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

    async def _level_roles(self, member: discord.Member, settings: XpSettings, level: int) -> None:
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

    @commands.Cog.listener("on_command_completion")
    async def count_command(self, ctx: Ctx) -> None:
        if ctx.guild is None or ctx.author.bot:
            return
        try:
            unlocked = await self.service.command_done(ctx.guild.id, ctx.author.id)
        except asyncpg.PostgresError as exc:
            log.warning("command count not recorded: %s", exc)
            return
        if unlocked:
            settings = await self.settings.get(ctx.guild.id)
            await self._announce_achievements(ctx.author, ctx.channel, settings, unlocked)

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
            unlocked = await self.service.dice_rolled(guild.id, author.id, successes)
        except asyncpg.PostgresError as exc:
            log.warning("dice roll not recorded for achievements: %s", exc)
            return
        if unlocked:
            settings = await self.settings.get(guild.id)
            await self._announce_achievements(author, source.channel, settings, unlocked)

    # -- rank and top ------------------------------------------------------------------------

    @commands.hybrid_command(extras={"examples": ["rank", "rank @Ann"]})
    @commands.guild_only()
    @app_commands.describe(member="Whose rank to show (you, if left out)")
    async def rank(self, ctx: Ctx, member: discord.Member = commands.Author) -> None:
        """Show a member's level, XP, progress to the next level and ranks."""
        # Not `Member | None = None`: with that, a name that matches nobody is dropped
        # silently and the author's own rank shown; this way the user is told.
        assert ctx.guild is not None
        who = member
        if who.bot:
            raise BadInput("Bots don't earn XP.")
        try:
            mine = await self.board.rank(ctx.guild.id, "alltime", who.id)
            world = await self.board.rank(None, "alltime", who.id)
            members = await self.board.count(ctx.guild.id)
            everyone = await self.board.count(None)
        except (RedisError, OSError) as exc:
            raise UserError(UNAVAILABLE) from exc
        xp = mine.score if mine else 0.0
        p = rules.progress(xp)
        embed = discord.Embed(title=f"{who.display_name}: level {p.level}", colour=0x5865F2)
        embed.add_field(name="XP", value=f"{p.xp:,}")
        embed.add_field(
            name="Progress",
            value=f"{rules.bar(p.fraction)} {p.into_level:,}/{p.needed:,} to level {p.level + 1}",
            inline=False,
        )
        embed.add_field(
            name="Server rank", value=f"#{mine.rank} of {members}" if mine else "unranked"
        )
        embed.add_field(
            name="Global rank", value=f"#{world.rank} of {everyone}" if world else "unranked"
        )
        embed.set_thumbnail(url=who.display_avatar.url)
        await ctx.send(embed=fit_embed(embed))

    @commands.hybrid_command(
        extras={"examples": ["top", "top week", "top month global", "top alltime global"]}
    )
    @commands.guild_only()
    @app_commands.describe(
        period="alltime, month, week or day (UTC)", scope="This server, or every server"
    )
    async def top(self, ctx: Ctx, period: Period = "alltime", scope: Scope = "server") -> None:
        """Show the leaderboard of this server (or of every server) for a period."""
        assert ctx.guild is not None
        if period not in PERIODS:
            raise BadInput(f"`{period}` is not a period; use alltime, month, week or day.")
        guild_id = None if scope == "global" else ctx.guild.id
        try:
            entries = await self.board.top(guild_id, period, limit=TOP_LIMIT)
            names = await self.board.profiles(e.user_id for e in entries)
        except (RedisError, OSError) as exc:
            raise UserError(UNAVAILABLE) from exc
        lines = []
        for e in entries:
            prof = names.get(e.user_id)
            name = safe_text(prof.name, 64) if prof else f"<@{e.user_id}>"
            level = ""
            if period == "alltime":
                level = f"level {rules.level_for(e.score)}, "
            lines.append(f"**#{e.rank}** {name}: {level}{int(e.score):,} XP")
        where = "every server" if guild_id is None else safe_text(ctx.guild.name, 100)
        title = f"Top of {where}, {PERIOD_NAMES[period]}"
        await send_pages(ctx, pages_from_lines(title, lines or ["Nobody has XP yet."]))

    @commands.hybrid_command(extras={"examples": ["achievements", "achievements @Ann"]})
    @commands.guild_only()
    @app_commands.describe(member="Whose achievements to show (you, if left out)")
    async def achievements(self, ctx: Ctx, member: discord.Member = commands.Author) -> None:
        """List the achievements: unlocked ones, and progress towards the others."""
        assert ctx.guild is not None
        who = member
        done = await store.unlocked(self.bot.pool, ctx.guild.id, who.id)
        stats = await store.stats(self.bot.pool, ctx.guild.id, who.id)
        today = discord.utils.utcnow().date()
        since = today - timedelta(
            days=max(a.target for a in rules.CATALOGUE if a.metric == "streak")
        )
        days = await store.recent_days(self.bot.pool, ctx.guild.id, who.id, since)
        streak = rules.current_streak(days, today)
        values = {
            "messages": stats.messages,
            "level": rules.level_for(stats.xp),
            "streak": streak,
            "commands": stats.commands,
            "roll_successes": stats.best_roll,
        }
        lines = []
        for a in rules.CATALOGUE:
            when = done.get(a.key)
            if when is not None:
                lines.append(
                    f"🏆 **{a.name}**: {a.description} ({discord.utils.format_dt(when, 'd')})"
                )
            else:
                have = min(values[a.metric], a.target)
                lines.append(f"▫️ **{a.name}**: {a.description} ({have}/{a.target})")
        title = f"Achievements of {who.display_name}: {len(done)} of {len(rules.CATALOGUE)}"
        await send_pages(ctx, pages_from_lines(title, lines, per_page=12))

    # -- admin: XP ---------------------------------------------------------------------------

    @commands.hybrid_group(
        name="xp",
        fallback="settings",
        extras={
            "examples": [
                "xp",
                "xp give @Ann 100",
                "xp rate 10 20",
                "xp cooldown 30",
                "xp channel #memes off",
                "xp role @Boosters 1.5",
                "xp announce channel #levels",
            ]
        },
    )
    @commands.guild_only()
    @requires(Level.ADMIN)
    async def xp(self, ctx: Ctx) -> None:
        """Show this server's XP settings (admins)."""
        await ctx.send(embed=describe(await self._current(ctx)))

    async def _current(self, ctx: Ctx) -> XpSettings:
        assert ctx.guild is not None
        return await self.settings.get(ctx.guild.id)

    async def _save(
        self, ctx: Ctx, action: str, new: XpSettings, target_id: int | None = None
    ) -> None:
        assert ctx.guild is not None
        from bot.cogs.leveling import settings as xs

        old = await self._current(ctx)
        await audit.audited_settings(
            self.bot, ctx, action, old=old, new=new, save=xs.save, target_id=target_id
        )
        await self.settings.announce(ctx.guild.id)

    async def _adjust(
        self, ctx: Ctx, member: discord.Member, action: str, amount: int | None
    ) -> int:
        """give (amount > 0), take (amount > 0, capped at what they have) or reset (None)."""
        assert ctx.guild is not None
        if member.bot:
            raise BadInput("Bots don't earn XP.")
        guild_id = ctx.guild.id
        event: list[store.EventRow] = []

        async def change(conn: asyncpg.Connection) -> tuple[Any, Any]:
            before = await store.locked_total(conn, guild_id, member.id)
            if action == "give":
                delta = int(amount or 0)
            elif action == "take":
                delta = -min(int(amount or 0), before)
            else:
                delta = -before
            if delta == 0:
                raise BadInput(f"{member.display_name} has no XP to {action}.")
            ev = self.service.adjustment(guild_id, member.id, delta, f"admin_{action}")
            after = await store.insert_adjustment(conn, ev)
            if delta < 0:
                await store.set_level(conn, guild_id, member.id, rules.level_for(after))
            event.append(ev)
            return {"xp": before}, {"xp": after}

        entry = await audit.audited(
            self.bot,
            guild_id=guild_id,
            actor_id=ctx.author.id,
            action=f"xp.{action}",
            change=change,
            channel_id=ctx.channel.id,
            target_id=member.id,
        )
        (ev,) = event
        total = await self.service.publish_adjustment(ev)
        after = int(entry.after["xp"]) if isinstance(entry.after, dict) else 0
        if ev.amount > 0 and total is not None:
            level = await self.service.check_level(guild_id, member.id, total, ev.amount)
            if level is not None:
                settings = await self._current(ctx)
                await self._level_roles(member, settings, level)
        return after

    def _check_amount(self, amount: int) -> int:
        if not 1 <= amount <= MAX_ADJUST:
            raise BadInput(f"`amount` must be between 1 and {MAX_ADJUST:,}.")
        return amount

    @xp.command(name="give", extras={"examples": ["xp give @Ann 250"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(member="Who gets the XP", amount="How much XP (1-1,000,000)")
    async def xp_give(self, ctx: Ctx, member: discord.Member, amount: int) -> None:
        """Give a member XP (admins; audited)."""
        total = await self._adjust(ctx, member, "give", self._check_amount(amount))
        await ctx.send(f"Gave {amount:,} XP to {member.mention}: now {total:,} XP.")

    @xp.command(name="take", extras={"examples": ["xp take @Ann 100"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(member="Whose XP to take", amount="How much XP (1-1,000,000)")
    async def xp_take(self, ctx: Ctx, member: discord.Member, amount: int) -> None:
        """Take XP from a member (admins; audited). Never below 0."""
        total = await self._adjust(ctx, member, "take", self._check_amount(amount))
        await ctx.send(f"Took XP from {member.mention}: now {total:,} XP.")

    @xp.command(name="reset", extras={"examples": ["xp reset @Ann"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(member="Whose XP to set to 0")
    async def xp_reset(self, ctx: Ctx, member: discord.Member) -> None:
        """Set a member's XP in this server to 0 (admins; audited)."""
        await self._adjust(ctx, member, "reset", None)
        await ctx.send(f"{member.mention}'s XP is now 0.")

    @xp.command(name="rate", extras={"examples": ["xp rate 15 25", "xp rate 10 10"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(minimum="Least XP per message", maximum="Most XP per message")
    async def xp_rate(self, ctx: Ctx, minimum: int, maximum: int) -> None:
        """Set the random XP per message (default 15-25)."""
        try:
            lo, hi = validate_rate(minimum, maximum)
        except XpSettingsError as exc:
            raise BadInput(str(exc)) from None
        new = (await self._current(ctx)).with_changes(min_xp=lo, max_xp=hi)
        await self._save(ctx, "xp.rate", new)
        await ctx.send(f"Messages now earn {lo}-{hi} XP.")

    @xp.command(name="cooldown", extras={"examples": ["xp cooldown 60", "xp cooldown 0"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(seconds="Seconds between a member's XP-earning messages (0-86400)")
    async def xp_cooldown(self, ctx: Ctx, seconds: int) -> None:
        """Set how long a member waits between messages that earn XP (default 60 s)."""
        try:
            seconds = validate_cooldown(seconds)
        except XpSettingsError as exc:
            raise BadInput(str(exc)) from None
        new = (await self._current(ctx)).with_changes(cooldown=seconds)
        await self._save(ctx, "xp.cooldown", new)
        await ctx.send(f"XP cooldown is now {seconds}s.")

    def _override(self, current: dict[int, float], key: int, value: str) -> dict[int, float]:
        try:
            mult = parse_multiplier(value)
        except XpSettingsError as exc:
            raise BadInput(str(exc)) from None
        out = dict(current)
        if mult is None:
            out.pop(key, None)
        else:
            if key not in out and len(out) >= MAX_OVERRIDES:
                raise BadInput(f"At most {MAX_OVERRIDES} overrides; remove one first.")
            out[key] = mult
        return out

    @xp.command(
        name="channel",
        extras={
            "examples": [
                "xp channel #memes off",
                "xp channel #events 2",
                "xp channel #memes default",
            ]
        },
    )
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(
        channel="A text channel (or a category, for all its channels)",
        value="A multiplier such as 1.5, 'off' for no XP, or 'default'",
    )
    async def xp_channel(
        self, ctx: Ctx, channel: discord.TextChannel | discord.CategoryChannel, value: str
    ) -> None:
        """Set a channel's XP multiplier, or make it a no-XP channel."""
        current = await self._current(ctx)
        mults = self._override(current.channel_multipliers, channel.id, value)
        await self._save(
            ctx, "xp.channel", current.with_changes(channel_multipliers=mults), channel.id
        )
        m = mults.get(channel.id)
        await ctx.send(f"{channel.mention}: {'×1 (default)' if m is None else _mult(m)}.")

    @xp.command(name="role", extras={"examples": ["xp role @Boosters 1.5", "xp role @Muted off"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(
        role="The role", value="A multiplier such as 1.5, 'off' for no XP, or 'default'"
    )
    async def xp_role(self, ctx: Ctx, role: discord.Role, value: str) -> None:
        """Set a role's XP multiplier (the largest of a member's roles counts), or make it a
        no-XP role."""
        current = await self._current(ctx)
        mults = self._override(current.role_multipliers, role.id, value)
        await self._save(ctx, "xp.role", current.with_changes(role_multipliers=mults), role.id)
        m = mults.get(role.id)
        await ctx.send(f"{role.mention}: {'×1 (default)' if m is None else _mult(m)}.")

    @xp.command(
        name="announce",
        extras={
            "examples": [
                "xp announce here",
                "xp announce channel #levels",
                "xp announce dm",
                "xp announce off",
            ]
        },
    )
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(
        mode="here (the message's channel), channel, dm or off",
        channel="With mode 'channel': where level-ups go",
    )
    async def xp_announce(
        self,
        ctx: Ctx,
        mode: Literal["here", "channel", "dm", "off"],
        channel: discord.TextChannel | None = None,
    ) -> None:
        """Choose where level-ups are announced."""
        current = await self._current(ctx)
        new = self._announce_change(current, mode, channel, "announce")
        await self._save(ctx, "xp.announce", new)
        await ctx.send(f"Level-ups: {describe(new).fields[2].value}.")

    @xp.command(
        name="achievements", extras={"examples": ["xp achievements dm", "xp achievements here"]}
    )
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(
        mode="here (where it happened), channel (the level-up channel), dm or off"
    )
    async def xp_achievements(
        self, ctx: Ctx, mode: Literal["here", "channel", "dm", "off"]
    ) -> None:
        """Choose where achievement unlocks are announced (default: DM)."""
        current = await self._current(ctx)
        new = self._announce_change(current, mode, None, "achievements_announce")
        await self._save(ctx, "xp.achievements", new)
        await ctx.send(f"Achievements: {describe(new).fields[3].value}.")

    def _announce_change(
        self, current: XpSettings, mode: str, channel: discord.TextChannel | None, field: str
    ) -> XpSettings:
        if mode not in ANNOUNCE_MODES:
            raise BadInput(f"`{mode}` is not a mode; use here, channel, dm or off.")
        changes: dict[str, Any] = {field: mode}
        if mode == "channel":
            if channel is not None:
                changes["announce_channel"] = channel.id
            elif current.announce_channel is None:
                raise BadInput("Name the channel: `xp announce channel #levels`.")
        return current.with_changes(**changes)

    # -- admin: level roles ------------------------------------------------------------------

    @commands.hybrid_group(
        name="levelrole",
        fallback="list",
        extras={
            "examples": [
                "levelrole",
                "levelrole add 10 @Regulars",
                "levelrole remove 10",
                "levelrole replace yes",
            ]
        },
    )
    @commands.guild_only()
    @requires(Level.ADMIN)
    async def levelrole(self, ctx: Ctx) -> None:
        """List the roles members get at levels (admins)."""
        current = await self._current(ctx)
        lines = [f"level {lvl}: <@&{r}>" for lvl, r in sorted(current.rewards.items())]
        mode = "only the highest is kept" if current.replace_rewards else "all are kept"
        await send_pages(ctx, pages_from_lines(f"Level roles ({mode})", lines or ["none"]))

    @levelrole.command(name="add", extras={"examples": ["levelrole add 10 @Regulars"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(level="The level (1-1000)", role="The role to give at that level")
    async def levelrole_add(self, ctx: Ctx, level: int, role: discord.Role) -> None:
        """Give a role to members when they reach a level."""
        assert ctx.guild is not None
        if not 1 <= level <= rules.MAX_LEVEL:
            raise BadInput(f"`level` must be between 1 and {rules.MAX_LEVEL}.")
        if role.is_default() or role.managed:
            raise BadInput(f"{role.mention} can't be given to members.")
        me = ctx.guild.me
        if me is not None and role >= me.top_role:
            raise BadInput(f"{role.mention} is not below my highest role, so I can't give it.")
        author = ctx.author
        if (
            isinstance(author, discord.Member)
            and author.id != ctx.guild.owner_id
            and not author.guild_permissions.administrator
            and role >= author.top_role
        ):
            # Discord's own rule for handing out roles: else an admin by Manage Server (or a
            # configured admin role) could reward themselves a role above their own.
            raise BadInput(
                f"{role.mention} is not below your highest role, so you can't make it a reward."
            )
        current = await self._current(ctx)
        if level not in current.rewards and len(current.rewards) >= MAX_REWARDS:
            raise BadInput(f"At most {MAX_REWARDS} level roles; remove one first.")
        rewards = dict(current.rewards)
        rewards[level] = role.id
        await self._save(ctx, "xp.levelrole.add", current.with_changes(rewards=rewards), role.id)
        await ctx.send(f"Members reaching level {level} get {role.mention}.")

    @levelrole.command(name="remove", extras={"examples": ["levelrole remove 10"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(level="The level whose role reward to remove")
    async def levelrole_remove(self, ctx: Ctx, level: int) -> None:
        """Stop giving a role at a level (members keep roles they have)."""
        current = await self._current(ctx)
        if level not in current.rewards:
            raise BadInput(f"No role is given at level {level}.")
        rewards = dict(current.rewards)
        role_id = rewards.pop(level)
        await self._save(ctx, "xp.levelrole.remove", current.with_changes(rewards=rewards), role_id)
        await ctx.send(f"Level {level} no longer gives <@&{role_id}>.")

    @levelrole.command(name="replace", extras={"examples": ["levelrole replace yes"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(choice="yes: keep only the highest level role; no: keep them all")
    async def levelrole_replace(self, ctx: Ctx, choice: Literal["yes", "no"]) -> None:
        """Choose whether a new level role replaces the previous ones."""
        current = await self._current(ctx)
        new = current.with_changes(replace_rewards=choice == "yes")
        await self._save(ctx, "xp.levelrole.replace", new)
        await ctx.send(
            "A new level role now replaces the previous ones."
            if choice == "yes"
            else "Members now keep every level role they earned."
        )
