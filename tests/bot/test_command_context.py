"""The command context (bot/context.py) of a real Guildhouse, in this process, against an
in-process sandbox: the guild's settings are looked up once per command, prefix or slash,
whatever its checks ask; the caller's level comes from them; the command's reply reservation
is spent once by its answer and settled when it ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import discord
import pytest
import redis.asyncio as aioredis
import yarl
from discord.ext import commands

from bot.config import WorkerConfig
from bot.context import CommandContext
from bot.guildhouse import Guildhouse
from ipc.ratelimit import Reservation
from sandbox import Sandbox, SandboxConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class Probe(commands.Cog):
    """Commands that show what their context holds (tests only)."""

    def __init__(self) -> None:
        self.seen: list[CommandContext] = []

    @commands.hybrid_command()
    async def quiet(self, ctx: CommandContext) -> None:
        """Answer nothing."""
        self.seen.append(ctx)

    @commands.hybrid_command()
    async def whoami(self, ctx: CommandContext) -> None:
        """Say the caller's level."""
        self.seen.append(ctx)
        await ctx.send(f"level {int(ctx.level)}")


@dataclass
class Running:
    bot: Guildhouse
    sb: Sandbox
    probe: Probe
    lookups: list[int] = field(default_factory=list)
    settled: list[Reservation] = field(default_factory=list)
    more_settled: asyncio.Event = field(default_factory=asyncio.Event)

    async def settled_count(self, n: int) -> list[Reservation]:
        """The first `n` reservations the bot settled, once it has (it does in its own task)."""
        while len(self.settled) < n:
            self.more_settled.clear()
            await asyncio.wait_for(self.more_settled.wait(), 15)
        return self.settled[:n]

    async def answer(self, send: Callable[[], Awaitable[Any]], channel: int) -> str:
        after = max((int(e["seq"]) for e in await self.sb.outbox()), default=0)
        await send()
        for entry in await self.sb.outbox(channel, after=after, wait=15):
            data = entry.get("data") or entry
            return str(data.get("content") or "")
        raise AssertionError("no answer")


@pytest.fixture
async def running(
    *,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    redis_url: str,
    redis_prefix: str,
    migrated_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Running]:
    async with Sandbox(SandboxConfig(guilds=2, members=6, identify_interval=0.1)) as sb:
        # What bot/dpy/urls.py's install does in a worker, undone after the test.
        monkeypatch.setattr(discord.http.Route, "BASE", sb.api_url.rstrip("/"))
        monkeypatch.setattr(
            discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(sb.gateway_url)
        )
        config = WorkerConfig(
            cluster_id=0,
            cluster_count=1,
            shard_ids=(0,),
            shard_count=1,
            token=sb.token,
            database_url=migrated_dsn,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            api_url=sb.api_url,
            gateway_url=sb.gateway_url,
            identify_interval=0.1,
            extensions=("bot.cogs.general", "bot.cogs.admin"),
        )
        bot = Guildhouse(config, pool=pool, redis=redis)
        probe = Probe()
        run = Running(bot, sb, probe)
        await bot.__aenter__()  # as the worker does, before start
        runner = asyncio.create_task(bot.start(sb.token))
        try:
            await asyncio.wait_for(bot.wait_until_ready(), 60)
            await bot.add_cog(probe)
            await bot.tree.sync()
            store_get = bot.guild_settings.get

            async def counted(guild_id: int) -> Any:
                run.lookups.append(guild_id)
                return await store_get(guild_id)

            bot.guild_settings.get = counted  # type: ignore[method-assign]
            settle = bot.rest_limiter.settle

            def recorded(reservation: Reservation) -> bool:
                run.settled.append(reservation)
                run.more_settled.set()
                return settle(reservation)

            bot.rest_limiter.settle = recorded  # type: ignore[method-assign]
            yield run
        finally:
            await bot.close()
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)


def place(sb: Sandbox) -> tuple[int, int, int]:
    """(a text channel, its guild's owner, a member who is neither owner nor moderator)."""
    guild = next(iter(sb.world.guilds.values()))
    channel = next(c.id for c in guild.channels.values() if c.type == 0 and not c.overwrites)
    plain = next(
        m
        for m in guild.members
        if m not in (guild.owner_id, sb.world.bot.id) and not guild.members[m].roles
    )
    return channel, guild.owner_id, plain


async def test_one_settings_lookup_per_command(running: Running) -> None:
    sb = running.sb
    channel, owner, member = place(sb)
    say = lambda who, text: lambda: sb.send_message(channel, who, text)  # noqa: E731

    assert (await running.answer(say(member, "!whoami"), channel)) == "level 0"
    assert len(running.lookups) == 1
    running.lookups.clear()
    # The owner is an admin: `settings` checks the level (`requires`), both gate checks run.
    await running.answer(say(owner, "!settings"), channel)  # an embed of the settings
    assert len(running.lookups) == 1
    running.lookups.clear()
    assert (await running.answer(say(owner, "!whoami"), channel)) == "level 2"
    assert len(running.lookups) == 1
    running.lookups.clear()
    # A member refused by a level check: still one lookup, and the refusal names the level.
    assert (await running.answer(say(member, "!settings"), channel)) == (
        "This command is for admins."
    )
    assert len(running.lookups) == 1
    running.lookups.clear()
    await running.answer(lambda: sb.send_interaction(channel, member, "whoami"), channel)
    assert len(running.lookups) == 1
    assert running.probe.seen[-1].interaction is not None
    assert all(isinstance(ctx, CommandContext) for ctx in running.probe.seen)


async def test_the_reply_reservation_is_spent_once_and_settled(running: Running) -> None:
    sb = running.sb
    channel, _, member = place(sb)
    limiter = running.bot.rest_limiter
    before = limiter.prepaid_used
    # ping answers with a message, then edits it: the reservation pays for the message only.
    text = await running.answer(lambda: sb.send_message(channel, member, "!ping"), channel)
    assert text.startswith("Pong")
    (pinged,) = await running.settled_count(1)
    assert pinged.spent and pinged.settled
    assert limiter.prepaid_used - before <= 1
    # A command that sends nothing: its reservation is settled unspent. (An allotted slot goes
    # back to its allotment if that is still current and the slot still good, which a refill
    # meanwhile or a slow machine decide; tests/bot/test_reply_reservation.py checks that part.)
    released = limiter.released
    await sb.send_message(channel, member, "!quiet")
    _, quiet = await running.settled_count(2)
    assert quiet.settled and not quiet.spent and not quiet.holds_slot
    assert limiter.released - released in ((0, 1) if quiet.allotment >= 0 else (0,))
