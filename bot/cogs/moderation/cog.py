"""Acting on members (moderators): warn, kick, ban (tempban), softban, unban, timeout,
untimeout. Each is a numbered case; a warning that reaches a threshold applies it as its own
case. Thin: rules in `rules`, SQL in `store`, the Discord side in `actions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import Level, requires
from bot.cogs.moderation import punish, rules
from bot.cogs.moderation.actions import (
    Moderator,
    audit_reason,
    check_hierarchy,
    details,
    discord_call,
    new_case,
)
from bot.cogs.moderation.rules import format_duration
from bot.errors import BadInput

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

Ctx = commands.Context["Guildhouse"]


class BanFlags(commands.FlagConverter, prefix="--", delimiter=" ", case_insensitive=True):
    reason: str | None = commands.flag(
        default=None, positional=True, description="Why (shown in the case, and DM'd)"
    )
    days: commands.Range[int, 0, 7] = commands.flag(
        default=0, description="Days of their messages to delete, 0-7"
    )
    duration: str | None = commands.flag(
        default=None, description="Make it a tempban: 3d, 12h, 2w (at most 365 days)"
    )


class SoftbanFlags(commands.FlagConverter, prefix="--", delimiter=" ", case_insensitive=True):
    reason: str | None = commands.flag(default=None, positional=True, description="Why")
    days: commands.Range[int, 1, 7] = commands.flag(
        default=1, description="Days of their messages to delete, 1-7"
    )


def _guild_member(ctx: Ctx) -> tuple[discord.Guild, discord.Member]:
    assert ctx.guild is not None and isinstance(ctx.author, discord.Member)
    return ctx.guild, ctx.author


def _told(sent: bool) -> str:
    return " They were told by DM." if sent else ""


class MemberActions(commands.Cog, name="Moderation"):
    """Warn, kick, ban and time out members; every action is a numbered case."""

    def __init__(self, bot: Guildhouse, mod: Moderator) -> None:
        self.bot = bot
        self.mod = mod

    # -- warn and thresholds -------------------------------------------------------------------

    @commands.hybrid_command(extras={"examples": ["warn @Ann spamming in #general"]})
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(member="Who to warn", reason="Why (they see it in the case)")
    async def warn(self, ctx: Ctx, member: discord.Member, *, reason: str | None = None) -> None:
        """Warn a member: a case; enough active warnings apply the server's threshold."""
        _guild, author = _guild_member(ctx)
        reason = rules.check_reason(reason)
        check_hierarchy("warn", author, member)
        new = new_case(ctx, "warn", member.id, reason)
        case, active, threshold = await punish.warn(self.mod, member, new)
        text = f"Case {case.number}: warned {member.mention} ({active} active warning(s))."
        await ctx.send(f"{text} {threshold}".strip())

    # -- kick, ban, softban, unban -------------------------------------------------------------

    @commands.hybrid_command(extras={"examples": ["kick @Ann ignoring warnings"]})
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(member="Who to kick", reason="Why (DM'd to them if the server wants)")
    async def kick(self, ctx: Ctx, member: discord.Member, *, reason: str | None = None) -> None:
        """Kick a member (they can rejoin with an invite)."""
        guild, author = _guild_member(ctx)
        reason = rules.check_reason(reason)
        check_hierarchy("kick", author, member)
        told = await self.mod.tell(guild, member, "kicked from", reason)
        await discord_call("kick them", member.kick(reason=audit_reason(author, reason)))
        case = await self.mod.record(new_case(ctx, "kick", member.id, reason))
        await ctx.send(f"Case {case.number}: kicked {member.mention}.{_told(told)}")

    @commands.hybrid_command(
        extras={
            "examples": [
                "ban @Ann raiding",
                "ban @Ann raiding --days 1",
                "ban @Ann cool off --duration 3d",
            ]
        },
        usage="<user> [reason] [--days 0-7] [--duration 3d]",
    )
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(user="Who to ban (a member, or anyone by id)")
    async def ban(self, ctx: Ctx, user: discord.Member | discord.User, *, flags: BanFlags) -> None:
        """Ban someone; `--duration 3d` makes it a tempban that ends by itself, `--days 0-7`
        deletes their recent messages."""
        guild, author = _guild_member(ctx)
        reason = rules.check_reason(flags.reason)
        duration = None
        if flags.duration:
            duration = rules.bounded(
                rules.parse_duration(flags.duration), rules.MAX_TEMPBAN, what="tempban"
            )
        check_hierarchy("ban", author, user)
        told = False
        if isinstance(user, discord.Member):
            how_long = f"banned for {format_duration(duration)} from" if duration else ""
            told = await self.mod.tell(guild, user, how_long or "banned from", reason)
        new = new_case(ctx, "ban", user.id, reason, details=details(deleted_days=flags.days))
        header = audit_reason(author, reason)
        case = await punish.ban(
            self.mod, guild, new, duration=duration, days=flags.days, header=header
        )
        how = f"banned {user.mention}"
        if duration is not None and case.expires_at is not None:
            ends = int(case.expires_at.timestamp())
            how += f" for {format_duration(duration)} (ends <t:{ends}:R>)"
        await ctx.send(f"Case {case.number}: {how}.{_told(told)}")

    @commands.hybrid_command(
        extras={"examples": ["softban @Ann spam bot", "softban @Ann --days 7"]},
        usage="<member> [reason] [--days 1-7]",
    )
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(member="Whose messages to clear (they are removed, not banned)")
    async def softban(self, ctx: Ctx, member: discord.Member, *, flags: SoftbanFlags) -> None:
        """Ban and at once unban a member, to delete their recent messages (1-7 days)."""
        guild, author = _guild_member(ctx)
        reason = rules.check_reason(flags.reason)
        check_hierarchy("softban", author, member)
        told = await self.mod.tell(guild, member, "removed from", reason)
        header = audit_reason(author, reason)
        self.mod.expect(guild.id, member.id, "ban")
        self.mod.expect(guild.id, member.id, "unban")
        await discord_call(
            "ban them",
            guild.ban(member, reason=header, delete_message_seconds=flags.days * 86400),
        )
        await discord_call("unban them", guild.unban(member, reason=header))
        case = await self.mod.record(
            new_case(ctx, "softban", member.id, reason, details={"deleted_days": flags.days})
        )
        await ctx.send(
            f"Case {case.number}: softbanned {member.mention} ({flags.days} day(s) of messages "
            f"deleted; they can rejoin).{_told(told)}"
        )

    @commands.hybrid_command(extras={"examples": ["unban 123456789012345678 appeal accepted"]})
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(user="Who to unban (their id)", reason="Why")
    async def unban(self, ctx: Ctx, user: discord.User, *, reason: str | None = None) -> None:
        """Lift a ban (a tempban's scheduled end is then dropped)."""
        guild, author = _guild_member(ctx)
        reason = rules.check_reason(reason)
        self.mod.expect(guild.id, user.id, "unban")
        await discord_call("unban them", guild.unban(user, reason=audit_reason(author, reason)))
        case = await self.mod.record(new_case(ctx, "unban", user.id, reason))
        await ctx.send(f"Case {case.number}: unbanned {user.mention}.")

    # -- timeouts ------------------------------------------------------------------------------

    @commands.hybrid_command(extras={"examples": ["timeout @Ann 1h cool down", "timeout @Ann 7d"]})
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(
        member="Who to time out", duration="How long: 10m, 1h, 3d (at most 28 days)", reason="Why"
    )
    async def timeout(
        self, ctx: Ctx, member: discord.Member, duration: str, *, reason: str | None = None
    ) -> None:
        """Time a member out: they can read but not write, talk or react (Discord's own)."""
        _guild, author = _guild_member(ctx)
        reason = rules.check_reason(reason)
        span = rules.bounded(rules.parse_duration(duration), rules.MAX_TIMEOUT, what="timeout")
        check_hierarchy("timeout", author, member)
        until = discord.utils.utcnow() + span
        await discord_call(
            "time them out", member.timeout(until, reason=audit_reason(author, reason))
        )
        case = await self.mod.record(
            new_case(ctx, "timeout", member.id, reason, duration=span, expires_at=until)
        )
        await ctx.send(
            f"Case {case.number}: timed out {member.mention} for {format_duration(span)} "
            f"(until <t:{int(until.timestamp())}:f>)."
        )

    @commands.hybrid_command(extras={"examples": ["untimeout @Ann"]})
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(member="Whose timeout to end", reason="Why")
    async def untimeout(
        self, ctx: Ctx, member: discord.Member, *, reason: str | None = None
    ) -> None:
        """End a member's timeout now."""
        _guild, author = _guild_member(ctx)
        reason = rules.check_reason(reason)
        if not member.is_timed_out():
            raise BadInput(f"{member.mention} is not timed out.")
        check_hierarchy("untimeout", author, member)
        await discord_call(
            "end their timeout", member.timeout(None, reason=audit_reason(author, reason))
        )
        case = await self.mod.record(new_case(ctx, "untimeout", member.id, reason))
        await ctx.send(f"Case {case.number}: {member.mention}'s timeout is over.")
