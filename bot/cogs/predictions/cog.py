"""Prediction commands (`predict ...`), the bet and vote buttons' work, the live totals and the
results. Thin: the SQL and every rule about points is in store.py, the arithmetic in payout.py,
the embed in render.py, the buttons in buttons.py, the clock in clock.py.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Literal

import asyncpg
import discord
from discord import app_commands
from discord.ext import commands

from bot import audit, components, jobs, outages
from bot.checks import Level, caller_level, requires
from bot.cogs.predictions import buttons, render, settle, store
from bot.cogs.predictions.clock import Clock
from bot.cogs.predictions.presenter import Presenter
from bot.cogs.predictions.store import Prediction
from bot.cogs.predictions.timing import Timing, schedule_close
from bot.errors import BadInput
from bot.points import Services
from bot.ui import pages_from_lines, safe_text, send_pages

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)

Ctx = commands.Context["Guildhouse"]

QUESTION_MAX = 500
OPTION_MAX = 80
CATEGORY_MAX = 32
WINDOW_MIN, WINDOW_MAX = 60, 30 * 24 * 3600
_WINDOW = re.compile(r"(\d+)\s*(d|h|m|s)")
_UNIT = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_CATEGORY = re.compile(r"--category[= ]\s*(\S+)", re.IGNORECASE)


def parse_window(text: str) -> int:
    """'2h', '1h30m', '3d' -> seconds, from 1 minute to 30 days."""
    raw = text.strip().lower().replace(" ", "")
    parts = _WINDOW.findall(raw)
    if not parts or "".join(a + b for a, b in parts) != raw:
        raise BadInput(f"`{safe_text(text, 30)}` is not a window; write it like 30m, 2h, 1d12h.")
    seconds = sum(int(n) * _UNIT[u] for n, u in parts)
    if not WINDOW_MIN <= seconds <= WINDOW_MAX:
        raise BadInput("The betting window must be from 1 minute to 30 days.")
    return seconds


def parse_spec(text: str) -> tuple[str, list[str], str | None]:
    """'Question? | Option | Option [--category name]' -> (question, options, category)."""
    category = None
    found = _CATEGORY.search(text)
    if found:
        category = found.group(1).strip()
        text = text[: found.start()] + text[found.end() :]
        if len(category) > CATEGORY_MAX:
            raise BadInput(f"A category has at most {CATEGORY_MAX} characters.")
    parts = [p.strip() for p in text.split("|")]
    question, options = parts[0], [p for p in parts[1:] if p]
    if not question:
        raise BadInput("Write the question first: `Who wins? | Red | Blue`.")
    if len(question) > QUESTION_MAX:
        raise BadInput(f"The question has {len(question)} characters; at most {QUESTION_MAX}.")
    if not 2 <= len(options) <= 10:
        raise BadInput(f"Give 2 to 10 options separated by |, not {len(options)}.")
    if len({o.casefold() for o in options}) != len(options):
        raise BadInput("The options must all be different.")
    if any(len(o) > OPTION_MAX for o in options):
        raise BadInput(f"An option has at most {OPTION_MAX} characters.")
    return question, options, category


def option_index(prediction: Prediction, number: int) -> int:
    if not 1 <= number <= len(prediction.options):
        raise BadInput(
            f"Prediction #{prediction.id} has options 1 to {len(prediction.options)}, not {number}."
        )
    return number - 1


class Predictions(commands.Cog):
    """Prediction markets on points: bet on outcomes, winners share the pool."""

    def __init__(self, bot: Guildhouse, services: Services, *, tick: float = 15.0) -> None:
        self.bot = bot
        self.services = services
        self.settings = services.settings
        self.presenter = Presenter(bot, services)
        self.clock = Clock(
            bot.pool,
            on_closed=self.presenter.closed,
            on_settled=self.presenter.announce,
            tick=tick,
        )
        self.timing = Timing(self.presenter, services.settings, lambda: jobs.of(bot).notify())

    async def cog_load(self) -> None:
        if self.bot.rest_only:
            return
        await self.services.start()
        for kind in self.timing.kinds():
            await jobs.install(self.bot, kind)
        self.clock.start()

    async def cog_unload(self) -> None:
        if self.bot.rest_only:
            return
        for kind in self.timing.kinds():
            await jobs.uninstall(self.bot, kind.name)
        await self.clock.stop()
        self.presenter.close()
        await self.services.stop()

    # -- the buttons' work ---------------------------------------------------------------------

    async def place(self, press: components.Press, prediction_id: int, option: int) -> None:
        guild = press.guild
        if guild is None:
            raise BadInput("Bets are placed in a server.")
        settings = await self.settings.get(guild.id)
        placed = await store.bet(
            self.bot.pool,
            settings,
            prediction_id=prediction_id,
            user_id=press.user.id,
            option=option,
            amount=int(press.fields["amount"]),
            key=str(press.interaction.id),
        )
        await press.reply(buttons.confirmation(placed), ephemeral=True)
        await self.services.board.update(guild.id, placed.balances)
        try:
            await self.presenter.refresh_soon(guild.id, prediction_id)
        except Exception as exc:
            # The bet stands and was confirmed; the totals catch up with the next bet.
            if outages.note(exc, "the predictions' live totals") is None:
                raise

    async def vote_pressed(self, press: components.Press, prediction_id: int, option: int) -> None:
        if press.guild is None:
            raise BadInput("Votes are cast in a server.")
        await press.tell(await self._vote(press.guild.id, prediction_id, press.user.id, option))

    async def _vote(self, guild_id: int, prediction_id: int, user_id: int, option: int) -> str:
        settings = await self.settings.get(guild_id)
        result = await settle.vote(self.bot.pool, settings, prediction_id, user_id, option)
        counts = ", ".join(f"{i + 1}: {n}" for i, n in enumerate(result.counts))
        if result.decided is None:
            return (
                f"Vote counted ({counts}). A result needs {settings.vote_min} votes or more and "
                "more than half of them on one option."
            )
        await self._pay_and_announce(result.decided)
        return f"Vote counted ({counts}): the outcome is decided."

    async def _pay_and_announce(self, prediction: Prediction) -> None:
        await settle.pay(self.bot.pool, prediction.id)  # None: another worker paid it
        await self.presenter.announce(prediction.id)

    # -- commands ------------------------------------------------------------------------------

    async def _may_create(self, ctx: Ctx) -> None:
        assert ctx.guild is not None
        if await caller_level(ctx) >= Level.MODERATOR:
            return
        settings = await self.settings.get(ctx.guild.id)
        roles = ctx.author.roles if isinstance(ctx.author, discord.Member) else []
        if settings.creator_role is None or all(r.id != settings.creator_role for r in roles):
            raise BadInput("Creating predictions is for moderators (or the role admins chose).")

    async def _may_settle(self, ctx: Ctx, prediction: Prediction) -> None:
        if prediction.creator_id == ctx.author.id:
            return
        if await caller_level(ctx) < Level.MODERATOR:
            raise BadInput(
                f"Only its creator or a moderator may settle prediction #{prediction.id}."
            )

    @commands.hybrid_group(
        name="predict",
        fallback="list",
        extras={
            "examples": [
                "predict create 2h Who wins Saturday? | Red | Blue --category matches",
                "predict list open",
                "predict show 12",
                "predict resolve 12 2",
                "predict void 12",
                "predict vote 12 1",
                "predict history",
                "predict notify on",
            ]
        },
    )
    @commands.guild_only()
    @app_commands.describe(which="open, closed, mine, all, or a category's name")
    async def predict(self, ctx: Ctx, which: str = "open") -> None:
        """List this server's predictions (open ones unless you say otherwise), with pages."""
        assert ctx.guild is not None
        which = which.strip()[:CATEGORY_MAX] or "open"
        found = await store.listing(
            self.bot.pool, ctx.guild.id, which=which.lower(), user_id=ctx.author.id
        )
        lines = [render.line(p, pooled, n) for p, pooled, n in found]
        title = f"Predictions: {safe_text(which, 32)}"
        await send_pages(ctx, pages_from_lines(title, lines or ["None."], per_page=8))

    @predict.command(
        name="create",
        extras={"examples": ["predict create 2h Who wins? | Red | Blue --category matches"]},
    )
    @app_commands.describe(
        window="How long bets are taken: 30m, 2h, 1d12h (1 minute to 30 days)",
        spec="Question | option | option ... (2-10 options) and optionally --category name",
    )
    async def create(self, ctx: Ctx, window: str, *, spec: str) -> None:
        """Open a prediction with 2-10 options and a betting window (moderators, or the role
        admins chose with `predict role`)."""
        assert ctx.guild is not None
        await self._may_create(ctx)
        seconds = parse_window(window)
        question, options, category = parse_spec(spec)
        made: list[Prediction] = []

        guild_id = ctx.guild.id

        async def change(conn: asyncpg.Connection) -> tuple[Any, Any]:
            p = await store.create(
                conn,
                guild_id=guild_id,
                channel_id=ctx.channel.id,
                creator_id=ctx.author.id,
                question=question,
                options=options,
                category=category,
                window_seconds=seconds,
            )
            await schedule_close(conn, p)
            made.append(p)
            return None, {"id": p.id, "question": question, "options": options}

        await audit.audited(
            self.bot,
            guild_id=ctx.guild.id,
            actor_id=ctx.author.id,
            action="predict.create",
            change=change,
            channel_id=ctx.channel.id,
        )
        (prediction,) = made
        book = store.Book(prediction, [])
        message = await ctx.send(
            embed=render.embed(book), view=await buttons.bet_view(self.bot, prediction)
        )
        await store.set_message(self.bot.pool, prediction.id, message.id)
        await jobs.of(self.bot).notify()

    @predict.command(name="show", extras={"examples": ["predict show 12"]})
    @app_commands.describe(prediction="The prediction's number")
    async def show(self, ctx: Ctx, prediction: int) -> None:
        """Show one prediction: its totals, odds and bettors."""
        assert ctx.guild is not None
        book = await store.book(self.bot.pool, ctx.guild.id, prediction)
        await ctx.send(embed=render.embed(book))

    @predict.command(name="resolve", extras={"examples": ["predict resolve 12 2"]})
    @app_commands.describe(
        prediction="The prediction's number", option="The winning option's number"
    )
    async def resolve(self, ctx: Ctx, prediction: int, option: int) -> None:
        """Say which option won and pay the winners (its creator or a moderator)."""
        assert ctx.guild is not None
        current = await store.get(self.bot.pool, ctx.guild.id, prediction)
        await self._may_settle(ctx, current)
        chosen = await settle.choose(
            self.bot.pool, ctx.guild.id, prediction, option_index(current, option), ctx.author.id
        )
        await ctx.send(f"Prediction #{prediction} resolved: paying out.")
        await self._pay_and_announce(chosen)

    @predict.command(name="void", extras={"examples": ["predict void 12"]})
    @app_commands.describe(prediction="The prediction's number")
    async def void(self, ctx: Ctx, prediction: int) -> None:
        """Cancel a prediction and refund every bet (its creator or a moderator)."""
        assert ctx.guild is not None
        current = await store.get(self.bot.pool, ctx.guild.id, prediction)
        await self._may_settle(ctx, current)
        await settle.void(self.bot.pool, ctx.guild.id, prediction, ctx.author.id)
        await ctx.send(f"Prediction #{prediction} is cancelled: every bet refunded.")
        await self.presenter.announce(prediction)

    @predict.command(name="vote", extras={"examples": ["predict vote 12 1"]})
    @app_commands.describe(prediction="The prediction's number", option="The option you say won")
    async def vote(self, ctx: Ctx, prediction: int, option: int) -> None:
        """Vote on a closed prediction's outcome, if you bet on it (where the server lets
        bettors decide)."""
        assert ctx.guild is not None
        current = await store.get(self.bot.pool, ctx.guild.id, prediction)
        text = await self._vote(
            ctx.guild.id, prediction, ctx.author.id, option_index(current, option)
        )
        await ctx.send(text, ephemeral=True)

    @predict.command(name="history", extras={"examples": ["predict history"]})
    async def history(self, ctx: Ctx) -> None:
        """Your bets in this server, newest first, with pages."""
        assert ctx.guild is not None
        rows = await store.member_history(self.bot.pool, ctx.guild.id, ctx.author.id)
        lines = []
        for p, stake, paid in rows:
            result = "pending" if paid is None else f"got {paid:,}"
            lines.append(
                f"`#{p.id}` {safe_text(p.question, 60)} · {stake.amount:,} on "
                f"**{safe_text(p.options[stake.option], 40)}** · {result}"
            )
        title = f"Bets of {ctx.author.display_name}"
        await send_pages(ctx, pages_from_lines(title, lines or ["No bets yet."], per_page=10))

    @predict.command(
        name="notify", extras={"examples": ["predict notify on", "predict notify off"]}
    )
    @app_commands.describe(setting="on: a DM when a prediction you bet on is settled; off: none")
    async def notify(self, ctx: Ctx, setting: Literal["on", "off"]) -> None:
        """Get a DM when a prediction you bet on is settled, or stop."""
        await store.notify_set(self.bot.pool, ctx.author.id, setting == "on")
        await ctx.send(
            "You'll get a DM when a prediction you bet on is settled."
            if setting == "on"
            else "No more DMs about predictions.",
            ephemeral=True,
        )

    @predict.command(name="role", extras={"examples": ["predict role @Hosts", "predict role"]})
    @app_commands.describe(role="The role that may create predictions besides moderators")
    @requires(Level.ADMIN)
    async def role(self, ctx: Ctx, role: discord.Role | None = None) -> None:
        """Let a role create predictions besides moderators, or (without one) only moderators
        (admins; audited)."""
        assert ctx.guild is not None
        from bot.points import settings as points_settings

        old = await self.settings.get(ctx.guild.id)
        new = old.with_changes(creator_role=role.id if role else None)
        await audit.audited_settings(
            self.bot, ctx, "predict.role", old=old, new=new, save=points_settings.save
        )
        await self.settings.announce(ctx.guild.id)
        who = f"Moderators and {role.mention}" if role else "Only moderators"
        await ctx.send(f"{who} may create predictions now.")
