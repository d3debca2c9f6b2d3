"""The Feedback cog: members give feedback, staff reply or set its status, and the member
hears back where they gave it (or by DM if they asked)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import components
from bot.checks import Level, caller_level, requires
from bot.cogs.feedback import store
from bot.cogs.feedback.tickets import (
    MAX_TEXT,
    OWNERS,
    STATUSES,
    FeedbackError,
    Ticket,
    check_status,
    check_text,
    told,
)
from bot.command_throttles import throttle
from bot.context import CommandContext
from bot.ui import pages_from_lines, safe_text, send_pages

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)
Ctx = CommandContext


def ticket_embed(ticket: Ticket, author: discord.abc.User, where: str) -> discord.Embed:
    e = discord.Embed(
        title=f"Feedback #{ticket.id}", description=safe_text(ticket.text, 2000), colour=0x57F287
    )
    e.add_field(name="From", value=f"{author.mention} ({safe_text(author.name, 40)})")
    e.add_field(name="Server", value=safe_text(where, 100))
    e.set_footer(
        text=f"Reply: feedback reply {ticket.id} <text> · feedback status {ticket.id} planned"
    )
    return e


async def submit(
    bot: Guildhouse, guild: discord.Guild, channel_id: int, author: discord.abc.User, text: str
) -> str:
    """Make the ticket, post it where it goes; the thanks to give its author."""
    ticket = await store.create(bot.pool, guild.id, channel_id, author.id, check_text(text))
    posted = 0
    embed = ticket_embed(ticket, author, guild.name)
    for target in await store.channels(bot.pool, guild.id):
        try:
            await bot.get_partial_messageable(target).send(embed=embed)
            posted += 1
        except discord.HTTPException as exc:
            log.info("could not post feedback #%s to %s: %s", ticket.id, target, exc)
    how = "by DM" if ticket.by_dm else "here"
    seen = "" if posted else " The staff will find it in `feedback list`."
    return (
        f"Thanks! Your feedback is #{ticket.id}. You'll hear back {how} when the staff"
        f" reply or set its status.{seen}"
    )


class FeedbackForm(components.Form, name="fbform"):
    """`/feedback send` without text: the feedback in a form."""

    title = "Feedback for the staff"
    text = components.Text(
        "Your feedback",
        placeholder="What would you like the staff (and the bot's owners) to know?",
        max_length=MAX_TEXT,
        paragraph=True,
    )

    async def submitted(self, press: components.Press) -> None:
        if press.guild is None:
            await press.reply("Feedback is given in a server.", ephemeral=True)
            return
        thanks = await submit(
            press.bot,
            press.guild,
            press.interaction.channel_id or 0,
            press.user,
            press.fields["text"],
        )
        await press.reply(thanks)


class Feedback(commands.Cog, name="Feedback"):
    """Tell the staff (and the bot's owners) what to improve, and hear back."""

    def __init__(self, bot: Guildhouse) -> None:
        self.bot = bot

    @commands.hybrid_group(
        name="feedback",
        fallback="send",
        extras={
            "examples": [
                "feedback a command to roll initiative for the whole table",
                "feedback reply 12 Thanks, it's on the list!",
                "feedback status 12 planned",
                "feedback list open",
                "feedback dm on",
                "feedback channel #feedback",
            ]
        },
    )
    @commands.guild_only()
    @throttle(command="3/10m")
    @app_commands.describe(text="What you'd like to tell the staff (up to 2000 characters)")
    async def feedback(self, ctx: Ctx, *, text: str | None = None) -> None:
        """Send feedback to this server's staff and the bot's owners; you get a ticket number,
        and you're told here (or by DM: `feedback dm on`) when they reply or set its status.
        `/feedback send` without text opens a form. Three a member every ten minutes."""
        assert ctx.guild is not None
        if text is None or not text.strip():
            if ctx.interaction is not None:
                await components.open_form(self.bot, ctx.interaction, FeedbackForm)
                return
            check_text("")  # says what to write
        assert text is not None
        await ctx.send(await submit(self.bot, ctx.guild, ctx.channel.id, ctx.author, text))

    @feedback.command(name="reply", extras={"examples": ["feedback reply 12 Thanks, planned!"]})
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(ticket="The feedback's number", text="Your answer to its author")
    async def reply(self, ctx: Ctx, ticket: int, *, text: str) -> None:
        """Answer a member's feedback; they're told where they gave it (or by DM)."""
        await self._note(ctx, ticket, "reply", check_text(text))

    @feedback.command(name="status", extras={"examples": ["feedback status 12 done"]})
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(ticket="The feedback's number", status="planned, done or declined")
    @app_commands.choices(status=[app_commands.Choice(name=s, value=s) for s in STATUSES])
    async def status(self, ctx: Ctx, ticket: int, status: str) -> None:
        """Set a feedback's status (planned, done or declined); its author is told."""
        await self._note(ctx, ticket, "status", check_status(status))

    async def _note(self, ctx: Ctx, ticket_id: int, kind: str, text: str) -> None:
        assert ctx.guild is not None
        found = await store.get(self.bot.pool, ticket_id)
        owner = await caller_level(ctx) >= Level.OWNER
        if found is None or (found.guild_id != ctx.guild.id and not owner):
            raise FeedbackError(f"There is no feedback #{ticket_id} in this server.")
        ticket = await store.note(self.bot.pool, ticket_id, ctx.author.id, kind, text)
        assert ticket is not None
        where = await self._tell(ticket, told(ticket, kind, text, f"staff of {ctx.guild.name}"))
        done = "Replied to" if kind == "reply" else f"Set to **{text}**:"
        await ctx.send(f"{done} feedback #{ticket.id}; its author was told {where}.")

    async def _tell(self, ticket: Ticket, text: str) -> str:
        """Tell the ticket's author; where they were told."""
        if ticket.by_dm:
            try:
                dm = await self.bot.create_dm(discord.Object(ticket.author_id))
                await dm.send(text)
                return "by DM"
            except discord.HTTPException as exc:  # DMs closed: the channel it came from
                log.info("could not DM feedback #%s's author: %s", ticket.id, exc)
        channel = self.bot.get_partial_messageable(ticket.channel_id, guild_id=ticket.guild_id)
        try:
            await channel.send(
                f"<@{ticket.author_id}> {text}",
                allowed_mentions=discord.AllowedMentions(users=[discord.Object(ticket.author_id)]),
            )
        except discord.HTTPException as exc:
            raise FeedbackError(
                f"Saved, but I couldn't tell the author in <#{ticket.channel_id}>: {exc.text}"
            ) from exc
        return f"in <#{ticket.channel_id}>"

    @feedback.command(name="list", extras={"examples": ["feedback list", "feedback list planned"]})
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(status="open, planned, done or declined (default: all)")
    async def list_(self, ctx: Ctx, status: str | None = None) -> None:
        """This server's feedback, newest first (the bot's owners: `feedback list all`)."""
        assert ctx.guild is not None
        everywhere = status is not None and status.strip().lower() == "all"
        if everywhere and await caller_level(ctx) < Level.OWNER:
            raise FeedbackError("Only the bot's owners may list every server's feedback.")
        wanted = None if status is None or everywhere else check_status(status, listing=True)
        tickets = await store.listed(self.bot.pool, None if everywhere else ctx.guild.id, wanted)
        lines = [
            f"**#{t.id}** [{t.status}] <@{t.author_id}> {t.created_at:%Y-%m-%d}: "
            f"{safe_text(t.text, 120)}"
            for t in tickets
        ] or ["No feedback" + (f" that is {wanted}" if wanted else "") + " yet."]
        await send_pages(ctx, pages_from_lines("Feedback", lines, per_page=10))

    @feedback.command(name="dm", extras={"examples": ["feedback dm on", "feedback dm off"]})
    @app_commands.describe(choice="on: hear back by DM; off: in the channel")
    async def dm(self, ctx: Ctx, choice: str) -> None:
        """Hear about your feedback by direct message (on) or where you gave it (off)."""
        on = choice.strip().lower()
        if on not in ("on", "off"):
            raise FeedbackError("Say `feedback dm on` or `feedback dm off`.")
        await store.set_dm(self.bot.pool, ctx.author.id, on == "on")
        where = "by direct message" if on == "on" else "in the channel where you gave it"
        await ctx.send(f"You'll hear about your feedback {where}.")

    @feedback.command(name="channel", extras={"examples": ["feedback channel #feedback"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(channel="Where new feedback is posted (leave out: nowhere)")
    async def channel(self, ctx: Ctx, channel: discord.TextChannel | None = None) -> None:
        """Post new feedback in a channel of this server (admins); without one, stop."""
        assert ctx.guild is not None
        await store.set_channel(
            self.bot.pool, ctx.guild.id, channel.id if channel else None, ctx.author.id
        )
        await ctx.send(
            f"New feedback goes to {channel.mention}." if channel else "Feedback isn't posted here."
        )

    @feedback.command(name="owners", extras={"examples": ["feedback owners #bot-feedback"]})
    @commands.guild_only()
    @requires(Level.OWNER)
    @app_commands.describe(channel="Where every server's feedback is posted for the owners")
    async def owners(self, ctx: Ctx, channel: discord.TextChannel | None = None) -> None:
        """Post every server's feedback in this channel too (the bot's owners)."""
        await store.set_channel(
            self.bot.pool, OWNERS, channel.id if channel else None, ctx.author.id
        )
        await ctx.send(
            f"Every server's feedback goes to {channel.mention} too."
            if channel
            else "Feedback isn't posted for the owners any more."
        )
