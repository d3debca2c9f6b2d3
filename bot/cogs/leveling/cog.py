"""The leveling commands for everyone: rank, top, achievements. The admin commands are
admin_cog.py's; how XP is earned is intake.py's and service.py's."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands
from redis.exceptions import RedisError

from bot.cogs.leveling import rules, store
from bot.errors import BadInput, UserError
from bot.ui import fit_embed, pages_from_lines, safe_text, send_pages
from ipc.leaderboard import PERIODS, Leaderboard

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

Ctx = commands.Context["Guildhouse"]
Period = Literal["alltime", "month", "week", "day"]
Scope = Literal["server", "global"]
TOP_LIMIT = 100
UNAVAILABLE = "The leaderboards are unavailable right now; try again shortly."
PERIOD_NAMES = {"alltime": "all time", "month": "this month", "week": "this week", "day": "today"}


class Leveling(commands.Cog, name="Leveling"):
    """XP, levels, leaderboards and achievements."""

    def __init__(self, bot: Guildhouse, board: Leaderboard) -> None:
        self.bot = bot
        self.board = board

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
