"""Points commands: `daily`, `points [member]`, `points history`, `points top`, the admins'
`points give|take|set` and `points settings`; and chat points from the light path.

Thin: the ledger and what earns points are in bot/points/ (shared with predictions), the live
ranks in bot/points/board.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import discord
from discord import app_commands
from discord.ext import commands

from bot import audit, outages
from bot.checks import Level, check_level, requires
from bot.errors import BadInput
from bot.points import Services, earn, ledger
from bot.points import settings as points_settings
from bot.points.settings import PointsSettings, parse_change
from bot.ui import fit_embed, pages_from_lines, send_pages

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)

Ctx = commands.Context["Guildhouse"]

KIND_NAMES = {
    "daily": "daily claim",
    "chat": "chat",
    "bet": "bet",
    "resolve": "payout",
    "refund": "refund",
    "admin_give": "given by an admin",
    "admin_take": "taken by an admin",
    "admin_set": "set by an admin",
}
CHAT_QUEUE = 10_000


def key_of(ctx: Ctx) -> str:
    """What makes a command's effect happen once: the interaction, or the message."""
    if ctx.interaction is not None:
        return f"i:{ctx.interaction.id}"
    return f"m:{ctx.message.id}"


def describe_settings(s: PointsSettings) -> discord.Embed:
    embed = discord.Embed(title="Points and predictions settings", colour=0xF1C40F)
    embed.add_field(
        name="Earning",
        value=(
            f"daily_amount {s.daily_amount:,} · streak_bonus {s.streak_bonus:,} a day, "
            f"up to streak_max {s.streak_max} days\nchat_points {s.chat_points} a message "
            f"(once per {s.chat_cooldown}s, the XP cooldown)"
        ),
        inline=False,
    )
    embed.add_field(
        name="Betting",
        value=(
            f"min_bet {s.min_bet:,} · max_bet {s.max_bet:,} · max_stake {s.max_stake:,} "
            f"a member per prediction\nallow_switch {'on' if s.allow_switch else 'off'}"
        ),
        inline=False,
    )
    embed.add_field(
        name="Predictions",
        value=(
            f"creators: moderators{f' and <@&{s.creator_role}>' if s.creator_role else ''}\n"
            f"vote_enabled {'on' if s.vote_enabled else 'off'} · vote_min {s.vote_min} · "
            f"refund_hours {s.refund_hours}"
        ),
        inline=False,
    )
    embed.set_footer(text="Change one: points settings <name> <value> (admins)")
    return embed


