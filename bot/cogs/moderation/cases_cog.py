"""Cases and notes (moderators), and moderation's server settings (admins).

The settings are subcommands of the admin cog's `settings` group (`settings warnthreshold`,
`settings warnexpiry`, `settings moddm`), added to it when this cog loads and removed when it
unloads; they are plain functions of the context, so no cog imports another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import audit
from bot.checks import Level, requires
from bot.cogs.moderation import rules, store
from bot.cogs.moderation.actions import Moderator, case_embed, case_line
from bot.cogs.moderation.rules import format_duration
from bot.cogs.moderation.store import ModSettings
from bot.errors import BadInput
from bot.ui import pages_from_lines, safe_text, send_pages

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

Ctx = commands.Context["Guildhouse"]
MAX_NOTE = 1000


class Cases(commands.Cog, name="Moderation cases"):
    """Look up and annotate moderation cases; private notes on members."""

    def __init__(self, bot: Guildhouse, mod: Moderator) -> None:
        self.bot = bot
        self.mod = mod
        self._added: list[str] = []

    async def cog_load(self) -> None:
        group = self.bot.get_command("settings")
        if not isinstance(group, commands.HybridGroup):
            return  # the admin cog isn't loaded: moderation works with its defaults
        settings_commands: tuple[commands.HybridCommand[Any, ..., Any], ...] = (
            warnthreshold,
            warnexpiry,
            moddm,
        )
        for command in settings_commands:
            if group.get_command(command.name) is None:
                group.add_command(command)
                self._added.append(command.name)

    async def cog_unload(self) -> None:
        group = self.bot.get_command("settings")
        if isinstance(group, commands.HybridGroup):
            for name in self._added:
                group.remove_command(name)
        self._added.clear()

    @commands.hybrid_command(
        name="case", extras={"examples": ["case 12", "case 12 reason was spamming invites"]}
    )
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(
        number="The case number", reason="A new reason for it (leave out to show the case)"
    )
    async def case(self, ctx: Ctx, number: int, *, reason: str | None = None) -> None:
        """Show one case of this server, or change its reason (`case 12 reason <text>`)."""
        assert ctx.guild is not None
        if reason is None:
            found = await store.get_case(self.bot.pool, ctx.guild.id, number)
            if found is None:
                raise BadInput(f"There is no case {number} in this server.")
            await ctx.send(embed=case_embed(found))
            return
        words = reason.split(maxsplit=1)
        if ctx.interaction is None and words and words[0].lower() == "reason":
            reason = words[1] if len(words) > 1 else ""
        text = rules.check_reason(reason)
        if text is None:
            raise BadInput("The new reason is empty: `case 12 reason <text>`.")
        case = await store.edit_reason(
            self.bot.pool,
            ctx.guild.id,
            number,
            text,
            actor_id=ctx.author.id,
            channel_id=ctx.channel.id,
        )
        if case is None:
            raise BadInput(f"There is no case {number} in this server.")
        await self.mod.post(case)
        await ctx.send(f"Case {number}'s reason is now: {safe_text(text, 400)}")

    @commands.hybrid_command(extras={"examples": ["cases @Ann", "cases"]})
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(user="Whose cases (leave out for the server's latest)")
    async def cases(self, ctx: Ctx, user: discord.User | None = None) -> None:
        """List a member's cases, newest first (or the server's latest)."""
        assert ctx.guild is not None
        found = await store.cases_for(self.bot.pool, ctx.guild.id, user.id if user else None)
        title = f"Cases of {user.display_name}" if user else "Latest cases"
        lines = [case_line(c) for c in found] or ["No cases."]
        await send_pages(ctx, pages_from_lines(title, lines, per_page=10))

    @commands.hybrid_command(
        extras={"examples": ["notes @Ann", "notes @Ann said they'd stop after the raid"]}
    )
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(user="Whose notes", text="A note to add (leave out to read them)")
    async def notes(self, ctx: Ctx, user: discord.User, *, text: str | None = None) -> None:
        """Read the private moderator notes on a member, or add one."""
        assert ctx.guild is not None
        if text is not None:
            text = " ".join(text.split())
            if not text:
                raise BadInput("The note is empty.")
            if len(text) > MAX_NOTE:
                raise BadInput(f"A note can be at most {MAX_NOTE} characters.")
            await store.add_note(
                self.bot.pool,
                guild_id=ctx.guild.id,
                target_id=user.id,
                author_id=ctx.author.id,
                body=text,
                channel_id=ctx.channel.id,
            )
            await ctx.send(f"Note added on {user.mention}.", ephemeral=True)
            return
        found = await store.notes_for(self.bot.pool, ctx.guild.id, user.id)
        lines = [
            f"<t:{int(n.created_at.timestamp())}:d> <@{n.author_id}>: {safe_text(n.body, 300)}"
            for n in found
        ] or ["No notes."]
        await send_pages(ctx, pages_from_lines(f"Notes on {user.display_name}", lines, per_page=10))


# -- settings subcommands (added to the admin cog's `settings` group) ----------------------------


async def _change(ctx: Ctx, action: str, new: ModSettings, old: ModSettings) -> None:
    await audit.audited_settings(ctx.bot, ctx, action, old=old, new=new, save=store.save_settings)


@commands.hybrid_command(
    name="warnthreshold",
    extras={
        "examples": [
            "settings warnthreshold 3 timeout 1h",
            "settings warnthreshold 5 kick",
            "settings warnthreshold 7 ban",
            "settings warnthreshold 3 off",
        ]
    },
)
@commands.guild_only()
@requires(Level.ADMIN)
@app_commands.describe(
    count="Active warnings that trigger it (1-100)",
    action="timeout, kick, ban, or off to remove this count's threshold",
    duration="For timeout (required, ≤ 28d) or ban (a tempban): 1h, 3d",
)
async def warnthreshold(
    ctx: Ctx,
    count: int,
    action: Literal["timeout", "kick", "ban", "off"],
    duration: str | None = None,
) -> None:
    """Apply an action when a member reaches a number of active warnings."""
    assert ctx.guild is not None
    old = await store.get_settings(ctx.bot.pool, ctx.guild.id)
    new_one = None if action == "off" else rules.parse_threshold(count, action, duration)
    thresholds = rules.with_threshold(old.thresholds, new_one, count)
    if action == "off" and len(thresholds) == len(old.thresholds):
        raise BadInput(f"There is no threshold at {count} warnings.")
    new = ModSettings(old.guild_id, old.dm_members, old.warn_expiry, tuple(thresholds))
    await _change(ctx, "settings.warnthreshold", new, old)
    listed = "; ".join(t.describe() for t in thresholds) or "none"
    await ctx.send(f"Warning thresholds: {listed}.")


@commands.hybrid_command(
    name="warnexpiry", extras={"examples": ["settings warnexpiry 30d", "settings warnexpiry off"]}
)
@commands.guild_only()
@requires(Level.ADMIN)
@app_commands.describe(after="How long a warning counts: 30d, 12w; or off (forever)")
async def warnexpiry(ctx: Ctx, after: str) -> None:
    """Choose how long warnings count towards thresholds."""
    assert ctx.guild is not None
    old = await store.get_settings(ctx.bot.pool, ctx.guild.id)
    expiry = None
    if after.strip().lower() not in ("off", "never", "none"):
        expiry = rules.bounded(
            rules.parse_duration(after, what="expiry"), rules.MAX_WARN_EXPIRY, what="expiry"
        )
    new = ModSettings(old.guild_id, old.dm_members, expiry, old.thresholds)
    await _change(ctx, "settings.warnexpiry", new, old)
    await ctx.send(
        f"Warnings now count for {format_duration(expiry)}."
        if expiry
        else "Warnings now count forever."
    )


@commands.hybrid_command(name="moddm", extras={"examples": ["settings moddm on"]})
@commands.guild_only()
@requires(Level.ADMIN)
@app_commands.describe(value="on: DM members the reason before a kick or ban; off")
async def moddm(ctx: Ctx, value: Literal["on", "off"]) -> None:
    """Choose whether members are DM'd the reason before a kick or ban."""
    assert ctx.guild is not None
    old = await store.get_settings(ctx.bot.pool, ctx.guild.id)
    new = ModSettings(old.guild_id, value == "on", old.warn_expiry, old.thresholds)
    await _change(ctx, "settings.moddm", new, old)
    await ctx.send(
        "Members are now told the reason by DM before a kick or ban."
        if value == "on"
        else "Members are no longer DM'd before a kick or ban."
    )
