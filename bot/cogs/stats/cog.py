"""The Statistics cog: `stats` and its subcommands (counter channels, reports, history), and the
gateway events that keep the counts (joins, leaves, bans, servers arriving)."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import jobs, outages
from bot.checks import Level, requires
from bot.cogs.stats import heartbeat, presence, prune, report, reports, store
from bot.cogs.stats.counters import Counter, check_template, counter_of, render
from bot.cogs.stats.live import LiveStats
from bot.cogs.stats.prune import Pruner
from bot.errors import BadInput

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

Ctx = commands.Context["Guildhouse"]
CATEGORY_NAME = "📊 Server Stats"


def _counters(text: str) -> list[Counter]:
    words = [w for w in text.replace(",", " ").split() if w]
    kinds = [counter_of(w) for w in words] or list(Counter)
    return list(dict.fromkeys(kinds))


async def show(ctx: Ctx, live: LiveStats, days: int, title: str) -> None:
    """The server's figures over `days` days to today, with their chart."""
    assert ctx.guild is not None
    g = ctx.guild
    await live.flush()  # what this worker counted so far is in the figures
    today = live.days.day(g.id, time.time())
    first = today - timedelta(days=days - 1)
    f = await reports.period_figures(ctx.bot, g.id, first, today)
    counts = live.counts.get(g.id, {})
    members = counts.get(Counter.MEMBERS, g.member_count)
    e = reports.embed_of(title, f, reports.channel_names(g, [c for c, _ in f.top_channels]))
    e.set_field_at(0, name="Members", value=report.fmt(members))
    if Counter.ONLINE in counts:
        e.insert_field_at(1, name="Online now", value=f"{counts[Counter.ONLINE]:,}")
    if Counter.BANS in counts:
        e.insert_field_at(1, name="Bans now", value=f"{counts[Counter.BANS]:,}")
    png = await reports.chart_png(ctx.bot, g.id, today, f"{g.name}: {days} days", days)
    await ctx.send(embed=e, file=discord.File(io.BytesIO(png), reports.CHART_NAME))


def _locked(g: discord.Guild, style: str) -> dict[Any, discord.PermissionOverwrite]:
    """Counter channels nobody joins (voice) or writes in (text); the bot may rename them."""
    deny = (
        discord.PermissionOverwrite(send_messages=False, add_reactions=False)
        if style == "text"
        else discord.PermissionOverwrite(connect=False)
    )
    mine = discord.PermissionOverwrite(
        view_channel=True, manage_channels=True, connect=True, send_messages=True
    )
    return {g.default_role: deny, g.me: mine}


