"""The Polls cog: `poll "Question?" "A" "B" [--duration 1d] [--multiple] [--anonymous]`, a
message with a button per option (persistent components: any worker answers a press, also
after a restart), live counts, and the close as a job of the shared scheduler (bot/jobs):
one worker closes it when it is due, exactly once, and posts the results with a bar chart."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import components, jobs
from bot.checks import Level, caller_level
from bot.cogs.polls import store
from bot.cogs.polls.rules import MAX_DURATION, PollError, footer, lines, parse, parse_poll_id
from bot.cogs.polls.store import Poll
from bot.context import CommandContext
from bot.ui import safe_text

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)
Ctx = CommandContext
CLOSE = "polls.close"
CHART_NAME = "poll.png"
CLOCK_SLACK = timedelta(seconds=10)


def close_key(poll_id: int) -> str:
    return f"poll-close:{poll_id}"


def poll_embed(poll: Poll, counts: list[int], *, closed: bool = False) -> discord.Embed:
    e = discord.Embed(
        title=("Poll closed: " if closed else "Poll: ") + safe_text(poll.question, 200),
        description="\n".join(lines(poll.options, counts)),
        colour=0x99AAB5 if closed else 0x5865F2,
    )
    e.set_footer(
        text=f"#{poll.id} · {sum(counts)} votes · "
        + footer(poll.multiple, poll.anonymous, poll.closes_at, closed)
    )
    return e


class PollVote(components.Handler, name="pollv"):
    """A poll's option button: toggles the presser's vote for it."""

    who = components.Who.ANYONE
    ttl = MAX_DURATION + 86400
    action_room = 3

    async def pressed(self, press: components.Press) -> None:
        poll_id = int(press.state["p"])
        option = int(press.action[1:])
        outcome, poll = await store.vote(press.bot.pool, poll_id, option, press.user.id)
        if outcome == "closed":
            await press.reply("This poll has closed.", ephemeral=True)
            return
        counts = await store.counts(press.bot.pool, poll)
        await press.update(embed=poll_embed(poll, counts))
        name = safe_text(poll.options[option], 80)
        said = (
            f"You voted for **{name}**."
            if outcome == "added"
            else f"Vote for **{name}** taken back."
        )
        await press.reply(said, ephemeral=True)


async def buttons(bot: Guildhouse, poll: Poll) -> discord.ui.View:
    ref = await PollVote.new(bot, state={"p": poll.id}, stored=False)
    return components.view(
        *(
            ref.button(safe_text(o, 80), action=f"o{i}", row=i // 5)
            for i, o in enumerate(poll.options)
        )
    )


class Polls(commands.Cog, name="Polls"):
    """Polls with buttons, live counts and a results chart."""

    def __init__(self, bot: Guildhouse) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        await jobs.install(self.bot, jobs.Kind(CLOSE, self._close, lease=60.0))

    async def cog_unload(self) -> None:
        await jobs.uninstall(self.bot, CLOSE)

    @commands.hybrid_group(
        name="poll",
        fallback="create",
        invoke_without_command=True,
        extras={
            "examples": [
                'poll "Next campaign?" "Shadowrun" "Call of Cthulhu" "D&D"',
                'poll "Which nights?" "Mon" "Wed" "Fri" --multiple --duration 2d',
                'poll "Keep the house rule?" "Yes" "No" --anonymous --duration 12h',
                "poll end 12",
            ]
        },
    )
    @commands.guild_only()
    @app_commands.describe(
        text='"Question?" "Option" "Option"... [--duration 1d] [--multiple] [--anonymous]'
    )
    async def poll(self, ctx: Ctx, *, text: str) -> None:
        """Ask a question with 2 to 10 options, answered with buttons. `--duration` (1m to
        30d, default 1d), `--multiple` lets members choose several, `--anonymous` never shows
        who voted. Pressing your choice again takes it back. At the end the results are
        posted with a chart. `poll end <number>` ends one early.

        These are Guildhouse's own polls, not Discord's native ones: Discord's can't be
        anonymous, offer at most 32 days in whole hours, and can't be read back or closed by a
        bot on another worker without the message; ours keep their votes in the database, so
        the close and the results are exactly what was counted."""
        assert ctx.guild is not None
        spec = parse(text)
        async with self.bot.pool.acquire() as conn, conn.transaction():
            poll = await store.create(
                conn,
                guild_id=ctx.guild.id,
                channel_id=ctx.channel.id,
                author_id=ctx.author.id,
                question=spec.question,
                options=spec.options,
                multiple=spec.multiple,
                anonymous=spec.anonymous,
                seconds=spec.duration,
            )
            await jobs.store.schedule(
                conn,
                CLOSE,
                close_key(poll.id),
                poll.closes_at,
                guild_id=ctx.guild.id,
                payload={"poll": poll.id},
            )
        await jobs.of(self.bot).notify()
        message = await ctx.send(
            embed=poll_embed(poll, [0] * len(poll.options)), view=await buttons(self.bot, poll)
        )
        await store.set_message(self.bot.pool, poll.id, message.id)

    @poll.command(name="end", extras={"examples": ["poll end 12", "poll end #12"]})
    @commands.guild_only()
    @app_commands.describe(number="The poll's number, as its footer shows it (#12)")
    async def poll_end(self, ctx: Ctx, number: str) -> None:
        """End a poll now, for its creator or a moderator: votes stop, and its results are
        posted as they would have been at its time (once, by the same close)."""
        assert ctx.guild is not None
        poll_id = parse_poll_id(number)
        poll = await store.get(self.bot.pool, poll_id)
        if poll is None or poll.guild_id != ctx.guild.id:
            raise PollError(f"There is no poll #{poll_id} in this server.")
        if poll.author_id != ctx.author.id and (await caller_level(ctx) < Level.MODERATOR):
            raise PollError(f"Only its creator or a moderator may end poll #{poll_id}.")
        if poll.closed_at is not None:
            raise PollError(f"Poll #{poll_id} has closed already.")
        async with self.bot.pool.acquire() as conn, conn.transaction():
            ended = await store.end_now(conn, poll_id)
            if ended is not None:
                await jobs.store.reschedule(conn, CLOSE, close_key(poll_id), ended.closes_at)
        if ended is None:
            raise PollError(f"Poll #{poll_id} is closing already: its results are on the way.")
        await jobs.of(self.bot).notify()
        await ctx.send(f"Poll #{poll_id} has ended: its results follow.")

    async def _close(self, run: jobs.Run) -> None:
        """Post the results once, then mark the poll closed with the job. Votes stop at
        `closes_at` whatever the job does (store.vote), so the counts posted are final. The
        results carry the job's nonce; a later attempt (a worker killed after posting) finds
        them and only completes."""
        job = run.job
        poll = await store.get(self.bot.pool, int(job.payload["poll"]))
        if poll is not None and poll.closed_at is None:
            channel = self.bot.get_partial_messageable(poll.channel_id, guild_id=poll.guild_id)
            if job.attempt == 1 or not await self._sent_before(channel, job):
                try:
                    await self._results(channel, poll, nonce(job.id))
                except discord.NotFound as exc:
                    log.info("poll %s: its channel is gone (%s); closed quietly", poll.id, exc)
                except discord.Forbidden as exc:
                    log.info("poll %s: may not post its results (%s)", poll.id, exc.text)
                except discord.HTTPException as exc:
                    raise jobs.Retry(f"posting poll {poll.id}'s results: {exc}") from exc
        async with run.complete() as conn:
            if poll is not None:
                await store.close(conn, poll.id)

    async def _sent_before(self, channel: discord.PartialMessageable, job: jobs.Job) -> bool:
        mark, me = nonce(job.id), self.bot.user
        try:
            async for msg in channel.history(after=job.first_claimed_at - CLOCK_SLACK, limit=50):
                mine = me is not None and msg.author.id == me.id
                if mine and any(e.footer.text and mark in e.footer.text for e in msg.embeds):
                    return True
        except discord.HTTPException as exc:
            raise jobs.Retry(f"looking for the earlier results: {exc}") from exc
        return False

    async def _results(self, channel: discord.PartialMessageable, poll: Poll, mark: str) -> None:
        counts = await store.counts(self.bot.pool, poll)
        final = poll_embed(poll, counts, closed=True)
        if poll.message_id is not None:
            with contextlib.suppress(discord.NotFound):  # deleted: the results still go out
                await channel.get_partial_message(poll.message_id).edit(embed=final, view=None)
        png = await asyncio.to_thread(_chart, poll, counts)
        results = discord.Embed(title="Results: " + safe_text(poll.question, 200), colour=0x57F287)
        results.description = "\n".join(lines(poll.options, counts))
        if not poll.anonymous and sum(counts):
            who = await store.voters(self.bot.pool, poll.id)
            for i, o in enumerate(poll.options):
                if who.get(i):
                    shown = ", ".join(f"<@{u}>" for u in who[i][:30])
                    more = f" and {len(who[i]) - 30} more" if len(who[i]) > 30 else ""
                    results.add_field(name=safe_text(o, 80), value=shown + more, inline=False)
        results.set_footer(text=f"Poll #{poll.id} · {sum(counts)} votes · {mark}")
        results.set_image(url=f"attachment://{CHART_NAME}")
        await channel.send(embed=results, file=discord.File(io.BytesIO(png), filename=CHART_NAME))


def nonce(job_id: int) -> str:
    return f"close {job_id}"


def _chart(poll: Poll, counts: list[int]) -> bytes:
    from bot import charts  # Pillow only in workers that draw

    return charts.rows(poll.options, counts, poll.question[:80])
