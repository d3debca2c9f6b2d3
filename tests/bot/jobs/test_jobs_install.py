"""The worker's one job runner, as features reach it: `jobs.install` from `cog_load` starts it,
the kinds of several features share it, the last `jobs.uninstall` (as at a worker's close, when
every cog unloads) stops it and gives back what it held; a REST-only bot runs no jobs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis.asyncio as aioredis

from bot import jobs
from ipc.client import Keys

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@dataclass
class Config:
    cluster_id: int = 3
    shard_count: int = 1
    shard_ids: tuple[int, ...] = (0,)


@dataclass(eq=False)
class FakeBot:
    """What bot.jobs reads of a Guildhouse."""

    pool: asyncpg.Pool
    redis: aioredis.Redis
    keys: Keys
    rest_only: bool = False
    accepting: bool = True
    config: Config = field(default_factory=Config)


async def test_features_share_the_worker_s_runner_until_the_last_leaves(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    bot = FakeBot(pool, redis, keys)
    ran: list[str] = []
    noted = asyncio.Event()
    held = asyncio.Event()

    async def note(run: jobs.Run) -> None:
        ran.append(run.job.key)
        noted.set()

    async def hold(run: jobs.Run) -> None:
        held.set()
        await asyncio.Event().wait()

    runner = await jobs.install(bot, jobs.Kind("test.a", note))  # type: ignore[arg-type]
    assert await jobs.install(bot, jobs.Kind("test.b", hold)) is runner  # type: ignore[arg-type]
    assert runner.started and runner.worker.startswith("c3:")
    now = datetime.now(UTC)
    await runner.schedule("test.a", "one", now - timedelta(seconds=1))
    await runner.schedule("test.b", "stuck", now - timedelta(seconds=1))
    await noted.wait()
    await held.wait()
    assert ran == ["one"]
    await jobs.uninstall(bot, "test.a")  # type: ignore[arg-type]
    assert runner.started  # test.b is still installed
    await jobs.uninstall(bot, "test.b", grace=0.1)  # type: ignore[arg-type]
    assert not runner.started
    # The stuck job was given back at the stop: claimable now, not after its 60 s lease.
    row = await pool.fetchrow(
        "SELECT state, lease_until <= now() AS free FROM jobs WHERE key = 'stuck'"
    )
    assert (row["state"], row["free"]) == ("running", True)


async def test_a_rest_only_bot_runs_no_jobs(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    bot = FakeBot(pool, redis, keys, rest_only=True)
    runner = await jobs.install(bot, jobs.Kind("test.a", lambda run: asyncio.sleep(0)))  # type: ignore[arg-type]
    assert not runner.started
    await jobs.store.schedule(pool, "test.a", "x", datetime.now(UTC) - timedelta(seconds=1))
    await jobs.uninstall(bot, "test.a")  # type: ignore[arg-type]
    assert await pool.fetchval("SELECT state FROM jobs") == "pending"
