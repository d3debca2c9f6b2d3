"""Aliases resolve from each worker's cache, and a change made on one worker reaches the
others' caches over Redis (two Aliases cogs standing for two clusters' workers)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from waits import until

from bot.cogs.aliases import store
from bot.cogs.aliases.cog import Aliases
from bot.cogs.aliases.rules import MAX_MEMBER, SERVER
from ipc.client import Keys

pytestmark = pytest.mark.integration

G = 7171


def _worker(pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys) -> Aliases:
    bot: Any = SimpleNamespace(pool=pool, redis=redis, keys=keys, rest_only=False)
    return Aliases(bot)


async def test_a_change_on_one_worker_reaches_the_other(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    one, two = _worker(pool, redis, keys), _worker(pool, redis, keys)
    await one.cog_load()
    await two.cog_load()
    try:
        assert (await two.cache.get(G)).find(7, "dodge") is None  # cached: none
        done = await store.add(pool, G, 7, "dodge", "roll 6! tn4", created_by=7, limit=MAX_MEMBER)
        assert done == "added"
        await one.cache.announce(G)

        async def seen() -> bool:
            cached = two.cache.cached(G)
            return cached is None or cached.find(7, "dodge") is not None

        await until("the other worker dropped its copy", seen, within=10)
        assert (await two.cache.get(G)).find(7, "dodge") == "roll 6! tn4"
        # Cached: resolving again costs nothing (the row removed behind its back is still
        # served until an announcement says otherwise).
        await pool.execute("DELETE FROM aliases WHERE guild_id = $1", G)
        assert (await two.cache.get(G)).find(7, "dodge") == "roll 6! tn4"
    finally:
        await one.cog_unload()
        await two.cog_unload()


async def test_the_count_limit(pool: asyncpg.Pool) -> None:
    for i in range(3):
        assert await store.add(pool, G, SERVER, f"a{i}", "roll 1", created_by=1, limit=3)
    assert await store.add(pool, G, SERVER, "a3", "roll 1", created_by=1, limit=3) is None
    assert await store.add(pool, G, SERVER, "a0", "roll 2", created_by=1, limit=3) == "replaced"
    assert await store.remove(pool, G, SERVER, "a1")
    assert not await store.remove(pool, G, SERVER, "a1")
    assert await store.add(pool, G, SERVER, "a3", "roll 1", created_by=1, limit=3) == "added"
    loaded = await store.load(pool, G)
    assert loaded.server == {"a0": "roll 2", "a2": "roll 1", "a3": "roll 1"}