class Points(commands.Cog):
    """Points: a balance per server, earned daily and by chatting, staked on predictions."""

    def __init__(self, bot: Guildhouse, services: Services) -> None:
        self.bot = bot
        self.services = services
        self.settings = services.settings
        self.board = services.board
        self._chat: asyncio.Queue[tuple[int, int, int]] = asyncio.Queue(CHAT_QUEUE)
        self._chat_task: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        if self.bot.rest_only:
            return
        await self.services.start()
        self.bot.add_chat_sink(self.take_chat)
        self._chat_task = asyncio.create_task(self._chat_loop(), name="points-chat")

    async def cog_unload(self) -> None:
        self.bot.remove_chat_sink(self.take_chat)
        if self._chat_task is not None:
            self._chat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._chat_task
        if not self.bot.rest_only:
            await self.services.stop()

    # -- chat ----------------------------------------------------------------------------------

    def take_chat(self, chat: Any) -> None:
        """The light path's sink: runs in the gateway parser, so it only queues. Servers whose
        settings this worker has and that give no chat points cost nothing more."""
        cached = self.settings.cached(chat.guild_id)
        if cached is not None and cached.chat_points <= 0:
            return
        with contextlib.suppress(asyncio.QueueFull):  # a flood: chat points are a bonus
            self._chat.put_nowait((chat.guild_id, chat.author_id, chat.message_id))

    async def _chat_loop(self) -> None:
        while True:
            guild_id, user_id, message_id = await self._chat.get()
            try:
                await self.chat_points(guild_id, user_id, message_id)
            except Exception as exc:
                if outages.note(exc, "chat points") is None:
                    log.exception("points: could not count a chat message")

    async def chat_points(self, guild_id: int, user_id: int, message_id: int) -> bool:
        settings = await self.settings.get(guild_id)
        if settings.chat_points <= 0:
            return False
        cooldown = self.bot.keys("points", "chat-cd", guild_id, user_id)
        if settings.chat_cooldown > 0 and not await self.bot.redis.set(
            cooldown, "1", nx=True, ex=settings.chat_cooldown
        ):
            return False
        posted = await earn.chat(self.bot.pool, guild_id, message_id, user_id, settings.chat_points)
        if posted is not None:
            await self.board.update(guild_id, posted.balances)
        return posted is not None and posted.applied

    # -- everyone ------------------------------------------------------------------------------

    @commands.hybrid_command(name="daily", extras={"examples": ["daily"]})
    @commands.guild_only()
    async def daily(self, ctx: Ctx) -> None:
        """Claim today's points (once per UTC day); claiming on consecutive days builds a
        streak bonus."""
        assert ctx.guild is not None
        settings = await self.settings.get(ctx.guild.id)
        today = datetime.now(UTC).date()
        async with self.bot.pool.acquire() as conn:
            claim = await earn.claim_daily(conn, settings, ctx.author.id, today)
        if not claim.claimed:
            tomorrow = int(datetime.combine(today, datetime.min.time(), UTC).timestamp()) + 86400
            await ctx.send(
                f"You already claimed today's points. Next claim <t:{tomorrow}:R>. "
                f"Balance: **{claim.balance:,}**."
            )
            return
        await self.board.update(ctx.guild.id, {ledger.member(ctx.author.id): claim.balance})
        streak = f" (day {claim.streak} of your streak)" if claim.streak > 1 else ""
        await ctx.send(f"+**{claim.amount:,}** points{streak}. Balance: **{claim.balance:,}**.")

    @commands.hybrid_group(
        name="points",
        fallback="show",
        extras={
            "examples": [
                "points",
                "points @Ann",
                "points history",
                "points top",
                "points give @Ann 500",
                "points settings max_bet 5000",
            ]
        },
    )
    @commands.guild_only()
    @app_commands.describe(member="Whose balance (yours if left out)")
    async def points(self, ctx: Ctx, member: discord.Member | None = None) -> None:
        """Show a balance and rank in this server."""
        assert ctx.guild is not None
        who = member or ctx.author
        bal = await ledger.balance(self.bot.pool, ctx.guild.id, ledger.member(who.id))
        rank = await self.board.rank(ctx.guild.id, who.id) if bal > 0 else None
        ranked = f" · rank #{rank}" if rank else ""
        await ctx.send(f"{who.mention} has **{bal:,}** points{ranked}.")

    @points.command(name="history", extras={"examples": ["points history", "points history @Ann"]})
    @app_commands.describe(member="Whose ledger lines (moderators may look at anyone's)")
    async def history(self, ctx: Ctx, member: discord.Member | None = None) -> None:
        """Your ledger lines, newest first, with pages."""
        assert ctx.guild is not None
        who = member or ctx.author
        if who.id != ctx.author.id:
            await check_level(ctx, Level.MODERATOR)
        lines = [
            f"`{line.tx_id}` <t:{int(line.at.timestamp())}:d> **{line.amount:+,}** "
            f"{KIND_NAMES.get(line.kind, line.kind)}{f' · {line.memo}' if line.memo else ''}"
            for line in await ledger.history(self.bot.pool, ctx.guild.id, ledger.member(who.id))
        ]
        title = f"Points history of {who.display_name}"
        await send_pages(ctx, pages_from_lines(title, lines or ["No points yet."], per_page=10))

    @points.command(name="top", extras={"examples": ["points top"]})
    async def top(self, ctx: Ctx) -> None:
        """The richest members of this server, with pages."""
        assert ctx.guild is not None
        rows = await self.board.top(ctx.guild.id, 100)
        lines = [f"**{n}.** <@{user}> · {bal:,}" for n, (user, bal) in enumerate(rows, start=1)]
        await send_pages(
            ctx, pages_from_lines("Points leaderboard", lines or ["Nobody has points yet."])
        )

    # -- admins --------------------------------------------------------------------------------

    async def _adjust(self, ctx: Ctx, member: discord.Member, how: str, amount: int) -> int:
        assert ctx.guild is not None
        if member.bot:
            raise BadInput("Bots don't hold points.")
        earn.check_amount(amount, allow_zero=how == "set")
        guild_id = ctx.guild.id

        async def change(conn: asyncpg.Connection) -> tuple[Any, Any]:
            before, after = await earn.adjust(
                conn,
                guild_id=guild_id,
                user_id=member.id,
                how=how,
                amount=amount,
                key=key_of(ctx),
                actor_id=ctx.author.id,
            )
            return {"points": before}, {"points": after}

        entry = await audit.audited(
            self.bot,
            guild_id=guild_id,
            actor_id=ctx.author.id,
            action=f"points.{how}",
            change=change,
            channel_id=ctx.channel.id,
            target_id=member.id,
        )
        after = int(entry.after["points"])
        await self.board.update(guild_id, {ledger.member(member.id): after})
        return after

    @points.command(name="give", extras={"examples": ["points give @Ann 500"]})
    @app_commands.describe(member="Who gets the points", amount="How many (1-1,000,000,000)")
    @requires(Level.ADMIN)
    async def give(self, ctx: Ctx, member: discord.Member, amount: int) -> None:
        """Give a member points from the server's mint (admins; audited)."""
        after = await self._adjust(ctx, member, "give", amount)
        await ctx.send(f"Gave {amount:,} points to {member.mention}: now {after:,}.")

    @points.command(name="take", extras={"examples": ["points take @Ann 200"]})
    @app_commands.describe(member="Whose points", amount="How many (at most what they have)")
    @requires(Level.ADMIN)
    async def take(self, ctx: Ctx, member: discord.Member, amount: int) -> None:
        """Take points from a member (admins; audited). Never below 0."""
        after = await self._adjust(ctx, member, "take", amount)
        await ctx.send(f"Took {amount:,} points from {member.mention}: now {after:,}.")

    @points.command(name="set", extras={"examples": ["points set @Ann 1000"]})
    @app_commands.describe(member="Whose balance", amount="The new balance (0-1,000,000,000)")
    @requires(Level.ADMIN)
    async def set_(self, ctx: Ctx, member: discord.Member, amount: int) -> None:
        """Set a member's balance (admins; audited)."""
        after = await self._adjust(ctx, member, "set", amount)
        await ctx.send(f"{member.mention} now has {after:,} points.")

    @points.command(
        name="settings",
        extras={
            "examples": [
                "points settings",
                "points settings daily_amount 50",
                "points settings allow_switch on",
                "points settings vote_enabled on",
            ]
        },
    )
    @app_commands.describe(name="A setting's name (leave out to see them all)", value="Its value")
    @requires(Level.ADMIN)
    async def settings_(
        self, ctx: Ctx, name: str | None = None, *, value: str | None = None
    ) -> None:
        """Show or change this server's points and predictions settings (admins; audited)."""
        assert ctx.guild is not None
        old = await self.settings.get(ctx.guild.id)
        if name is None:
            await ctx.send(embed=fit_embed(describe_settings(old)))
            return
        if value is None:
            raise BadInput(f"Give a value: `points settings {name[:30]} <value>`.")
        new = parse_change(old, name, value)  # a UserError is the member's answer as it is
        await audit.audited_settings(
            self.bot, ctx, "points.settings", old=old, new=new, save=points_settings.save
        )
        await self.settings.announce(ctx.guild.id)
        await ctx.send(embed=fit_embed(describe_settings(new)))
