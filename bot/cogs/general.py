"""General commands: help, ping, about."""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import Level, caller_level, command_level
from bot.context import CommandContext
from bot.errors import BadInput
from bot.ui import fit_embed, pages_from_lines, safe_text, send_pages

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

Ctx = CommandContext


def _version() -> str:
    try:
        return version("guildhouse")
    except PackageNotFoundError:  # running from a source tree without installing
        return "dev"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    parts.append(f"{minutes}m" if days or hours or minutes else f"{secs}s")
    return " ".join(parts)


class Core(commands.Cog, name="General"):
    """Help and information about the bot."""

    def __init__(self, bot: Guildhouse) -> None:
        self.bot = bot

    async def _visible(self, ctx: Ctx) -> list[commands.Command[Any, ..., Any]]:
        caller = await caller_level(ctx)
        settings = getattr(ctx, "settings", None)
        disabled = settings.disabled if settings is not None else frozenset()
        return [
            cmd
            for cmd in self.bot.walk_commands()
            if not cmd.hidden
            and command_level(cmd) <= caller
            and (cmd.root_parent or cmd).name not in disabled
        ]

    async def _command_names(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        names = sorted({c.qualified_name for c in self.bot.walk_commands() if not c.hidden})
        current = current.lower()
        return [app_commands.Choice(name=n, value=n) for n in names if current in n][:25]

    @commands.hybrid_command(
        name="help",
        extras={"examples": ["help", "help settings prefix"]},
    )
    @app_commands.describe(command="A command to explain, e.g. 'settings prefix'")
    async def help_(self, ctx: Ctx, *, command: str | None = None) -> None:
        """Show the commands you can use, or how to use one of them."""
        visible = await self._visible(ctx)
        prefix = "/" if ctx.interaction else ctx.clean_prefix
        if command is None:
            by_cog: dict[str, list[str]] = {}
            for cmd in visible:
                if cmd.parent is not None:
                    continue
                by_cog.setdefault(cmd.cog_name or "Other", []).append(
                    f"`{prefix}{cmd.name}` {cmd.short_doc}"
                )
            lines: list[str] = []
            for cog in sorted(by_cog):
                lines.append(f"**{cog}**")
                lines.extend(sorted(by_cog[cog]))
            lines.append(f"\nMore on one command: `{prefix}help <command>`")
            await send_pages(ctx, pages_from_lines("Guildhouse commands", lines, per_page=25))
            return
        wanted = " ".join(command.lower().split())
        found = next(
            (
                c
                for c in visible
                if c.qualified_name == wanted
                or wanted in (f"{c.full_parent_name} {a}".strip() for a in c.aliases)
            ),
            None,
        )
        if found is None:
            raise BadInput(f"No command called `{safe_text(command, 60)}` that you can use.")
        embed = discord.Embed(
            title=f"{prefix}{found.qualified_name} {found.signature}".strip(),
            description=found.help or found.short_doc or "No description.",
            colour=0x5865F2,
        )
        if found.aliases:
            embed.add_field(name="Aliases", value=", ".join(f"`{a}`" for a in found.aliases))
        examples = found.extras.get("examples") or []
        if examples:
            embed.add_field(
                name="Examples", value="\n".join(f"`{prefix}{e}`" for e in examples), inline=False
            )
        if isinstance(found, commands.Group):
            subs = [c for c in visible if c.parent is found]
            if subs:
                embed.add_field(
                    name="Subcommands",
                    inline=False,
                    value="\n".join(
                        f"`{prefix}{c.qualified_name} {c.signature}`".replace(" `", "`")
                        + f" {c.short_doc}"
                        for c in subs
                    ),
                )
        level = command_level(found)
        if level > Level.EVERYONE:
            embed.set_footer(text=f"For {level.label}.")
        await ctx.send(embed=fit_embed(embed))

    @help_.autocomplete("command")
    async def _help_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return await self._command_names(interaction, current)

    @commands.hybrid_command(extras={"examples": ["ping"]})
    async def ping(self, ctx: Ctx) -> None:
        """Show this shard's gateway latency and a REST round trip."""
        shard_id = ctx.guild.shard_id if ctx.guild else 0
        latency = self.bot.shard_latency(shard_id)
        gateway = latency * 1000 if latency is not None else None
        started = time.perf_counter()
        message = await ctx.send("Pong…")
        rest = (time.perf_counter() - started) * 1000
        gw = f"{gateway:.0f} ms" if gateway is not None else "not measured yet"
        await message.edit(content=f"Pong! Gateway {gw} (shard {shard_id}), REST {rest:.0f} ms.")

    @commands.hybrid_command(extras={"examples": ["about"]})
    async def about(self, ctx: Ctx) -> None:
        """Version, uptime and the cluster serving you."""
        cfg = self.bot.config
        shards = cfg.shard_ids
        shard_text = f"{shards[0]}–{shards[-1]}" if len(shards) > 1 else str(shards[0])
        embed = discord.Embed(
            title="Guildhouse", colour=0x5865F2, description="A bot for gaming communities."
        )
        embed.add_field(name="Version", value=_version())
        embed.add_field(name="Uptime", value=_duration(time.time() - self.bot.started_at))
        embed.add_field(name="Cluster", value=f"{cfg.cluster_id + 1} of {cfg.cluster_count}")
        embed.add_field(name="Shards here", value=f"{shard_text} of {cfg.shard_count}")
        embed.add_field(name="Guilds here", value=str(len(self.bot.guilds)))
        everywhere = await self.bot.bus.gather("cluster_stats", within=3)
        stats = [s for s in everywhere.results.values() if isinstance(s, dict)]
        total = sum(int(s["guilds"]) for s in stats)
        ready = sum(int(s["ready_shards"]) for s in stats)
        text = f"{total} guilds, {len(stats)} clusters, {ready} shards ready"
        if everywhere.partial:
            silent = everywhere.missing + sorted(everywhere.errors)
            text += f" (no answer from cluster {', '.join(str(c + 1) for c in silent)})"
        embed.add_field(name="All clusters", value=text, inline=False)
        if ctx.guild:
            embed.set_footer(text=f"This server is on shard {ctx.guild.shard_id}.")
        await ctx.send(embed=embed)


async def setup(bot: Guildhouse) -> None:
    await bot.add_cog(Core(bot))
