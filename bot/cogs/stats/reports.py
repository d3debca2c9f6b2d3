"""Daily and weekly reports: jobs of kind `stats.report` on the shared scheduler (bot/jobs).

Each server with a report channel has one pending job per enabled kind, keyed
`<guild>:daily:<first day>` (or `weekly:`), due at its report hour, local time, the day after
the period ends. The handler sends the report and, in the transaction that marks the job done,
records it and schedules the next period's job: a chain with one link per period, each sent
once across clusters (the key), also after an outage (the job is claimed late and the report
says so). A second attempt (the first runner died after sending) first looks in the channel for
the report's nonce (the job id in the footer) since the first claim and, if it is there, only
completes the job: exactly once. After an outage longer than two days, the missed periods
but the last are skipped (report.following).
"""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import discord

from bot import jobs
from bot.cogs.stats import report, store
from bot.cogs.stats.report import Figures, Period

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)

KIND = "stats.report"
CHART_NAME = "stats.png"
CLOCK_SLACK = timedelta(seconds=10)
MAX_BAN_NAMES = 20  # in the embed; a longer list is attached whole (BANS_NAME)
BANS_NAME = "bans.txt"


def job_key(guild_id: int, p: Period) -> str:
    return f"{guild_id}:{p.name}"


def nonce(job_id: int) -> str:
    return f"report #{job_id}"


async def chart_png(
    bot: Guildhouse, guild_id: int, last: date, title: str, days: int = report.CHART_DAYS
) -> bytes:
    """The chart of the `days` days ending on `last`, rendered off the event loop. The
    renderer (bot/charts.py, and Pillow) is imported here, at the first chart, not when the
    cog loads."""
    first = last - timedelta(days=days - 1)
    rows = await store.days(bot.pool, guild_id, first, last)
    before = await store.last_members_before(bot.pool, guild_id, first)
    s = report.series(([before] if before else []) + rows, last, days)
    # Lazily: Pillow is loaded only in a worker that draws a chart.
    from bot import charts

    return await asyncio.to_thread(
        charts.columns,
        [d.isoformat() for d in s.days],
        s.messages,
        title,
        line=s.members,
        legend="line: members  bars: messages/day",
    )


def embed_of(title: str, f: Figures, channel_names: dict[int, str]) -> discord.Embed:
    colour = discord.Colour.green() if f.net >= 0 else discord.Colour.orange()
    e = discord.Embed(title=title, colour=colour)
    e.add_field(name="Members", value=report.fmt(f.members))
    e.add_field(name="Joins", value=f"{f.joins:,}")
    e.add_field(name="Leaves", value=f"{f.leaves:,}")
    e.add_field(name="Net growth", value=f"{f.net:+,}")
    e.add_field(name="Peak online", value=report.fmt(f.peak_online))
    e.add_field(name="Messages", value=f"{f.messages:,} ({f.messages_per_day:,.0f} a day)")
    if f.top_channels:
        lines = [f"{channel_names.get(cid, f'<#{cid}>')}: {n:,}" for cid, n in f.top_channels]
        e.add_field(name="Most active channels", value="\n".join(lines), inline=False)
    bans = f"{f.bans:,}"
    if f.banned:
        shown = ", ".join(discord.utils.escape_markdown(n) for n in f.banned[:MAX_BAN_NAMES])
        more = len(f.banned) - MAX_BAN_NAMES
        bans += f": {shown}" + (f" and {more:,} more (all in {BANS_NAME})" if more > 0 else "")
    e.add_field(name="Bans", value=bans[:1024], inline=False)
    e.set_image(url=f"attachment://{CHART_NAME}")
    return e


def bans_file(f: Figures) -> discord.File | None:
    """The period's banned names, one a line, when there are more than the embed shows."""
    if len(f.banned) <= MAX_BAN_NAMES:
        return None
    return discord.File(io.BytesIO("".join(f"{n}\n" for n in f.banned).encode()), BANS_NAME)


async def period_figures(bot: Guildhouse, guild_id: int, first: date, last: date) -> Figures:
    rows = await store.days(bot.pool, guild_id, first, last)
    channels = await store.channel_totals(bot.pool, guild_id, first, last)
    banned = await store.ban_names(bot.pool, guild_id, first, last)
    return report.figures(rows, (last - first).days + 1, channels, banned)


def channel_names(guild: discord.Guild | None, ids: list[int]) -> dict[int, str]:
    out = {}
    for cid in ids:
        ch = guild.get_channel(cid) if guild else None
        out[cid] = f"<#{cid}>" if ch is None else ch.mention
    return out


