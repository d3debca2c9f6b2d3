"""A real Guildhouse, in this process, answering a burst of `!ping` (a message, then its edit)
far faster than Discord's 50 requests a second, against the sandbox, which counts every request
in a sliding second: it never sees more than 50 in one, nor answers a global 429.

What this catches: hundreds of answers waiting for the shared window at once. Each used to ask
Redis again whenever a slot freed, all together, until the process's connection pool (64) was
full; the limiter took the full pool for an outage and fell back to its local window, which
knew nothing of the 50 just sent through the shared one, and the sandbox saw 100 in a second
and hundreds of global 429s (`python -m bench scale`'s REST window)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import discord
import pytest
import redis.asyncio as aioredis
import yarl

from bot.config import WorkerConfig
from bot.guildhouse import Guildhouse
from ipc.ratelimit import Reservation
from ipc.throttle import Rule
from sandbox import Sandbox, SandboxConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

BURST = 400  # commands; each sends two requests: 16 seconds of the global limit
GENEROUS = Rule(10_000, 1.0)  # the throttle check runs (and buys slots) but refuses nothing


@pytest.fixture
async def bot_and_sandbox(
    *,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    redis_url: str,
    redis_prefix: str,
    migrated_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[Guildhouse, Sandbox]]:
    async with Sandbox(SandboxConfig(guilds=20, members=10, identify_interval=0.1)) as sb:
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
            extensions=("bot.cogs.general",),
            throttle_user=GENEROUS,
            throttle_command=GENEROUS,
            throttle_guild=GENEROUS,
        )
        bot = Guildhouse(config, pool=pool, redis=redis)
        await bot.__aenter__()  # as the worker does, before start
        runner = asyncio.create_task(bot.start(sb.token))
        try:
            await asyncio.wait_for(bot.wait_until_ready(), 60)
            yield bot, sb
        finally:
            await bot.close()
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)


async def test_a_burst_of_commands_stays_within_the_global_limit(
    bot_and_sandbox: tuple[Guildhouse, Sandbox],
) -> None:
    bot, sb = bot_and_sandbox
    places = [
        (channel.id, member)
        for guild in sb.world.guilds.values()
        for channel in guild.channels.values()
        if channel.type == 0 and not channel.overwrites
        for member in guild.members
        if member not in (guild.owner_id, sb.world.bot.id)
    ]
    assert places
    settled: list[Reservation] = []
    all_settled = asyncio.Event()
    settle = bot.rest_limiter.settle

    def recorded(reservation: Reservation) -> bool:
        settled.append(reservation)
        if len(settled) >= BURST:
            all_settled.set()
        return settle(reservation)

    bot.rest_limiter.settle = recorded  # type: ignore[method-assign]
    sends: list[Any] = [sb.send_message(*places[i % len(places)], "!ping") for i in range(BURST)]
    await asyncio.gather(*sends)
    await asyncio.wait_for(all_settled.wait(), 120)  # every ping answered and edited
    stats = sb.stats()
    assert stats["requests_per_route"], stats
    assert stats["rate_limited"].get("global", 0) == 0, stats
    assert stats["max_requests_in_1s"] <= 50, stats
    # Every ping was answered: its message and its edit reached the sandbox.
    assert stats["rest_requests"] >= 2 * BURST
