"""Channels and member details (moderators): purge, slowmode, lock/unlock, nick, role add and
remove. Each is a numbered case like the member actions; a channel action's case names the
channel as its target.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import Level, requires
from bot.cogs.moderation import rules, store
from bot.cogs.moderation.actions import (
    Moderator,
    Refused,
    audit_reason,
    check_hierarchy,
    discord_call,
    new_case,
    rank,
)
from bot.cogs.moderation.rules import Candidate, PurgeFilter, format_duration
from bot.context import guild_settings_of
from bot.errors import BadInput

if TYPE_CHECKING:
    from bot.guild_settings import GuildSettings
    from bot.guildhouse import Guildhouse

Ctx = commands.Context["Guildhouse"]
_BOTS_SWITCH = re.compile(r"--bots(?=\s+--|\s*$)", re.IGNORECASE)
STAFF_PERMISSIONS = ("manage_messages", "kick_members", "ban_members", "moderate_members")
MAX_STAFF_OVERWRITES = 20
PAGE = 100  # messages per history call (Discord's most)
MAX_NICK = 32


class PurgeFlags(commands.FlagConverter, prefix="--", delimiter=" ", case_insensitive=True):
    user: discord.User | None = commands.flag(default=None, description="Only this user's")
    bots: bool = commands.flag(default=False, description="Only bots' messages")
    contains: str | None = commands.flag(default=None, description="Only messages with this text")

    @classmethod
    async def convert(cls, ctx: commands.Context[Any], argument: str) -> PurgeFlags:
        # `--bots` alone is a switch (`--bots yes` works too).
        return await super().convert(ctx, _BOTS_SWITCH.sub("--bots yes", argument))


def _channel(ctx: Ctx, channel: discord.TextChannel | None) -> discord.TextChannel:
    target = channel or ctx.channel
    if not isinstance(target, discord.TextChannel):
        raise BadInput("That works in a server's text channel only.")
    return target


# -- who keeps writing in a locked channel -------------------------------------------------------


def _staff(guild: discord.Guild, settings: GuildSettings) -> list[discord.Role | discord.Member]:
    """Who keeps writing in a locked channel: the bot, and the roles that make their
    members moderators (their permissions, or `settings modrole`/`adminrole`); not
    administrators, whom no overwrite stops."""
    named = settings.mod_roles | settings.admin_roles
    staff: list[discord.Role | discord.Member] = [guild.me]
    for role in guild.roles:
        perms = role.permissions
        if role.is_default() or role.managed or perms.administrator:
            continue
        if role.id in named or any(getattr(perms, p) for p in STAFF_PERMISSIONS):
            staff.append(role)
    return staff[:MAX_STAFF_OVERWRITES]


async def keep_staff_voice(ctx: Ctx, target: discord.TextChannel, header: str) -> list[int]:
    """Allow staff to send before @everyone is denied; the ids whose overwrite we set,
    so that unlock takes back exactly those."""
    assert ctx.guild is not None
    allowed = []
    for who in _staff(ctx.guild, await guild_settings_of(ctx)):
        mine = target.overwrites_for(who)
        if mine.send_messages is not True:
            mine.update(send_messages=True)
            await discord_call(
                "lock the channel", target.set_permissions(who, overwrite=mine, reason=header)
            )
            allowed.append(who.id)
    return allowed


async def drop_staff_voice(ctx: Ctx, target: discord.TextChannel, header: str) -> list[int]:
    assert ctx.guild is not None
    last = await store.last_case(ctx.bot.pool, ctx.guild.id, target.id, "lock")
    ids = [int(i) for i in (last.details.get("allowed", []) if last else [])]
    for overwrite_id in ids:
        who = ctx.guild.get_role(overwrite_id) or (
            ctx.guild.me if overwrite_id == ctx.guild.me.id else None
        )
        if who is None:
            continue  # a role deleted since
        mine = target.overwrites_for(who)
        if mine.send_messages is True:
            mine.update(send_messages=None)
            await discord_call(
                "unlock the channel",
                target.set_permissions(
                    who, overwrite=None if mine.is_empty() else mine, reason=header
                ),
            )
    return ids


class ChannelActions(commands.Cog, name="Moderation tools"):
    """Clear messages, slow or lock a channel, rename members, give and take roles."""

    def __init__(self, bot: Guildhouse, mod: Moderator) -> None:
        self.bot = bot
        self.mod = mod

    # -- purge ---------------------------------------------------------------------------------

    @commands.hybrid_command(
        extras={
            "examples": [
                "purge 50",
                "purge 200 --user @Ann",
                "purge 100 --bots yes",
                "purge 30 --contains free nitro",
            ]
        },
        usage="<1-1000> [--user @user] [--bots] [--contains text]",
    )
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(count="How many matching messages to delete, 1-1000")
    async def purge(
        self, ctx: Ctx, count: commands.Range[int, 1, 1000], *, flags: PurgeFlags
    ) -> None:
        """Delete recent messages here (matching the filters). Discord bulk-deletes only
        messages under 14 days old: older ones are skipped and counted."""
        channel = _channel(ctx, None)
        contains = flags.contains.strip() if flags.contains else None
        if contains is not None and not 1 <= len(contains) <= 100:
            raise BadInput("`--contains` is 1-100 characters of text.")
        filt = PurgeFilter(flags.user.id if flags.user else None, flags.bots, contains)
        if ctx.interaction is not None:
            await ctx.defer()  # reading and deleting may take longer than Discord's 3 s
        before = ctx.message if ctx.interaction is None else None
        found = await self._scan(channel, before, filt, count)
        plan = rules.plan_purge(found, filt, count, discord.utils.utcnow())
        reason = audit_reason(ctx.author, f"purge of {count}")
        deleted = 0
        for batch in plan.batches:
            await discord_call(
                "delete those messages",
                channel.delete_messages([discord.Object(i) for i in batch], reason=reason),
            )
            deleted += len(batch)
        for message_id in plan.single:
            await discord_call(
                "delete that message",
                channel.get_partial_message(message_id).delete(),
            )
            deleted += 1
        case = await self.mod.record(
            new_case(
                ctx,
                "purge",
                channel.id,
                None,
                details={"channel": channel.id, "deleted": deleted, "too_old": plan.too_old},
            )
        )
        text = f"Case {case.number}: deleted {deleted} message(s)."
        if plan.too_old:
            text += (
                f" Skipped {plan.too_old} older than 14 days (Discord doesn't bulk delete those)."
            )
        await ctx.send(text)

    async def _scan(
        self,
        channel: discord.TextChannel,
        before: discord.abc.Snowflake | None,
        filt: PurgeFilter,
        count: int,
    ) -> list[Candidate]:
        """Recent messages, newest first, a page at a time, until `count` match or 1,000 are
        read (filters may match few) or the channel's start."""
        found: list[Candidate] = []
        seen: set[int] = set()
        matched = 0
        while len(found) < rules.MAX_PURGE and matched < count:
            page = [m async for m in channel.history(limit=PAGE, before=before)]
            below = before.id if before is not None else None
            fresh = [m for m in page if m.id not in seen and (below is None or m.id < below)]
            if not fresh:
                break
            for m in fresh:
                seen.add(m.id)
                c = Candidate(m.id, m.author.id, m.author.bot, m.content, m.created_at, m.pinned)
                found.append(c)
                matched += filt.matches(c)
            before = discord.Object(min(m.id for m in fresh))
            if len(page) < PAGE:
                break
        return found

    # -- slowmode, lock ------------------------------------------------------------------------

    @commands.hybrid_command(
        extras={"examples": ["slowmode 10s", "slowmode 5m #general", "slowmode off"]}
    )
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(
        delay="Time between a member's messages: 5s, 2m, up to 6h; or off",
        channel="Which channel (default: this one)",
    )
    async def slowmode(
        self, ctx: Ctx, delay: str, channel: discord.TextChannel | None = None
    ) -> None:
        """Set how often each member may send messages in a channel."""
        target = _channel(ctx, channel)
        seconds = 0
        if delay.strip().lower() not in ("off", "0", "none"):
            span = rules.parse_duration(delay, what="delay")
            seconds = int(span.total_seconds())
            if seconds > rules.MAX_SLOWMODE:
                raise BadInput("The delay can be at most 6h (Discord's limit).")
        await discord_call(
            "change the slowmode",
            target.edit(slowmode_delay=seconds, reason=audit_reason(ctx.author, "slowmode")),
        )
        case = await self.mod.record(
            new_case(
                ctx, "slowmode", target.id, None, details={"channel": target.id, "seconds": seconds}
            )
        )
        how = format_duration(timedelta(seconds=seconds)) if seconds else "off"
        await ctx.send(f"Case {case.number}: slowmode in {target.mention} is {how}.")

    async def _lock(
        self, ctx: Ctx, channel: discord.TextChannel | None, reason: str | None, *, lock: bool
    ) -> None:
        assert ctx.guild is not None
        target = _channel(ctx, channel)
        reason = rules.check_reason(reason)
        everyone = ctx.guild.default_role
        overwrite = target.overwrites_for(everyone)
        if (overwrite.send_messages is False) == lock:
            raise BadInput(f"{target.mention} is already {'locked' if lock else 'unlocked'}.")
        header = audit_reason(ctx.author, reason)
        if lock:
            allowed = await keep_staff_voice(ctx, target, header)
        else:
            allowed = await drop_staff_voice(ctx, target, header)
        value = False if lock else None
        overwrite.update(send_messages=value, add_reactions=value)
        if target.permissions_for(ctx.guild.me).send_messages_in_threads:
            # Only bits the bot holds itself may be set (else Discord answers 50013).
            overwrite.update(send_messages_in_threads=value)
        await discord_call(
            "change the channel's permissions",
            target.set_permissions(everyone, overwrite=overwrite, reason=header),
        )
        action = "lock" if lock else "unlock"
        case = await self.mod.record(
            new_case(
                ctx, action, target.id, reason, details={"channel": target.id, "allowed": allowed}
            )
        )
        done = "locked: only staff can write there" if lock else "unlocked"
        await ctx.send(f"Case {case.number}: {target.mention} is {done}.")

    @commands.hybrid_command(extras={"examples": ["lock", "lock #general raid in progress"]})
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(channel="Which channel (default: this one)", reason="Why")
    async def lock(
        self, ctx: Ctx, channel: discord.TextChannel | None = None, *, reason: str | None = None
    ) -> None:
        """Stop members from writing in a channel (@everyone may not send or react)."""
        await self._lock(ctx, channel, reason, lock=True)

    @commands.hybrid_command(extras={"examples": ["unlock", "unlock #general"]})
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(channel="Which channel (default: this one)", reason="Why")
    async def unlock(
        self, ctx: Ctx, channel: discord.TextChannel | None = None, *, reason: str | None = None
    ) -> None:
        """Let members write in a locked channel again."""
        await self._lock(ctx, channel, reason, lock=False)

    # -- nick, roles ---------------------------------------------------------------------------

    @commands.hybrid_command(extras={"examples": ["nick @Ann Ann", "nick @Ann"]})
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(member="Whose nickname", nickname="The new one (leave out to clear)")
    async def nick(self, ctx: Ctx, member: discord.Member, *, nickname: str | None = None) -> None:
        """Change or clear a member's nickname in this server."""
        assert isinstance(ctx.author, discord.Member)
        name = " ".join(nickname.split()) if nickname else None
        if name is not None and not 1 <= len(name) <= MAX_NICK:
            raise BadInput(f"A nickname is 1-{MAX_NICK} characters.")
        if member.id != ctx.author.id:
            check_hierarchy("nick", ctx.author, member)
        elif member.id == member.guild.owner_id:
            raise Refused("The server owner's nickname can't be changed by a bot (Discord's rule).")
        await discord_call(
            "change their nickname",
            member.edit(nick=name, reason=audit_reason(ctx.author, "nickname")),
        )
        case = await self.mod.record(
            new_case(ctx, "nick", member.id, None, details={"nick": name or "(cleared)"})
        )
        done = f"is now **{discord.utils.escape_markdown(name)}**" if name else "is cleared"
        await ctx.send(f"Case {case.number}: {member.mention}'s nickname {done}.")

    @commands.hybrid_command(
        extras={"examples": ["role add @Ann @Players", "role remove @Ann @Players"]}
    )
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(action="add or remove", member="Who", role="Which role")
    async def role(
        self,
        ctx: Ctx,
        action: Literal["add", "remove"],
        member: discord.Member,
        role: discord.Role,
    ) -> None:
        """Give a member a role, or take it away (the role must be below yours and mine)."""
        assert isinstance(ctx.author, discord.Member) and ctx.guild is not None
        verb = "give" if action == "add" else "take away"
        why = rules.role_refusal(
            verb, rank(ctx.author), rank(ctx.guild.me), role.position, role.managed
        )
        if why is not None:
            raise Refused(why)
        has = role in member.roles
        if has == (action == "add"):
            state = "already has" if has else "doesn't have"
            raise BadInput(f"{member.mention} {state} {role.mention}.")
        header = audit_reason(ctx.author, f"role {action}")
        call = (
            member.add_roles(role, reason=header)
            if action == "add"
            else member.remove_roles(role, reason=header)
        )
        await discord_call(f"{verb} that role", call)
        case = await self.mod.record(
            new_case(ctx, f"role_{action}", member.id, None, details={"role": role.id})
        )
        done = "now has" if action == "add" else "no longer has"
        await ctx.send(f"Case {case.number}: {member.mention} {done} {role.mention}.")