class Reports:
    """The `stats.report` kind and the scheduling of each server's chain."""

    def __init__(self, bot: Guildhouse) -> None:
        self.bot = bot

    def kind(self) -> jobs.Kind:
        return jobs.Kind(KIND, self.run, lease=60.0, late_after=120.0)

    async def run(self, run: jobs.Run) -> None:
        job = run.job
        assert job.guild_id is not None
        kind, start = report.parse_period_name(job.payload["period"])
        settings = await store.settings(self.bot.pool, job.guild_id)
        if settings is None or settings.report_channel_id is None or not getattr(settings, kind):
            return  # reports turned off since: done, and the chain ends
        p = report.period(kind, start, settings.tz, settings.report_hour)
        await self._guild_ready(run)
        channel = self.bot.get_channel(settings.report_channel_id)
        if not isinstance(channel, discord.TextChannel):
            raise jobs.Failed(f"report channel {settings.report_channel_id} is gone")
        message_id = await self._sent_before(channel, job) if job.attempt > 1 else None
        if message_id is None:
            message_id = await self._send(channel, job, p)
        now = datetime.now(UTC)
        nxt = report.following(p, settings.tz, settings.report_hour, now)
        async with run.complete() as conn:
            await store.record_report(
                conn, job.guild_id, p.name, channel.id, message_id, late=job.late
            )
            await jobs.store.schedule(
                conn,
                KIND,
                job_key(job.guild_id, nxt),
                nxt.due_at,
                guild_id=job.guild_id,
                payload={"period": nxt.name},
            )
        await jobs.of(self.bot).notify()

    async def _guild_ready(self, run: jobs.Run) -> None:
        """A report due while the bot was down is claimed as the worker starts, before its
        shards have delivered the servers: wait for them (within the lease), else retry."""
        job = run.job
        assert job.guild_id is not None
        if not self.bot.is_ready():
            try:
                await asyncio.wait_for(self.bot.wait_until_ready(), max(0.0, run.time_left() - 15))
            except TimeoutError:
                raise jobs.Retry("the shards are not ready yet", delay=15) from None
        guild = self.bot.get_guild(job.guild_id)
        if guild is None or guild.unavailable:
            raise jobs.Retry(f"server {job.guild_id} is not available", delay=30)

    async def _sent_before(self, channel: discord.TextChannel, job: jobs.Job) -> int | None:
        since = job.first_claimed_at - CLOCK_SLACK
        mark = nonce(job.id)
        me = self.bot.user
        try:
            async for msg in channel.history(after=since, limit=100):
                mine = me is not None and msg.author.id == me.id
                if mine and any(e.footer.text and mark in e.footer.text for e in msg.embeds):
                    return msg.id
        except discord.HTTPException as exc:
            raise jobs.Retry(f"looking for the earlier report: {exc}") from exc
        return None

    async def _send(self, channel: discord.TextChannel, job: jobs.Job, p: Period) -> int:
        assert job.guild_id is not None
        f = await period_figures(self.bot, job.guild_id, p.start, p.end)
        title = f"{'Daily' if p.kind == 'daily' else 'Weekly'} statistics: {p.label()}"
        if job.late:
            title += " (late)"
        png = await chart_png(self.bot, job.guild_id, p.end, f"{channel.guild.name}: 30 days")
        e = embed_of(title, f, channel_names(channel.guild, [c for c, _ in f.top_channels]))
        foot = nonce(job.id)
        if job.late:
            foot += f" · sent late by {timedelta(seconds=int(job.late_by))}"
        e.set_footer(text=foot)
        try:
            files = [discord.File(io.BytesIO(png), CHART_NAME)]
            if (bans := bans_file(f)) is not None:
                files.append(bans)
            msg = await channel.send(embed=e, files=files)
        except discord.Forbidden as exc:
            raise jobs.Failed(f"may not post in the report channel: {exc.text}") from exc
        except discord.HTTPException as exc:
            raise jobs.Retry(f"{exc.status} {exc.text}") from exc
        return msg.id

    async def ensure(self, settings: store.Settings) -> None:
        """After a settings change: each enabled kind has one pending job, due at the new time;
        a disabled kind has none."""
        for kind in report.KINDS:
            enabled = settings.report_channel_id is not None and getattr(settings, kind)
            pattern = f"{settings.guild_id}:{kind}:%"
            rows = await self.bot.pool.fetch(
                "SELECT key FROM jobs WHERE kind = $1 AND key LIKE $2 AND state = 'pending'",
                KIND,
                pattern,
            )
            runner = jobs.of(self.bot)
            if not enabled:
                for r in rows:
                    await runner.cancel(KIND, r["key"])
                continue
            if rows:
                for r in rows:
                    _, start = report.parse_period_name(r["key"].split(":", 1)[1])
                    p = report.period(kind, start, settings.tz, settings.report_hour)
                    await runner.reschedule(KIND, r["key"], p.due_at)
                continue
            now = datetime.now(UTC)
            p = report.next_period(kind, settings.tz, settings.report_hour, now)
            found = await runner.schedule(
                KIND,
                job_key(settings.guild_id, p),
                p.due_at,
                guild_id=settings.guild_id,
                payload={"period": p.name},
            )
            if not found.created and found.state in ("done", "failed", "cancelled"):
                nxt = report.following(p, settings.tz, settings.report_hour, now)
                await runner.schedule(
                    KIND,
                    job_key(settings.guild_id, nxt),
                    nxt.due_at,
                    guild_id=settings.guild_id,
                    payload={"period": nxt.name},
                )
