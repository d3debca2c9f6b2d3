"""The per-guild cache (bot/guild_cache.py) against real Redis: a load that raced a change
never caches the old value."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from bot.guild_cache import GuildCache
from ipc.client import Keys


async def test_a_load_that_raced_a_change_is_not_cached(redis: aioredis.Redis, keys: Keys) -> None:
    stored = {"value": "old"}
    release = asyncio.Event()
    loads = 0

    async def load(_: int) -> str:
        nonlocal loads
        loads += 1
        read = stored["value"]  # read before the change commits...
        if loads == 1:
            await release.wait()  # ...and returns after the change was announced
        return read

    cache: GuildCache[str] = GuildCache(redis, keys("events", "t"), load, what="test")
    await cache.start()
    try:
        slow = asyncio.create_task(cache.get(1))  # e.g. a listener reading settings
        await asyncio.sleep(0)
        stored["value"] = "new"  # the command's change commits
        await cache.announce(1)
        release.set()
        assert await slow == "old"  # that reader read before the change: fine for it
        assert cache.cached(1) is None, "the old value was cached after the change"
        assert await cache.get(1) == "new" and loads == 2
        assert cache.cached(1) == "new"
    finally:
        await cache.stop()


async def test_a_change_announced_elsewhere_drops_the_copy(
    redis: aioredis.Redis, keys: Keys, redis_url: str
) -> None:
    stored = {"value": "old"}

    async def load(_: int) -> str:
        return stored["value"]

    other = aioredis.Redis.from_url(redis_url)
    a: GuildCache[str] = GuildCache(redis, keys("events", "t"), load, what="test")
    b: GuildCache[str] = GuildCache(other, keys("events", "t"), load, what="test")
    await a.start()
    await b.start()
    try:
        assert await b.get(7) == "old"
        stored["value"] = "new"
        await a.announce(7)
        for _ in range(200):  # pub/sub delivery is asynchronous but prompt
            if b.cached(7) is None:
                break
            await asyncio.sleep(0.01)
        assert await b.get(7) == "new"
    finally:
        await a.stop()
        await b.stop()
        await other.aclose()