class Stats(commands.Cog, name="Statistics"):
    """Server statistics: counter channels, daily and weekly reports with a chart, history."""

    def __init__(self, bot: Guildhouse) -> None:
        self.bot = bot
        self.live = LiveStats(bot)
        self.reports = reports.Reports(bot)
        self.pruner = Pruner(bot)
        self.heartbeat = heartbeat.Heartbeat(bot)
        self.rotation = presence.Rotation(bot)

    async def cog_load(self) -> None:
        await jobs.install(self.bot, self.reports.kind())
        await jobs.install(self.bot, self.pruner.kind())
        await jobs.install(self.bot, self.heartbeat.kind())
        if not self.bot.rest_only:
            self.bot.bus.handle(heartbeat.RPC, None, self.heartbeat.answer)
            self.rotation.start()
            try:
                await self.pruner.ensure()
                await self.heartbeat.ensure()
            except jobs.DB_ERRORS as exc:  # PostgreSQL away: the next start schedules them
                outages.note(exc, "scheduling the statistics prune and heartbeat")
        self.bot.add_chat_sink(self.live.chat)
        self.live.start()
        if self.bot.is_ready():
            await self.live.load(list(self.bot.guilds))

    async def cog_unload(self) -> None:
        self.bot.remove_chat_sink(self.live.chat)
        await jobs.uninstall(self.bot, reports.KIND)
        await jobs.uninstall(self.bot, prune.KIND)
        await jobs.uninstall(self.bot, heartbeat.KIND)
        await self.rotation.stop()
        await self.live.stop()

    # -- events ----------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_shard_ready(self, shard_id: int) -> None:
        await self.live.load([g for g in self.bot.guilds if g.shard_id == shard_id])

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self.live.load([guild])

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        self.live.drop_guild(guild.id)

    @commands.Cog.listener()
    async def on_member_join(self, member: discord.Member) -> None:
        self.live.joined(member)

    @commands.Cog.listener()
    async def on_raw_member_remove(self, payload: discord.RawMemberRemoveEvent) -> None:
        self.live.left(self.bot.get_guild(payload.guild_id), payload.guild_id)

    @commands.Cog.listener()
    async def on_member_ban(self, guild: discord.Guild, user: discord.abc.User) -> None:
        self.live.banned(guild.id, user)

    @commands.Cog.listener()
    async def on_member_unban(self, guild: discord.Guild, user: discord.User) -> None:
        self.live.unbanned(guild.id)

    @commands.Cog.listener()
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        self.live.forget_channel(channel.id)

    # -- showing ---------------------------------------------------------------------------

    @commands.hybrid_group(
        name="stats",
        fallback="show",
        extras={
            "examples": [
                "stats",
                "stats history 90d",
                "stats setup members bans",
                "stats channel members #member-count",
                'stats format members "👥 Members: {count:,}"',
                "stats report #stats 9 Europe/Paris",
                "stats off",
            ]
        },
    )
    @commands.guild_only()
    async def stats(self, ctx: Ctx) -> None:
        """Show this server's figures for today and the last 30 days' chart."""
        await show(ctx, self.live, 1, "Today so far")

    @stats.command(name="history", extras={"examples": ["stats history 90d", "stats history 12w"]})
    @commands.guild_only()
    @app_commands.describe(span="How far back: 7d, 90d, 12w (1 to 365 days; default 30d)")
    async def history(self, ctx: Ctx, span: str = "30d") -> None:
        """Show this server's figures and chart over the last days (up to a year)."""
        days = report.parse_history(span)
        await show(ctx, self.live, days, f"The last {days} days")

    # -- counter channels ------------------------------------------------------------------

    @stats.command(
        name="setup",
        extras={
            "examples": ["stats setup", "stats setup members bans", "stats setup text members"]
        },
    )
    @commands.guild_only()
    @commands.bot_has_guild_permissions(manage_channels=True)
    @requires(Level.ADMIN)
    @app_commands.describe(
        counters="Which counters: members, online, bans (default: all three)",
        style="voice channels (nobody can join) or locked text channels",
    )
    async def setup(
        self, ctx: Ctx, style: Literal["voice", "text"] | None = None, *, counters: str = ""
    ) -> None:
        """Make a category with a counter channel for members, online members and bans."""
        assert ctx.guild is not None
        g = ctx.guild
        kinds = _counters(counters)
        overwrites = _locked(g, style or "voice")
        reason = f"stats setup by {ctx.author} ({ctx.author.id})"
        category = await g.create_category(CATEGORY_NAME, overwrites=overwrites, reason=reason)
        await store.update_settings(self.bot.pool, g.id, category_id=category.id)
        made = []
        for kind in kinds:
            count = await self.live.count_now(g, kind)
            name = render(kind.default_template, count or 0)
            if style == "text":
                ch: discord.abc.GuildChannel = await category.create_text_channel(
                    name, overwrites=overwrites, reason=reason
                )
            else:
                ch = await category.create_voice_channel(name, overwrites=overwrites, reason=reason)
            row = await store.set_counter(
                self.bot.pool, g.id, kind, ch.id, template=kind.default_template, shown=name
            )
            self.live.adopt(row)
            if count is not None:
                self.live.set_count(g.id, kind, count)  # followed from here on
            made.append(ch.mention)
        await ctx.send(f"Counter channels made in **{CATEGORY_NAME}**: {', '.join(made)}.")

    @stats.command(
        name="channel",
        extras={"examples": ["stats channel members #member-count", "stats channel bans #bans"]},
    )
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(
        counter="members, online or bans", channel="The channel whose name shows the count"
    )
    async def channel(
        self,
        ctx: Ctx,
        counter: str,
        channel: discord.TextChannel | discord.VoiceChannel | discord.StageChannel,
    ) -> None:
        """Make an existing channel a counter: its name will show the count."""
        assert ctx.guild is not None
        kind = counter_of(counter)
        if channel.guild.id != ctx.guild.id:
            raise BadInput("That channel is not in this server.")
        if not channel.permissions_for(ctx.guild.me).manage_channels:
            raise BadInput(f"I need Manage Channels in {channel.mention} to rename it.")
        current = await store.counters(self.bot.pool, [ctx.guild.id])
        template = next((c.template for c in current if c.kind == kind), kind.default_template)
        row = await store.set_counter(
            self.bot.pool, ctx.guild.id, kind, channel.id, template=template, shown=channel.name
        )
        self.live.adopt(row)
        count = await self.live.count_now(ctx.guild, kind)
        if count is not None:
            self.live.set_count(ctx.guild.id, kind, count)
        shown = render(template, count) if count is not None else "(count not known yet)"
        await ctx.send(f"{channel.mention} now counts {kind.value}: **{shown}**.")

    @stats.command(
        name="format",
        extras={"examples": ['stats format members "👥 Members: {count:,}"']},
    )
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(
        counter="members, online or bans",
        template="The name, with {count} (or {count:,} for 1,234) where the number goes",
    )
    async def format_(self, ctx: Ctx, counter: str, *, template: str) -> None:
        """Set how a counter channel's name is written: the template, with {count}."""
        assert ctx.guild is not None
        kind = counter_of(counter)
        template = check_template(template.strip().strip('"'))
        row = await store.set_template(self.bot.pool, ctx.guild.id, kind, template)
        if row is None:
            raise BadInput(
                f"This server has no {kind.value} counter yet: `stats setup` or `stats channel`."
            )
        self.live.adopt(row)
        await ctx.send(
            f"The {kind.value} counter will read **{render(template, 1234)}** (shown with 1,234)."
        )

    @stats.command(name="off", extras={"examples": ["stats off"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    async def off(self, ctx: Ctx) -> None:
        """Stop updating the counter channels (the channels stay; delete them if you like)."""
        assert ctx.guild is not None
        dropped = await store.drop_counters(self.bot.pool, ctx.guild.id)
        self.live.drop_guild(ctx.guild.id)
        if not dropped:
            await ctx.send("This server has no counter channels.")
            return
        names = ", ".join(f"<#{c.channel_id}>" for c in dropped)
        await ctx.send(f"Counters off: {names} keep their names and are no longer updated.")

    # -- reports ---------------------------------------------------------------------------

    @stats.command(
        name="report",
        extras={
            "examples": [
                "stats report #stats",
                "stats report #stats 9 Europe/Paris",
                "stats report off",
            ]
        },
    )
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(
        channel="Where reports go, or 'off'",
        hour="The hour (0-23) they are sent, in the time zone",
        timezone="A time zone name such as Europe/Paris (default: the one set, else UTC)",
    )
    async def report_cmd(
        self, ctx: Ctx, channel: str, hour: int | None = None, timezone: str | None = None
    ) -> None:
        """Send a daily report (joins, leaves, bans, messages, a chart) to a channel."""
        assert ctx.guild is not None
        fields: dict[str, object] = {}
        if channel.lower() == "off":
            fields["report_channel_id"] = None
        else:
            target = await commands.TextChannelConverter().convert(ctx, channel)
            if not target.permissions_for(ctx.guild.me).send_messages:
                raise BadInput(f"I can't post in {target.mention}.")
            fields["report_channel_id"] = target.id
        if hour is not None:
            if not 0 <= hour <= 23:
                raise BadInput(f"The hour must be 0 to 23, not {hour}.")
            fields["report_hour"] = hour
        if timezone is not None:
            fields["tz"] = report.check_zone(timezone)
        s = await store.update_settings(self.bot.pool, ctx.guild.id, **fields)
        self.live.configured(s)
        await self.reports.ensure(s)
        if s.report_channel_id is None:
            await ctx.send("Reports are off.")
            return
        kinds = " and ".join(k for k in report.KINDS if getattr(s, k)) or "no"
        nxt = report.next_period("daily", s.tz, s.report_hour, datetime.now(UTC))
        when = discord.utils.format_dt(nxt.due_at, "R")
        await ctx.send(
            f"{kinds.capitalize()} reports go to <#{s.report_channel_id}> at "
            f"{s.report_hour:02d}:00 {s.tz}; the next is {when}."
        )

    @stats.command(
        name="schedule",
        extras={"examples": ["stats schedule weekly on", "stats schedule daily off"]},
    )
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(kind="daily or weekly", state="on or off")
    async def schedule(
        self, ctx: Ctx, kind: Literal["daily", "weekly"], state: Literal["on", "off"]
    ) -> None:
        """Turn the daily or weekly report on or off."""
        assert ctx.guild is not None
        s = await store.update_settings(self.bot.pool, ctx.guild.id, **{kind: state == "on"})
        await self.reports.ensure(s)
        where = (
            f" to <#{s.report_channel_id}>"
            if s.report_channel_id
            else (" (set a channel with `stats report #channel`)")
        )
        await ctx.send(f"The {kind} report is {state}{where}.")
