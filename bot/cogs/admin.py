"""Server settings (admins), the audit log (moderators) and command sync (owners)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import audit, command_throttles
from bot.checks import Level, requires
from bot.context import guild_settings_of
from bot.errors import BadInput
from bot.guild_settings import MAX_ROLES, GuildSettings, validate_prefix
from bot.rpc import ReloadExtension, SetPresence
from bot.ui import pages_from_lines, safe_text, send_pages
from ipc.bus import GatherResult
from ipc.throttle import RuleError

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

Ctx = commands.Context["Guildhouse"]
# Commands an admin may not disable: they are how one turns things back on.
UNDISABLEABLE = {"help", "settings"}


def _roles(ids: frozenset[int]) -> str:
    return ", ".join(f"<@&{r}>" for r in sorted(ids)) or "none"


def _gathered(done: str, result: GatherResult) -> str:
    text = f"{done} on {len(result.results)} cluster(s)."
    if result.errors:
        first = next(iter(result.errors.values()))
        text += f" Failed on {len(result.errors)}: {safe_text(first, 200)}"
    if result.missing:
        text += f" No answer from cluster(s) {', '.join(str(c) for c in result.missing)}."
    return text


def describe_settings(s: GuildSettings) -> discord.Embed:
    embed = discord.Embed(title="Server settings", colour=0x5865F2)
    embed.add_field(name="Prefix", value=f"`{s.prefix}`")
    embed.add_field(name="Log channel", value=f"<#{s.log_channel}>" if s.log_channel else "none")
    embed.add_field(name="Moderator roles", value=_roles(s.mod_roles), inline=False)
    embed.add_field(name="Admin roles", value=_roles(s.admin_roles), inline=False)
    embed.add_field(
        name="Disabled commands",
        value=", ".join(f"`{c}`" for c in sorted(s.disabled)) or "none",
        inline=False,
    )
    overrides = [
        f"`{cmd}` " + ", ".join(f"{scope} {rule}" for scope, rule in sorted(rules.items()))
        for cmd, rules in sorted(s.throttles.items())
    ]
    embed.add_field(name="Throttle overrides", value="\n".join(overrides) or "none", inline=False)
    exempt = {None: "bot default", True: "yes", False: "no"}[s.throttle_exempt_mods]
    embed.add_field(name="Moderators skip throttles", value=exempt)
    return embed


class Admin(commands.Cog, name="Server admin"):
    """Server settings and the audit log."""

    def __init__(self, bot: Guildhouse) -> None:
        self.bot = bot

    async def _change(
        self, ctx: Ctx, action: str, new: GuildSettings, target_id: int | None = None
    ) -> None:
        assert ctx.guild is not None
        store = self.bot.guild_settings
        old = await guild_settings_of(ctx)
        await audit.audited_settings(
            self.bot, ctx, action, old=old, new=new, save=store.save, target_id=target_id
        )
        await store.announce(ctx.guild.id)

    async def _current(self, ctx: Ctx) -> GuildSettings:
        return await guild_settings_of(ctx)

    @commands.hybrid_group(
        name="settings",
        fallback="show",
        extras={
            "examples": [
                "settings",
                "settings prefix ?",
                "settings modrole add @Mods",
                "settings logchannel #mod-log",
                "settings disable roll",
            ]
        },
    )
    @commands.guild_only()
    @requires(Level.ADMIN)
    async def settings(self, ctx: Ctx) -> None:
        """Show this server's settings (admins)."""
        await ctx.send(embed=describe_settings(await self._current(ctx)))

    @settings.command(name="prefix", extras={"examples": ["settings prefix ?"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(prefix="The new prefix, 1-16 characters, no spaces")
    async def settings_prefix(self, ctx: Ctx, *, prefix: str) -> None:
        """Change the command prefix of this server."""
        prefix = validate_prefix(prefix)
        current = await self._current(ctx)
        await self._change(ctx, "settings.prefix", current.with_changes(prefix=prefix))
        await ctx.send(f"Prefix is now `{prefix}` (mentioning me works too).")

    async def _role_change(self, ctx: Ctx, kind: str, action: str, role: discord.Role) -> None:
        current = await self._current(ctx)
        roles: frozenset[int] = getattr(current, f"{kind}_roles")
        if action == "add":
            if role.id in roles:
                raise BadInput(f"{role.mention} is already a {kind} role.")
            if len(roles) >= MAX_ROLES:
                raise BadInput(f"At most {MAX_ROLES} {kind} roles; remove one first.")
            roles = roles | {role.id}
        else:
            if role.id not in roles:
                raise BadInput(f"{role.mention} is not a {kind} role.")
            roles = roles - {role.id}
        new = current.with_changes(**{f"{kind}_roles": roles})
        await self._change(ctx, f"settings.{kind}role.{action}", new, target_id=role.id)
        done = "added to" if action == "add" else "removed from"
        await ctx.send(f"{role.mention} {done} the {kind} roles.")

    @settings.command(name="modrole", extras={"examples": ["settings modrole add @Mods"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(action="add or remove", role="The role")
    async def settings_modrole(
        self, ctx: Ctx, action: Literal["add", "remove"], role: discord.Role
    ) -> None:
        """Add or remove a role whose members count as moderators."""
        await self._role_change(ctx, "mod", action, role)

    @settings.command(name="adminrole", extras={"examples": ["settings adminrole add @Staff"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(action="add or remove", role="The role")
    async def settings_adminrole(
        self, ctx: Ctx, action: Literal["add", "remove"], role: discord.Role
    ) -> None:
        """Add or remove a role whose members count as admins."""
        await self._role_change(ctx, "admin", action, role)

    @settings.command(
        name="logchannel",
        extras={"examples": ["settings logchannel #mod-log", "settings logchannel"]},
    )
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(channel="Where audit entries are posted; leave out to turn off")
    async def settings_logchannel(
        self, ctx: Ctx, channel: discord.TextChannel | None = None
    ) -> None:
        """Set (or clear) the channel that receives audit log entries."""
        current = await self._current(ctx)
        new = current.with_changes(log_channel=channel.id if channel else None)
        await self._change(
            ctx, "settings.logchannel", new, target_id=channel.id if channel else None
        )
        await ctx.send(
            f"Audit entries now go to {channel.mention}."
            if channel
            else "Audit entries are no longer posted."
        )

    async def _toggle(self, ctx: Ctx, name: str, *, disable: bool) -> None:
        cmd = self.bot.get_command(name.lower())
        if cmd is None:
            raise BadInput(f"No command called `{safe_text(name, 60)}`.")
        root = (cmd.root_parent or cmd).name
        if root in UNDISABLEABLE:
            raise BadInput(f"`{root}` can't be disabled.")
        current = await self._current(ctx)
        if disable == (root in current.disabled):
            raise BadInput(f"`{root}` is already {'disabled' if disable else 'enabled'}.")
        disabled = current.disabled | {root} if disable else current.disabled - {root}
        action = "settings.disable" if disable else "settings.enable"
        await self._change(ctx, action, current.with_changes(disabled=disabled))
        await ctx.send(f"`{root}` is now {'disabled' if disable else 'enabled'} in this server.")

    @settings.command(name="disable", extras={"examples": ["settings disable roll"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(command="The command to turn off in this server")
    async def settings_disable(self, ctx: Ctx, command: str) -> None:
        """Turn a command off in this server."""
        await self._toggle(ctx, command, disable=True)

    @settings.command(name="enable", extras={"examples": ["settings enable roll"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(command="The command to turn back on")
    async def settings_enable(self, ctx: Ctx, command: str) -> None:
        """Turn a disabled command back on."""
        await self._toggle(ctx, command, disable=False)

    @settings.command(
        name="throttle",
        extras={
            "examples": [
                "settings throttle roll command 3/10s",
                "settings throttle roll guild 30/1m",
                "settings throttle roll command off",
                "settings throttle roll command default",
            ]
        },
    )
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(
        command="The command whose limit to change",
        scope="command: per user on this command; guild: the whole server on this command",
        rule="COUNT/WINDOW such as 5/10s or 3/1m, 'off', or 'default'",
    )
    async def settings_throttle(
        self, ctx: Ctx, command: str, scope: Literal["command", "guild"], rule: str
    ) -> None:
        """Change how often a command may be used in this server (per user or in all)."""
        cmd = self.bot.get_command(command.lower())
        if cmd is None:
            raise BadInput(f"No command called `{safe_text(command, 60)}`.")
        root = (cmd.root_parent or cmd).name
        current = await self._current(ctx)
        overrides = {k: dict(v) for k, v in current.throttles.items()}
        mine = overrides.setdefault(root, {})
        if rule.strip().lower() == "default":
            mine.pop(scope, None)
        else:
            try:
                mine[scope] = command_throttles.parse_override(rule)
            except RuleError as exc:
                raise BadInput(f"Bad `rule`: {exc}") from None
        if not mine:
            overrides.pop(root)
        if len(overrides) > 100:
            raise BadInput("At most 100 commands can have their own limits.")
        await self._change(ctx, "settings.throttle", current.with_changes(throttles=overrides))
        effective = command_throttles.rules_for(
            cmd, self.bot.throttle_defaults, current.with_changes(throttles=overrides)
        )[scope]
        who = "per user" if scope == "command" else "for the whole server"
        await ctx.send(
            f"`{root}` {who}: " + (f"at most {effective}." if effective else "not limited.")
        )

    @settings.command(
        name="throttleexempt",
        extras={"examples": ["settings throttleexempt no", "settings throttleexempt default"]},
    )
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(value="yes: moderators and admins skip throttles; no; or default")
    async def settings_throttleexempt(
        self, ctx: Ctx, value: Literal["yes", "no", "default"]
    ) -> None:
        """Choose whether moderators and admins skip command throttles here."""
        current = await self._current(ctx)
        exempt = {"yes": True, "no": False, "default": None}[value]
        await self._change(
            ctx, "settings.throttleexempt", current.with_changes(throttle_exempt_mods=exempt)
        )
        effective = command_throttles.exempt_mods(
            self.bot.throttle_defaults, current.with_changes(throttle_exempt_mods=exempt)
        )
        await ctx.send(
            "Moderators and admins now "
            + ("skip command throttles." if effective else "are throttled like everyone.")
        )

    @commands.hybrid_command(
        name="audit", extras={"examples": ["audit", "audit @user", "audit action:settings"]}
    )
    @commands.guild_only()
    @requires(Level.MODERATOR)
    @app_commands.describe(
        user="Only entries by or about this user",
        action="Only actions starting with this, e.g. 'settings'",
    )
    async def audit_(
        self, ctx: Ctx, user: discord.User | None = None, *, action: str | None = None
    ) -> None:
        """Show recent audit log entries of this server."""
        assert ctx.guild is not None
        if action is not None and (
            len(action) > 64 or not action.replace(".", "").replace("_", "").isalnum()
        ):
            raise BadInput("`action` is a name like `settings` or `settings.prefix`.")
        entries = await audit.recent(
            self.bot.pool, ctx.guild.id, target_id=user.id if user else None, action=action
        )
        lines = [audit.describe(e) for e in entries] or ["No audit entries match."]
        await send_pages(ctx, pages_from_lines("Audit log", lines, per_page=10))

    @commands.command(
        name="presence",
        hidden=True,
        extras={"examples": ["presence online", "presence idle Rolling dice"]},
    )
    @requires(Level.OWNER)
    async def presence(
        self,
        ctx: Ctx,
        status: Literal["online", "idle", "dnd", "invisible"],
        *,
        activity: str | None = None,
    ) -> None:
        """Set the bot's status on every shard of every cluster (owners). Discord allows 5
        presence updates per 20 s per shard: beyond that the latest one waits (the answer says
        how long)."""
        result = await self.bot.bus.gather("set_presence", SetPresence(status, activity), within=10)
        waits = [float(r.get("wait", 0)) for r in result.results.values() if isinstance(r, dict)]
        text = _gathered("Presence set", result)
        if (wait := max(waits, default=0.0)) > 0:
            text += (
                f" Discord allows 5 presence updates per 20 s, so it applies in {math.ceil(wait)} s"
                " (a later `presence` replaces it)."
            )
        await ctx.send(text)

    @commands.command(name="reload", hidden=True, extras={"examples": ["reload bot.cogs.general"]})
    @requires(Level.OWNER)
    async def reload(self, ctx: Ctx, extension: str) -> None:
        """Reload a cog on every cluster, e.g. after a hot fix (owners)."""
        result = await self.bot.bus.gather(
            "reload_extension", ReloadExtension(extension), within=30
        )
        await ctx.send(_gathered(f"Reloaded `{safe_text(extension, 60)}`", result))

    @commands.command(name="sync", hidden=True, extras={"examples": ["sync", "sync here"]})
    @requires(Level.OWNER)
    async def sync(self, ctx: Ctx, scope: Literal["global", "here"] = "global") -> None:
        """Register slash commands with Discord (owners). Not done on start."""
        guild = ctx.guild if scope == "here" else None
        if scope == "here" and guild is None:
            raise BadInput("`here` only works in a server.")
        if guild is not None:
            self.bot.tree.copy_global_to(guild=guild)
        synced = await self.bot.tree.sync(guild=guild)
        where = f"this server ({guild.id})" if guild else "all servers"
        await ctx.send(f"Synced {len(synced)} slash commands to {where}.")


async def setup(bot: Guildhouse) -> None:
    await bot.add_cog(Admin(bot))
