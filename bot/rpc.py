"""What other processes may ask of this worker over the IPC bus (ipc/bus.py), and the request
each takes: the launcher and `guildhouse` commands ask for stats and guilds, the admin cog
asks every worker to change presence or reload a feature."""

from __future__ import annotations

import time
from dataclasses import dataclass

import discord
from discord.ext import commands

from bot.presence_pacer import pacer_of
from bot.status import WorkerStatus
from ipc.bus import Bus


@dataclass(frozen=True)
class FindGuild:
    guild_id: int


@dataclass(frozen=True)
class SetPresence:
    status: str  # online, idle, dnd, invisible
    activity: str | None = None


@dataclass(frozen=True)
class ReloadExtension:
    name: str


class Answers:
    """This worker's answers, one method a request."""

    def __init__(
        self, bot: commands.AutoShardedBot, status: WorkerStatus, extensions: tuple[str, ...]
    ) -> None:
        self.bot = bot
        self.status = status
        self.extensions = extensions  # those a reload may name

    def register(self, bus: Bus) -> None:
        bus.handle("cluster_stats", None, self.cluster_stats)
        bus.handle("find_guild", FindGuild, self.find_guild)
        bus.handle("set_presence", SetPresence, self.set_presence)
        bus.handle("reload_extension", ReloadExtension, self.reload_extension)

    async def cluster_stats(self, _: object) -> dict[str, object]:
        status = self.status
        info = status.cluster_info("ready" if status.tracker.all_ready() else "starting")
        return {
            "cluster_id": info.cluster_id,
            "guilds": info.guilds,
            "shards": len(info.shards),
            "ready_shards": sum(s.state == "ready" for s in info.shards.values()),
            "uptime": time.time() - status.started_at,
        }

    async def find_guild(self, req: FindGuild) -> dict[str, object] | None:
        guild = self.bot.get_guild(req.guild_id)
        if guild is None:
            return None
        return {
            "cluster_id": self.status.config.cluster_id,
            "shard_id": guild.shard_id,
            "name": guild.name,
            # The icon's hash: the launcher's web leaderboard shows it (it has no cache).
            "icon": guild.icon.key if guild.icon is not None else None,
        }

    async def set_presence(self, req: SetPresence) -> dict[str, object]:
        """Through the shards' presence pacer (bot/presence_pacer.py): `wait` is how many
        seconds until every shard has it (0: now)."""
        status = discord.Status(req.status)  # ValueError for an unknown status: an error answer
        activity = discord.Game(req.activity[:128]) if req.activity else None
        wait = await pacer_of(self.bot).change(status=status, activity=activity)
        return {"shards": len(self.bot.shards), "wait": wait}

    async def reload_extension(self, req: ReloadExtension) -> str:
        if req.name not in self.extensions:
            raise ValueError(f"{req.name!r} is not one of this bot's extensions")
        await self.bot.reload_extension(req.name)
        return req.name
