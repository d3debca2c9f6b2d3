"""The leveling commands for admins: XP settings, XP changes (audited), level roles. Every
command here is for admins, in a server: the cog checks that once, for all of them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import asyncpg
import discord
from discord import app_commands
from discord.ext import commands

from bot import audit
from bot.checks import Level, check_level
from bot.cogs.leveling import rules
from bot.cogs.leveling import settings as xs
from bot.cogs.leveling.announcer import Announcer
from bot.cogs.leveling.service import Adjustment, LevelingService
from bot.cogs.leveling.settings import (
    ANNOUNCE_MODES,
    MAX_OVERRIDES,
    MAX_REWARDS,
    XpSettings,
    parse_multiplier,
    validate_cooldown,
    validate_rate,
)
from bot.errors import BadInput
from bot.ui import fit_embed, pages_from_lines, send_pages

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

Ctx = commands.Context["Guildhouse"]
MAX_ADJUST = 1_000_000


def _mult(value: float) -> str:
    return "no XP" if value == 0 else f"×{value:g}"


def describe(s: XpSettings) -> discord.Embed:
    embed = discord.Embed(title="XP settings", colour=0x5865F2)
    embed.add_field(name="XP per message", value=f"{s.min_xp}-{s.max_xp}")
    embed.add_field(name="Cooldown", value=f"{s.cooldown}s")
    where = {
        "here": "in the channel of the message",
        "channel": f"in <#{s.announce_channel}>",
        "dm": "by DM",
        "off": "off",
    }
    embed.add_field(name="Level-ups", value=where[s.announce])
    embed.add_field(name="Achievements", value=where[s.achievements_announce])
    chans = [f"<#{c}> {_mult(m)}" for c, m in sorted(s.channel_multipliers.items())]
    roles = [f"<@&{r}> {_mult(m)}" for r, m in sorted(s.role_multipliers.items())]
    embed.add_field(name="Channels", value="\n".join(chans) or "all ×1", inline=False)
    embed.add_field(name="Roles", value="\n".join(roles) or "all ×1", inline=False)
    rewards = [f"level {lvl}: <@&{r}>" for lvl, r in sorted(s.rewards.items())]
    mode = "keep only the highest" if s.replace_rewards else "keep all"
    embed.add_field(name=f"Level roles ({mode})", value="\n".join(rewards) or "none", inline=False)
    return fit_embed(embed)


def _amount(amount: int) -> int:
    if not 1 <= amount <= MAX_ADJUST:
        raise BadInput(f"`amount` must be between 1 and {MAX_ADJUST:,}.")
    return amount


def _with_override(current: dict[int, float], key: int, value: str) -> dict[int, float]:
    """`current` multipliers with the one of `key` set from `value` (or removed)."""
    mult = parse_multiplier(value)
    out = dict(current)
    if mult is None:
        out.pop(key, None)
    else:
        if key not in out and len(out) >= MAX_OVERRIDES:
            raise BadInput(f"At most {MAX_OVERRIDES} overrides; remove one first.")
        out[key] = mult
    return out


def _with_announce(
    current: XpSettings, mode: str, channel: discord.TextChannel | None, field: str
) -> XpSettings:
    """`current` with level-ups (`field` "announce") or achievements
    ("achievements_announce") told where `mode` says."""
    if mode not in ANNOUNCE_MODES:
        raise BadInput(f"`{mode}` is not a mode; use here, channel, dm or off.")
    changes: dict[str, Any] = {field: mode}
    if mode == "channel":
        if channel is not None:
            changes["announce_channel"] = channel.id
        elif current.announce_channel is None:
            raise BadInput("Name the channel: `xp announce channel #levels`.")
    return current.with_changes(**changes)


class LevelingAdmin(commands.Cog, name="Leveling admin"):
    """XP settings, XP changes and level roles, for admins."""

    def __init__(self, bot: Guildhouse, service: LevelingService, announcer: Announcer) -> None:
        self.bot = bot
        self.service = service
        self.settings = service.settings
        self.announcer = announcer
        for command in self.walk_commands():
            command.extras["level"] = Level.ADMIN  # what help shows, and lists by

    async def cog_check(self, ctx: Ctx) -> bool:  # type: ignore[override]
        """For admins, in a server: every command here, prefix and slash. (The two groups
        are marked guild_only too: that is what makes their slash commands guild-only.)"""
        return await check_level(ctx, Level.ADMIN)

    # -- XP ----------------------------------------------------------------------------------------

    @commands.hybrid_group(
        name="xp",
        fallback="settings",
        extras={
            "examples": [
                "xp",
                "xp give @Ann 100",
                "xp rate 10 20",
                "xp cooldown 30",
                "xp channel #memes off",
                "xp role @Boosters 1.5",
                "xp announce channel #levels",
            ]
        },
    )
    @commands.guild_only()
    async def xp(self, ctx: Ctx) -> None:
        """Show this server's XP settings (admins)."""
        await ctx.send(embed=describe(await self._current(ctx)))

    async def _current(self, ctx: Ctx) -> XpSettings:
        assert ctx.guild is not None
        return await self.settings.get(ctx.guild.id)

    async def _save(
        self, ctx: Ctx, action: str, new: XpSettings, target_id: int | None = None
    ) -> None:
        assert ctx.guild is not None
        old = await self._current(ctx)
        await audit.audited_settings(
            self.bot, ctx, action, old=old, new=new, save=xs.save, target_id=target_id
        )
        await self.settings.announce(ctx.guild.id)

    async def _adjust(self, ctx: Ctx, member: discord.Member, action: str, amount: int) -> int:
        """give or take `amount`, or reset; audited. Returns the member's XP after it."""
        assert ctx.guild is not None
        if member.bot:
            raise BadInput("Bots don't earn XP.")
        guild_id = ctx.guild.id
        done: list[Adjustment] = []

        async def change(conn: asyncpg.Connection) -> tuple[Any, Any]:
            adjustment = await self.service.adjust(conn, guild_id, member.id, action, amount)
            if adjustment is None:
                raise BadInput(f"{member.display_name} has no XP to {action}.")
            done.append(adjustment)
            return {"xp": adjustment.before}, {"xp": adjustment.after}

        entry = await audit.audited(
            self.bot,
            guild_id=guild_id,
            actor_id=ctx.author.id,
            action=f"xp.{action}",
            change=change,
            channel_id=ctx.channel.id,
            target_id=member.id,
        )
        (adjustment,) = done
        level = await self.service.publish_adjustment(adjustment.award)
        if level is not None:
            await self.announcer.level_roles(member, await self._current(ctx), level)
        return int(entry.after["xp"]) if isinstance(entry.after, dict) else 0

    @xp.command(name="give", extras={"examples": ["xp give @Ann 250"]})
    @app_commands.describe(member="Who gets the XP", amount="How much XP (1-1,000,000)")
    async def xp_give(self, ctx: Ctx, member: discord.Member, amount: int) -> None:
        """Give a member XP (admins; audited)."""
        total = await self._adjust(ctx, member, "give", _amount(amount))
        await ctx.send(f"Gave {amount:,} XP to {member.mention}: now {total:,} XP.")

    @xp.command(name="take", extras={"examples": ["xp take @Ann 100"]})
    @app_commands.describe(member="Whose XP to take", amount="How much XP (1-1,000,000)")
    async def xp_take(self, ctx: Ctx, member: discord.Member, amount: int) -> None:
        """Take XP from a member (admins; audited). Never below 0."""
        total = await self._adjust(ctx, member, "take", _amount(amount))
        await ctx.send(f"Took XP from {member.mention}: now {total:,} XP.")

    @xp.command(name="reset", extras={"examples": ["xp reset @Ann"]})
    @app_commands.describe(member="Whose XP to set to 0")
    async def xp_reset(self, ctx: Ctx, member: discord.Member) -> None:
        """Set a member's XP in this server to 0 (admins; audited)."""
        await self._adjust(ctx, member, "reset", 0)
        await ctx.send(f"{member.mention}'s XP is now 0.")

    @xp.command(name="rate", extras={"examples": ["xp rate 15 25", "xp rate 10 10"]})
    @app_commands.describe(minimum="Least XP per message", maximum="Most XP per message")
    async def xp_rate(self, ctx: Ctx, minimum: int, maximum: int) -> None:
        """Set the random XP per message (default 15-25)."""
        lo, hi = validate_rate(minimum, maximum)
        new = (await self._current(ctx)).with_changes(min_xp=lo, max_xp=hi)
        await self._save(ctx, "xp.rate", new)
        await ctx.send(f"Messages now earn {lo}-{hi} XP.")

    @xp.command(name="cooldown", extras={"examples": ["xp cooldown 60", "xp cooldown 0"]})
    @app_commands.describe(seconds="Seconds between a member's XP-earning messages (0-86400)")
    async def xp_cooldown(self, ctx: Ctx, seconds: int) -> None:
        """Set how long a member waits between messages that earn XP (default 60 s)."""
        seconds = validate_cooldown(seconds)
        new = (await self._current(ctx)).with_changes(cooldown=seconds)
        await self._save(ctx, "xp.cooldown", new)
        await ctx.send(f"XP cooldown is now {seconds}s.")

    @xp.command(
        name="channel",
        extras={
            "examples": [
                "xp channel #memes off",
                "xp channel #events 2",
                "xp channel #memes default",
            ]
        },
    )
    @app_commands.describe(
        channel="A text channel (or a category, for all its channels)",
        value="A multiplier such as 1.5, 'off' for no XP, or 'default'",
    )
    async def xp_channel(
        self, ctx: Ctx, channel: discord.TextChannel | discord.CategoryChannel, value: str
    ) -> None:
        """Set a channel's XP multiplier, or make it a no-XP channel."""
        current = await self._current(ctx)
        mults = _with_override(current.channel_multipliers, channel.id, value)
        await self._save(
            ctx, "xp.channel", current.with_changes(channel_multipliers=mults), channel.id
        )
        m = mults.get(channel.id)
        await ctx.send(f"{channel.mention}: {'×1 (default)' if m is None else _mult(m)}.")

    @xp.command(name="role", extras={"examples": ["xp role @Boosters 1.5", "xp role @Muted off"]})
    @app_commands.describe(
        role="The role", value="A multiplier such as 1.5, 'off' for no XP, or 'default'"
    )
    async def xp_role(self, ctx: Ctx, role: discord.Role, value: str) -> None:
        """Set a role's XP multiplier (the largest of a member's roles counts), or make it a
        no-XP role."""
        current = await self._current(ctx)
        mults = _with_override(current.role_multipliers, role.id, value)
        await self._save(ctx, "xp.role", current.with_changes(role_multipliers=mults), role.id)
        m = mults.get(role.id)
        await ctx.send(f"{role.mention}: {'×1 (default)' if m is None else _mult(m)}.")

    @xp.command(
        name="announce",
        extras={
            "examples": [
                "xp announce here",
                "xp announce channel #levels",
                "xp announce dm",
                "xp announce off",
            ]
        },
    )
    @app_commands.describe(
        mode="here (the message's channel), channel, dm or off",
        channel="With mode 'channel': where level-ups go",
    )
    async def xp_announce(
        self,
        ctx: Ctx,
        mode: Literal["here", "channel", "dm", "off"],
        channel: discord.TextChannel | None = None,
    ) -> None:
        """Choose where level-ups are announced."""
        current = await self._current(ctx)
        new = _with_announce(current, mode, channel, "announce")
        await self._save(ctx, "xp.announce", new)
        await ctx.send(f"Level-ups: {describe(new).fields[2].value}.")

    @xp.command(
        name="achievements", extras={"examples": ["xp achievements dm", "xp achievements here"]}
    )
    @app_commands.describe(
        mode="here (where it happened), channel (the level-up channel), dm or off"
    )
    async def xp_achievements(
        self, ctx: Ctx, mode: Literal["here", "channel", "dm", "off"]
    ) -> None:
        """Choose where achievement unlocks are announced (default: DM)."""
        current = await self._current(ctx)
        new = _with_announce(current, mode, None, "achievements_announce")
        await self._save(ctx, "xp.achievements", new)
        await ctx.send(f"Achievements: {describe(new).fields[3].value}.")

    # -- level roles -------------------------------------------------------------------------------

    @commands.hybrid_group(
        name="levelrole",
        fallback="list",
        extras={
            "examples": [
                "levelrole",
                "levelrole add 10 @Regulars",
                "levelrole remove 10",
                "levelrole replace yes",
            ]
        },
    )
    @commands.guild_only()
    async def levelrole(self, ctx: Ctx) -> None:
        """List the roles members get at levels (admins)."""
        current = await self._current(ctx)
        lines = [f"level {lvl}: <@&{r}>" for lvl, r in sorted(current.rewards.items())]
        mode = "only the highest is kept" if current.replace_rewards else "all are kept"
        await send_pages(ctx, pages_from_lines(f"Level roles ({mode})", lines or ["none"]))

    @levelrole.command(name="add", extras={"examples": ["levelrole add 10 @Regulars"]})
    @app_commands.describe(level="The level (1-1000)", role="The role to give at that level")
    async def levelrole_add(self, ctx: Ctx, level: int, role: discord.Role) -> None:
        """Give a role to members when they reach a level."""
        assert ctx.guild is not None
        if not 1 <= level <= rules.MAX_LEVEL:
            raise BadInput(f"`level` must be between 1 and {rules.MAX_LEVEL}.")
        if role.is_default() or role.managed:
            raise BadInput(f"{role.mention} can't be given to members.")
        me = ctx.guild.me
        if me is not None and role >= me.top_role:
            raise BadInput(f"{role.mention} is not below my highest role, so I can't give it.")
        author = ctx.author
        if (
            isinstance(author, discord.Member)
            and author.id != ctx.guild.owner_id
            and not author.guild_permissions.administrator
            and role >= author.top_role
        ):
            # Discord's own rule for handing out roles: else an admin by Manage Server (or a
            # configured admin role) could reward themselves a role above their own.
            raise BadInput(
                f"{role.mention} is not below your highest role, so you can't make it a reward."
            )
        current = await self._current(ctx)
        if level not in current.rewards and len(current.rewards) >= MAX_REWARDS:
            raise BadInput(f"At most {MAX_REWARDS} level roles; remove one first.")
        rewards = dict(current.rewards)
        rewards[level] = role.id
        await self._save(ctx, "xp.levelrole.add", current.with_changes(rewards=rewards), role.id)
        await ctx.send(f"Members reaching level {level} get {role.mention}.")

    @levelrole.command(name="remove", extras={"examples": ["levelrole remove 10"]})
    @app_commands.describe(level="The level whose role reward to remove")
    async def levelrole_remove(self, ctx: Ctx, level: int) -> None:
        """Stop giving a role at a level (members keep roles they have)."""
        current = await self._current(ctx)
        if level not in current.rewards:
            raise BadInput(f"No role is given at level {level}.")
        rewards = dict(current.rewards)
        role_id = rewards.pop(level)
        await self._save(ctx, "xp.levelrole.remove", current.with_changes(rewards=rewards), role_id)
        await ctx.send(f"Level {level} no longer gives <@&{role_id}>.")

    @levelrole.command(name="replace", extras={"examples": ["levelrole replace yes"]})
    @app_commands.describe(choice="yes: keep only the highest level role; no: keep them all")
    async def levelrole_replace(self, ctx: Ctx, choice: Literal["yes", "no"]) -> None:
        """Choose whether a new level role replaces the previous ones."""
        current = await self._current(ctx)
        new = current.with_changes(replace_rewards=choice == "yes")
        await self._save(ctx, "xp.levelrole.replace", new)
        await ctx.send(
            "A new level role now replaces the previous ones."
            if choice == "yes"
            else "Members now keep every level role they earned."
        )
