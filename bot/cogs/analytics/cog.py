"""The Analytics cog: every command use counted (from discord.py's completion and error
events, into the batching recorder), `analytics [7d|30d|90d]` for admins (and the bot's owners
across every server), and the daily retention job."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors, jobs
from bot.checks import Level, caller_level, requires
from bot.cogs.analytics import store, web
from bot.cogs.analytics.figures import Figures, Use, hour_lines, parse_span
from bot.cogs.analytics.recorder import Recorder
from bot.context import CommandContext
from bot.errors import BadInput

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

Ctx = CommandContext
log = logging.getLogger(__name__)
RETENTION = "analytics.retention"
CHART_NAME = "analytics.png"


def outcome_of(error: Exception) -> str:
    """'error' for a failure on our side (a bug, PostgreSQL or Redis away), else 'refused'
    (a check, a throttle, a bad argument: the bot answered as it should)."""
    if errors.unavailable(error) is not None or errors.is_unexpected(error):
        return "error"
    return "refused"


def retention_key(day: datetime) -> str:
    return f"retention:{day.date().isoformat()}"


def next_retention(now: datetime) -> datetime:
    """03:30 UTC after `now`."""
    at = now.replace(hour=3, minute=30, second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)


def embed_of(title: str, f: Figures) -> discord.Embed:
    e = discord.Embed(title=title, colour=0x5865F2)
    e.add_field(name="Commands", value=f"{f.uses:,}")
    e.add_field(name="Active users", value=f"{f.active_users:,}")
    e.add_field(name="Error rate", value=f"{f.error_rate:.1%} ({f.errors:,})")
    e.add_field(name="Refused", value=f"{f.refused:,}")
    top = [
        f"`{c.command}` {c.uses:,} uses, {c.avg_ms:.0f} ms avg"
        + (f", {c.errors} errors" if c.errors else "")
        for c in f.top
    ]
    e.add_field(name="Top commands", value="\n".join(top) or "none yet", inline=False)
    by_hour = hour_lines(f)
    if by_hour:
        e.add_field(
            name="The last 7 days by hour (UTC, 00 to 23)",
            value="```\n" + "\n".join(by_hour) + "\n```",
            inline=False,
        )
    e.set_footer(text=f"{f.first.isoformat()} to {f.last.isoformat()} (UTC days)")
    e.set_image(url=f"attachment://{CHART_NAME}")
    return e


class Analytics(commands.Cog, name="Analytics"):
    """How the bot is used here: commands, active users, errors."""

    def __init__(self, bot: Guildhouse) -> None:
        self.bot = bot
        self.recorder = Recorder(bot.pool, flush=bot.config.analytics.flush)

    async def cog_load(self) -> None:
        await jobs.install(self.bot, jobs.Kind(RETENTION, self._retention, lease=120.0))
        if not self.bot.rest_only:
            now = datetime.now(UTC)
            due = next_retention(now)
            # The same key from every cluster: one job a day.
            await jobs.of(self.bot).schedule(RETENTION, retention_key(due), due)

    async def cog_unload(self) -> None:
        await jobs.uninstall(self.bot, RETENTION)
        await self.recorder.drain()

    # -- counting --------------------------------------------------------------------------

    def _count(self, ctx: commands.Context[Any], outcome: str) -> None:
        if ctx.command is None:
            return
        started = getattr(ctx, "guildhouse_started", None)
        latency = int((time.perf_counter() - started) * 1000) if started is not None else 0
        self.recorder.record(
            Use(
                guild_id=ctx.guild.id if ctx.guild is not None else 0,
                command=ctx.command.qualified_name,
                outcome=outcome,
                user_id=ctx.author.id,
                latency_ms=latency,
                at=time.time(),
            )
        )

    @commands.Cog.listener()
    async def on_command_completion(self, ctx: commands.Context[Any]) -> None:
        self._count(ctx, "ok")

    @commands.Cog.listener()
    async def on_command_error(self, ctx: commands.Context[Any], error: Exception) -> None:
        if not isinstance(error, commands.CommandNotFound):
            self._count(ctx, outcome_of(error))

    # -- retention -------------------------------------------------------------------------

    async def _retention(self, run: jobs.Run) -> None:
        now = datetime.now(UTC)
        due = next_retention(now)
        async with run.complete() as conn:
            await store.prune(conn, now.date())
            await jobs.store.schedule(conn, RETENTION, retention_key(due), due)
        await jobs.of(self.bot).notify()

    # -- the command -----------------------------------------------------------------------

    @commands.hybrid_command(
        name="analytics",
        extras={"examples": ["analytics", "analytics 7d", "analytics 90d", "analytics 30d all"]},
    )
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(
        span="7d, 30d or 90d (default 7d)",
        scope="'all': every server (the bot's owners only)",
    )
    async def analytics(self, ctx: Ctx, span: str = "7d", scope: str = "server") -> None:
        """How the bot was used here over the last 7, 30 or 90 days: commands, active users,
        error rate, the top commands, a chart of commands per day and, whatever the span, the
        last 7 days hour by hour (UTC; one line a day, taller is busier). Figures are counted in
        batches, so the last few seconds may not show yet."""
        assert ctx.guild is not None
        days = parse_span(span)
        everywhere = scope.strip().lower() == "all"
        if everywhere and await caller_level(ctx) < Level.OWNER:
            raise BadInput("Only the bot's owners may see every server's figures.")
        if not everywhere and scope.strip().lower() != "server":
            raise BadInput(f"`{scope[:20]}` is not a scope: leave it out, or `all` (owners).")
        if ctx.interaction is not None:
            await ctx.defer()
        today = datetime.now(UTC).date()
        f = await store.figures(self.bot.pool, None if everywhere else ctx.guild.id, days, today)
        where = "every server" if everywhere else ctx.guild.name
        title = f"Usage of Guildhouse in {where}: the last {days} days"
        png = await asyncio.to_thread(_chart, f, f"Commands per day, {where}")
        await ctx.send(
            embed=embed_of(title, f), file=discord.File(io.BytesIO(png), filename=CHART_NAME)
        )
        await self._send_link(ctx, 0 if everywhere else ctx.guild.id, days)

    async def _send_link(self, ctx: Ctx, scope: int, days: int) -> None:
        """The signed web page link, to the caller alone (ephemeral, or by DM): whoever has it
        may read the page until it expires."""
        cfg = self.bot.config.analytics
        url = web.public_url(
            scope,
            days,
            self.bot.config.token,
            time.time(),
            base=cfg.public_url,
            secret=cfg.link_secret,
        )
        text = (
            f"The same figures on the web, with a CSV export (for {web.LINK_TTL // 3600} h): {url}"
        )
        try:
            if ctx.interaction is not None:
                await ctx.interaction.followup.send(text, ephemeral=True)
            else:
                await ctx.author.send(text)
        except discord.HTTPException as exc:
            log.info("could not send the analytics link: %s", exc)


def _chart(f: Figures, title: str) -> bytes:
    from bot import charts  # Pillow only in workers that draw

    return charts.columns([d.isoformat() for d in f.days], f.per_day, title)
