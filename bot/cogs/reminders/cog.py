"""Reminder commands: `remind` (create, list, cancel) and `timezone` (set, show).

Thin: arguments go to `options`/`parsing`/`plan` (pure), storage to `store`; deliveries are
jobs of the shared scheduler (bot/jobs/), whose kind (`sender.Sender`) this cog installs in
`cog_load` and removes in `cog_unload`.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

import asyncpg
import discord
from discord import app_commands
from discord.ext import commands

from bot import audit, jobs
from bot.checks import Level, caller_level
from bot.cogs.reminders import options, outbox, parsing, plan, store
from bot.cogs.reminders.options import Raw
from bot.cogs.reminders.sender import Sender
from bot.cogs.reminders.transport import DiscordTransport
from bot.errors import BadInput
from bot.ui import pages_from_lines, safe_text, send_pages

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)

Ctx = commands.Context["Guildhouse"]

USAGE = (
    "<when> <message> [--before 30m 6h 1d] [--repeat weekly] [--times N | --until DATE] "
    "[--to me|channel|players] [--dm | --here]"
)
_ID = re.compile(r"#?(\d{1,18})")


def _who(target: str, via: str) -> str:
    if target == "players":
        return "players"
    if target == "channel":
        return "channel"
    return "you by DM" if via == "dm" else "you here"


def describe_line(r: store.Reminder, *, with_author: bool) -> str:
    when = "being sent"
    if r.next_fire is not None:
        at = int(r.next_fire.timestamp())
        when = f"<t:{at}:f> (<t:{at}:R>)"
    bits = [f"`#{r.id}` {when}", _who(r.target, r.via)]
    if r.channel_id and r.guild_id is not None:
        bits.append(f"<#{r.channel_id}>")
    if r.series.repeat is not None:
        bits.append(r.series.repeat.describe())
    if r.series.leads != (0,):
        bits.append("before " + ", ".join(parsing.format_duration(x) for x in r.series.leads))
    if with_author:
        bits.append(f"by <@{r.author_id}>")
    return " · ".join(bits) + f": {safe_text(' '.join(r.message.split()), 80)}"


class Reminders(commands.Cog, name="Reminders"):
    """Reminders for sessions and anything else: one-off or repeating, with lead times."""

    def __init__(self, bot: Guildhouse) -> None:
        self.bot = bot
        self.sender = Sender(bot.pool, DiscordTransport(bot), cluster=str(bot.config.cluster_id))

    async def cog_load(self) -> None:
        # The worker's job runner delivers them (not in `guildhouse commands sync`'s REST-only
        # bot, which runs no jobs).
        await jobs.install(self.bot, self.sender.kind())

    async def cog_unload(self) -> None:
        await jobs.uninstall(self.bot, outbox.KIND)

    async def _zone(self, user_id: int) -> tuple[str, bool]:
        """The user's zone, and whether it is the default (UTC, none set)."""
        zone = await store.get_zone(self.bot.pool, user_id)
        if zone is None:
            return "UTC", True
        try:
            ZoneInfo(zone)
        except (ValueError, KeyError):  # a zone the system no longer knows
            return "UTC", True
        return zone, False

    async def _announce(self) -> None:
        """Wake the job runners: a reminder due in seconds must not wait for their poll."""
        await jobs.of(self.bot).notify()

    # -- remind ----------------------------------------------------------------------------------

    @commands.hybrid_group(
        name="remind",
        fallback="create",
        invoke_without_command=True,
        usage=USAGE,
        extras={
            "examples": [
                "remind in 2h Check the oven",
                "remind 2026-12-05 19:30 Session at Ann's --before 1d 30m",
                "remind 2026-12-05T19:30+01:00 Session --to players",
                "remind 19:00 Shadowrun night --repeat weekly --times 10 --before 6h",
                "remind in 1d 30m Buy dice --dm",
                "remind list",
                "remind cancel 12",
            ]
        },
    )
    @app_commands.describe(
        when="in 2h, in 1d 30m, 19:30, tomorrow 19:30, 2026-12-05 19:30 (your timezone), "
        "or ISO 8601 with offset",
        message="What to remind of (up to 1,000 characters)",
        before="Lead times before the time, e.g. 30m 6h 1d (one reminder each; 0 = at the time)",
        repeat="daily, weekly, hourly, every 2 days, 12h (at least an hour apart)",
        times="How many times in all, for a repeat (2-500)",
        until="Last day (or time) of a repeat, e.g. 2027-03-01",
        to="me (default), channel, or players (this channel's table and its GM)",
        via="channel (default in a server) or dm",
    )
    async def remind(
        self,
        ctx: Ctx,
        *,
        when: str,
        message: str | None = None,
        before: str | None = None,
        repeat: str | None = None,
        times: int | None = None,
        until: str | None = None,
        to: Literal["me", "channel", "players"] | None = None,
        via: Literal["dm", "channel"] | None = None,
    ) -> None:
        """Set a reminder, at a time or after a while.

        The time: `in 2h`, `in 1d 30m`, `19:30` (the next one), `tomorrow 19:30`,
        `2026-12-05 19:30` (in your timezone, see `timezone set`; or add a zone:
        `2026-12-05 19:30 Europe/Berlin`), or ISO 8601 with an offset
        (`2026-12-05T19:30+01:00`). Then the message, then any options:
        `--before 30m 6h 1d`: one reminder at each lead time before the time (add `0` for the
        time itself); `--repeat daily|weekly|hourly|2d|12h` with `--times N` or
        `--until DATE` (repeats end after a year at most); `--to me|channel|players`
        (players: this channel's tabletop table and its GM, each mentioned); `--dm` or
        `--here`. At most 25 active reminders each. Reminders the bot missed while down are
        sent when it is back, marked late.
        """
        raw = None
        if ctx.interaction is not None:
            raw = Raw(
                when=when,
                message=message or "",
                before=before,
                repeat=repeat,
                times=str(times) if times is not None else None,
                until=until,
                to=to,
                via=via,
            )
        planned = await self._plan(ctx, when, raw)
        if planned.target == "players":
            await self._check_players(ctx)
        reminder_id = await store.create(
            self.bot.pool,
            planned,
            author_id=ctx.author.id,
            guild_id=ctx.guild.id if ctx.guild else None,
            channel_id=ctx.channel.id,
            limit=plan.ACTIVE_LIMIT,
        )
        await self._announce()
        text = f"Reminder #{reminder_id} set: {plan.describe(planned)}"
        for note in planned.notes:
            text += f"\n{note}"
        await ctx.send(text)

    async def _plan(self, ctx: Ctx, text: str, raw: Raw | None) -> plan.Plan:
        """The checked plan of what was typed: the prefix text (`raw` None) or the slash
        options. A ParseError (a UserError) says what was wrong."""
        zone, default = await self._zone(ctx.author.id)
        now = datetime.now(UTC)
        parsed = None
        if raw is None:
            if text.split(None, 1)[:1] == ["create"]:
                text = text.split(None, 1)[1] if len(text.split(None, 1)) > 1 else ""
            parsed, raw = options.split_prefix_text(text, now, zone)
        return plan.build(
            raw,
            now=now,
            zone=zone,
            in_guild=ctx.guild is not None,
            when=parsed,
            zone_is_default=default,
        )

    async def _check_players(self, ctx: Ctx) -> None:
        players = await outbox.table_players(self.bot.pool, ctx.channel.id)
        if players is None:
            raise BadInput(
                "Reminders `to players` need the tabletop player list, which this bot doesn't have."
            )
        if not players:
            raise BadInput(
                "This channel's table has no players yet: the GM adds them with `init add`."
            )

    @remind.command(name="list", extras={"examples": ["remind list", "remind list server"]})
    @app_commands.describe(
        scope="mine: your reminders; server: everyone's in this server (moderators)"
    )
    async def remind_list(self, ctx: Ctx, scope: Literal["mine", "server"] = "mine") -> None:
        """List your active reminders (moderators: `server` lists everyone's in this server)."""
        if scope == "server":
            if ctx.guild is None:
                raise BadInput("`server` only works in a server.")
            if await caller_level(ctx) < Level.MODERATOR:
                raise BadInput("Only moderators can list everyone's reminders.")
            found = await store.list_active(self.bot.pool, guild_id=ctx.guild.id)
            title = "Reminders in this server"
        else:
            found = await store.list_active(self.bot.pool, author_id=ctx.author.id)
            title = "Your reminders"
        lines = [describe_line(r, with_author=scope == "server") for r in found]
        if not lines:
            lines = ["No active reminders. Set one with `remind in 2h Something`."]
        await send_pages(ctx, pages_from_lines(title, lines, per_page=10))

    @remind.command(name="cancel", extras={"examples": ["remind cancel 12", "remind cancel #12"]})
    @app_commands.describe(reminder="The reminder's number, as `remind list` shows it")
    async def remind_cancel(self, ctx: Ctx, reminder: str) -> None:
        """Cancel a reminder: your own, or (moderators) anyone's in this server."""
        m = _ID.fullmatch(reminder.strip())
        if not m:
            raise BadInput(
                f"`{safe_text(reminder, 40)}` is not a reminder number; "
                "`remind list` shows them, e.g. `#12`."
            )
        reminder_id = int(m.group(1))
        found = await store.get(self.bot.pool, reminder_id)
        if found is None or found.status != "active":
            raise BadInput(f"There is no active reminder #{reminder_id}.")
        if found.author_id == ctx.author.id:
            async with self.bot.pool.acquire() as conn, conn.transaction():
                result = await store.cancel(conn, reminder_id, ctx.author.id)
        elif (
            ctx.guild is not None
            and found.guild_id == ctx.guild.id
            and await caller_level(ctx) >= Level.MODERATOR
        ):
            result = await self._cancel_audited(ctx, found)
        else:
            raise BadInput(
                f"Reminder #{reminder_id} isn't yours; only its author, or a moderator of its "
                "server, can cancel it."
            )
        if result is None:
            raise BadInput(f"There is no active reminder #{reminder_id}.")
        text = f"Reminder #{reminder_id} cancelled."
        if result.firing:
            text += " One message of it was already being sent."
        await ctx.send(text)

    async def _cancel_audited(self, ctx: Ctx, found: store.Reminder) -> store.Cancelled | None:
        assert ctx.guild is not None
        outcome: list[store.Cancelled | None] = []

        async def change(conn: asyncpg.Connection) -> tuple[Any, Any]:
            outcome.append(await store.cancel(conn, found.id, ctx.author.id))
            return (
                {"reminder": found.id, "status": "active", "message": found.message[:200]},
                {"reminder": found.id, "status": "cancelled"},
            )

        await audit.audited(
            self.bot,
            guild_id=ctx.guild.id,
            actor_id=ctx.author.id,
            action="reminders.cancel",
            change=change,
            channel_id=found.channel_id,
            target_id=found.author_id,
        )
        return outcome[0]

    # -- timezone --------------------------------------------------------------------------------

    @commands.hybrid_group(
        name="timezone",
        fallback="show",
        invoke_without_command=True,
        extras={"examples": ["timezone", "timezone set Europe/Berlin", "timezone set UTC"]},
    )
    async def timezone(self, ctx: Ctx) -> None:
        """Show your timezone: local times in reminders are read in it."""
        zone = await store.get_zone(self.bot.pool, ctx.author.id)
        if zone is None:
            await ctx.send(
                "You haven't set a timezone, so I read local times as UTC. "
                "Set yours with `timezone set Europe/Berlin` (any IANA zone name)."
            )
            return
        now = datetime.now(ZoneInfo(zone))
        await ctx.send(f"Your timezone is {zone} (now {now:%H:%M}, UTC{now:%z}).")

    @timezone.command(name="set", extras={"examples": ["timezone set Europe/Berlin"]})
    @app_commands.describe(zone="An IANA zone name such as Europe/Berlin, America/New_York, UTC")
    async def timezone_set(self, ctx: Ctx, *, zone: str) -> None:
        """Set your timezone (an IANA name such as Europe/Berlin), for local times in reminders.

        Reminders already set keep the zone they were set in."""
        name = parsing.canonical_zone(zone)
        await store.set_zone(self.bot.pool, ctx.author.id, name)
        now = datetime.now(ZoneInfo(name))
        await ctx.send(f"Your timezone is now {name} (now {now:%H:%M}, UTC{now:%z}).")

    @timezone_set.autocomplete("zone")
    async def _zone_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=n, value=n) for n in parsing.zone_names_matching(current)]
