"""What every moderation command does around its Discord call: check the hierarchy, tell the
member, make the call with Discord's refusals turned into sentences, write the case (with its
audit row) and post it to the mod-log channel. Shared by the package's cogs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import discord

from bot.cogs.moderation import store
from bot.cogs.moderation.rules import Rank, format_duration, refusal
from bot.cogs.moderation.store import Case, NewCase
from bot.errors import UserError
from bot.ui import fit_embed, safe_text, truncate

if TYPE_CHECKING:
    from discord.ext import commands

    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)
T = TypeVar("T")

# Discord's JSON error codes we answer in words.
MISSING_PERMISSIONS = 50013
CANNOT_DM = 50007
UNKNOWN_MEMBER = 10007
UNKNOWN_USER = 10013
UNKNOWN_BAN = 10026
TOO_OLD = 50034

COLOURS = {
    "warn": 0xF1C40F,
    "kick": 0xE67E22,
    "ban": 0xC0392B,
    "tempban": 0xC0392B,
    "softban": 0xD35400,
    "unban": 0x2ECC71,
    "timeout": 0x9B59B6,
    "untimeout": 0x2ECC71,
}
TITLES = {
    "untimeout": "Timeout removed",
    "tempban": "Temporary ban",
    "role_add": "Role given",
    "role_remove": "Role taken",
    "nick": "Nickname",
}
# Actions on a channel: their case's target is the channel.
CHANNEL_ACTIONS = frozenset({"purge", "slowmode", "lock", "unlock"})
# How long an action of ours waits for its gateway echo (GUILD_BAN_ADD/REMOVE).
EXPECT_FOR = 120.0


class Refused(UserError):
    """Discord, or a hierarchy rule, refused the action; the message says which."""


def rank(member: discord.Member) -> Rank:
    guild = member.guild
    return Rank(member.id, member.top_role.position, guild.owner_id == member.id)


def check_hierarchy(
    action: str, actor: discord.Member, target: discord.Member | discord.User
) -> None:
    """Refuse with the rule that forbids it, before any Discord call."""
    guild = actor.guild
    me = guild.me
    if isinstance(target, discord.Member):
        target_rank = rank(target)
    else:  # not (or no longer) a member: only the self/bot/owner rules apply
        target_rank = Rank(target.id, -1, guild.owner_id == target.id)
    why = refusal(action, rank(actor), rank(me), target_rank)
    if why is not None:
        raise Refused(why)


async def discord_call(what: str, call: Awaitable[T]) -> T:
    """Run a Discord call; its refusals become one clear line for the moderator."""
    try:
        return await call
    except discord.Forbidden as exc:
        if exc.code == MISSING_PERMISSIONS:
            raise Refused(
                f"Discord refused to {what}: I'm missing a permission for it, or the target "
                "ranks at or above my highest role (Discord error 50013)."
            ) from None
        raise Refused(f"Discord refused to {what} (error {exc.code}).") from None
    except discord.NotFound as exc:
        if exc.code == UNKNOWN_MEMBER:
            raise Refused(f"Can't {what}: they are not a member of this server.") from None
        if exc.code == UNKNOWN_BAN:
            raise Refused(f"Can't {what}: they are not banned here.") from None
        if exc.code == UNKNOWN_USER:
            raise Refused(f"Can't {what}: there is no such user.") from None
        raise Refused(f"Can't {what}: Discord doesn't know it (error {exc.code}).") from None
    except discord.HTTPException as exc:
        if exc.status < 500 and exc.status != 429:
            raise Refused(f"Discord refused to {what}: {safe_text(exc.text, 200)}") from None
        raise


def case_title(case: Case) -> str:
    name = TITLES.get(case.action, case.action.title())
    return f"Case {case.number} · {name}"


def case_embed(case: Case) -> discord.Embed:
    embed = discord.Embed(
        title=case_title(case),
        colour=COLOURS.get(case.action, 0x5865F2),
        timestamp=case.created_at,
    )
    if case.action in CHANNEL_ACTIONS:
        embed.add_field(name="Channel", value=f"<#{case.target_id}>")
    else:
        embed.add_field(name="Member", value=f"<@{case.target_id}> (`{case.target_id}`)")
    moderator = f"<@{case.moderator_id}>" if case.moderator_id else "unknown (made in Discord)"
    embed.add_field(name="Moderator", value=moderator)
    if case.duration is not None:
        ends = ""
        if case.expires_at is not None:
            ends = f", ends <t:{int(case.expires_at.timestamp())}:f>"
        embed.add_field(name="Duration", value=format_duration(case.duration) + ends)
    if case.cites:
        embed.add_field(
            name="Applies warnings", value=", ".join(f"case {n}" for n in case.cites), inline=False
        )
    shown_keys = (("role", "Role"), ("nick", "Nickname"), ("deleted", "Deleted"))
    for key, label in (*shown_keys, ("too_old", "Skipped (over 14 days old)")):
        if key in case.details:
            value = case.details[key]
            shown = f"<@&{value}>" if key == "role" else str(value)
            embed.add_field(name=label, value=truncate(shown, 200))
    if "seconds" in case.details:
        seconds = int(case.details["seconds"])
        embed.add_field(
            name="Slowmode", value=format_duration(timedelta(seconds=seconds)) if seconds else "off"
        )
    if case.details.get("deleted_days"):
        embed.add_field(name="Messages deleted", value=f"{case.details['deleted_days']} day(s)")
    embed.add_field(name="Reason", value=truncate(case.reason or "none given", 1000), inline=False)
    if case.updated_at is not None:
        embed.set_footer(text="Reason edited")
    return fit_embed(embed)


def case_line(case: Case) -> str:
    when = f"<t:{int(case.created_at.timestamp())}:d>"
    extra = f" {format_duration(case.duration)}" if case.duration else ""
    who = f"<@{case.moderator_id}>" if case.moderator_id else "unknown"
    target = f"<#{case.target_id}>" if case.action in CHANNEL_ACTIONS else f"<@{case.target_id}>"
    reason = safe_text(case.reason, 80) if case.reason else "no reason"
    return f"**{case.number}** {when} {case.action}{extra} {target} by {who}: {reason}"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Moderator:
    """The package's shared service, one per bot (kept on the cog that loads first)."""

    def __init__(self, bot: Guildhouse, clock: Callable[[], datetime] = utcnow) -> None:
        self.bot = bot
        self.clock = clock
        # Bans and unbans this worker is making, whose GUILD_BAN_ADD/REMOVE must not become
        # a second case (the guild's events come to this worker: its shard is ours).
        self._expected: dict[tuple[int, int, str], float] = {}

    # -- our own actions' gateway echoes -------------------------------------------------------

    def expect(self, guild_id: int, user_id: int, event: str) -> None:
        now = time.monotonic()
        self._expected = {k: t for k, t in self._expected.items() if now - t < EXPECT_FOR}
        self._expected[(guild_id, user_id, event)] = now

    def expected(self, guild_id: int, user_id: int, event: str) -> bool:
        t = self._expected.pop((guild_id, user_id, event), None)
        return t is not None and time.monotonic() - t < EXPECT_FOR

    # -- telling the member --------------------------------------------------------------------

    async def tell(
        self,
        guild: discord.Guild,
        user: discord.Member | discord.User,
        action: str,
        reason: str | None,
    ) -> bool:
        """DM the member what happened (`action`: "kicked from", "banned from") and why, if the
        server wants that; False when not sent (turned off, DMs closed: 50007 is no error)."""
        settings = await store.get_settings(self.bot.pool, guild.id)
        if not settings.dm_members or user.bot:
            return False
        text = f"You have been {action} **{safe_text(guild.name, 100)}**." + (
            f"\nReason: {safe_text(reason, 400)}" if reason else ""
        )
        try:
            await user.send(text, allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as exc:
            if getattr(exc, "code", 0) != CANNOT_DM:
                log.info("could not DM %s before %s: %s", user.id, action, exc)
            return False
        return True

    # -- cases ---------------------------------------------------------------------------------

    async def record(self, new: NewCase, extra: store.Extra | None = None) -> Case:
        """The case and its audit row in one transaction, then the mod-log post."""
        case = await store.record(self.bot.pool, new, extra)
        await self.post(case)
        return case

    async def post(self, case: Case) -> None:
        # Also run by jobs (a tempban's end) and automod, which have no command context.
        settings = await self.bot.guild_settings.get(case.guild_id)
        if settings.log_channel is None:
            return
        channel = self.bot.get_channel(settings.log_channel)
        if not isinstance(channel, discord.abc.Messageable):
            return  # deleted, or not visible to us: the case is in the database
        try:
            await channel.send(
                embed=case_embed(case), allowed_mentions=discord.AllowedMentions.none()
            )
        except discord.HTTPException as exc:
            log.warning("could not post case %s to the mod-log channel: %s", case.number, exc)


def audit_reason(moderator: discord.abc.User | None, reason: str | None) -> str:
    """What Discord's own audit log shows (the X-Audit-Log-Reason header)."""
    who = f"{moderator} ({moderator.id})" if moderator else "Guildhouse"
    return truncate(f"{who}: {reason or 'no reason given'}", 500)


def details(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def new_case(
    ctx: commands.Context[Guildhouse],
    action: str,
    target: int,
    reason: str | None,
    **kw: Any,
) -> NewCase:
    """The case a moderator's command in `ctx` records: its server, moderator and channel."""
    assert ctx.guild is not None
    return NewCase(
        guild_id=ctx.guild.id,
        action=action,
        target_id=target,
        moderator_id=ctx.author.id,
        reason=reason,
        channel_id=ctx.channel.id,
        **kw,
    )
