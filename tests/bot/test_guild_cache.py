"""The per-guild cache (bot/guild_cache.py) against real Redis: a load that raced a change
never caches the old value."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
import pytest
import redis.asyncio as aioredis
from waits import until

from bot import outages
from bot.guild_cache import GuildCache
from bot.guild_settings import GuildSettings, GuildSettingsStore
from ipc.client import Keys


def past_ttl(cache: GuildCache[str], guild_id: int) -> None:
    """Age a cached entry past the cache's ttl (rather than wait that long)."""
    value, _ = cache._entries[guild_id]
    cache._entries[guild_id] = (value, time.monotonic() - cache.ttl)


async def reload_done(cache: GuildCache[str], guild_id: int) -> None:
    """Wait for the background reload of a guild's entry to end, however it ends."""
    running = cache._loading.get(guild_id)
    if running is not None:
        await asyncio.wait([running[1]], timeout=5)
    await asyncio.sleep(0)  # its done-callback


async def test_a_load_that_raced_a_change_is_not_cached(redis: aioredis.Redis, keys: Keys) -> None:
    stored = {"value": "old"}
    release = asyncio.Event()
    reading = asyncio.Event()
    loads = 0

    async def load(_: int) -> str:
        nonlocal loads
        loads += 1
        read = stored["value"]  # read before the change commits...
        if loads == 1:
            reading.set()
            await release.wait()  # ...and returns after the change was announced
        return read

    cache: GuildCache[str] = GuildCache(redis, keys("events", "t"), load, what="test")
    await cache.start()
    try:
        slow = asyncio.create_task(cache.get(1))  # e.g. a listener reading settings
        await reading.wait()
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
        # pub/sub delivery is asynchronous but prompt
        await until("b dropped its copy", lambda: b.cached(7) is None, within=2)
        assert await b.get(7) == "new"
    finally:
        await a.stop()
        await b.stop()
        await other.aclose()


async def test_an_old_entry_is_served_while_it_is_reloaded(
    redis: aioredis.Redis, keys: Keys
) -> None:
    stored = {"value": "old"}
    reloading = asyncio.Event()
    release = asyncio.Event()
    loads = 0

    async def load(_: int) -> str:
        nonlocal loads
        loads += 1
        if loads > 1:
            reloading.set()
            await release.wait()
            if stored["value"] == "boom":
                raise OSError("database unreachable")
        return stored["value"]

    cache: GuildCache[str] = GuildCache(redis, keys("events", "t"), load, what="test", ttl=60)
    await cache.start()
    try:
        assert await cache.get(3) == "old"
        past_ttl(cache, 3)
        stored["value"] = "new"
        # Served at once, without waiting for the reload it starts; asking again doesn't start
        # a second one.
        assert await asyncio.wait_for(cache.get(3), 1) == "old"
        assert cache.cached(3) == "old"
        await asyncio.wait_for(reloading.wait(), 1)
        release.set()
        await reload_done(cache, 3)
        assert cache.cached(3) == "new" and loads == 2

        # A reload that fails leaves the value in use; the next use after the ttl tries again.
        release.clear()
        reloading.clear()
        stored["value"] = "boom"
        past_ttl(cache, 3)
        assert await cache.get(3) == "new"
        await asyncio.wait_for(reloading.wait(), 1)
        release.set()
        await reload_done(cache, 3)
        assert await cache.get(3) == "new" and loads >= 3
    finally:
        await cache.stop()


async def test_callers_missing_one_guild_at_once_share_one_load(
    redis: aioredis.Redis, keys: Keys
) -> None:
    release = asyncio.Event()
    began: asyncio.Queue[int] = asyncio.Queue()
    loads = 0

    async def load(guild_id: int) -> str:
        nonlocal loads
        loads += 1
        this = loads
        began.put_nowait(this)
        await release.wait()
        return f"settings of {guild_id} #{this}"

    cache: GuildCache[str] = GuildCache(redis, keys("events", "t"), load, what="test")
    await cache.start()
    try:
        first = [asyncio.create_task(cache.get(5)) for _ in range(5)]
        # The first load begins after all five callers asked (tasks run in order).
        assert await asyncio.wait_for(began.get(), 1) == 1
        assert loads == 1
        # A change announced meanwhile: what that load reads may predate it, so a caller
        # from now on gets a load of its own. (Dropped here as an announcement does; not
        # announced, whose echo on this cache's own channel would drop load #2 as well, when
        # it arrives after that load began.)
        cache.forget(5)
        after = asyncio.create_task(cache.get(5))
        assert await asyncio.wait_for(began.get(), 1) == 2
        assert loads == 2
        release.set()
        assert [await t for t in first] == ["settings of 5 #1"] * 5
        assert await after == "settings of 5 #2"
        assert cache.cached(5) == "settings of 5 #2"
    finally:
        await cache.stop()


async def test_a_subscription_redis_py_renews_by_itself_drops_the_cache(
    redis: aioredis.Redis, keys: Keys
) -> None:
    """A dropped connection to a Redis that is up (CLIENT KILL, a proxy restart) is renewed
    inside redis-py, without an error reaching the listener: the renewal itself must drop the
    cache, since announcements made while it was away were missed."""

    async def load(_: int) -> str:
        return "value"

    cache: GuildCache[str] = GuildCache(redis, keys("events", "renewed"), load, what="test")
    await cache.start()
    try:
        assert await cache.get(3) == "value"
        assert await redis.client_kill_filter(_type="pubsub") >= 1
        # redis-py reconnects and subscribes again at once
        await until("the renewal dropped the cache", lambda: cache.cached(3) is None, within=5)
    finally:
        await cache.stop()


async def test_while_postgres_is_unreachable_an_unloaded_guild_gets_the_fallback(
    redis: aioredis.Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    down = True

    async def load(guild_id: int) -> str:
        if down:
            raise asyncpg.CannotConnectNowError("the database system is starting up")
        return f"stored {guild_id}"

    with_fallback: GuildCache[str] = GuildCache(
        redis, keys("events", "f"), load, what="test", fallback=lambda g: f"default {g}"
    )
    without: GuildCache[str] = GuildCache(redis, keys("events", "f"), load, what="test")
    # The bot's guild settings: a guild whose settings can't be read gets the defaults.
    store = GuildSettingsStore(None, redis, keys)  # type: ignore[arg-type]
    assert store.cache._fallback is not None
    assert store.cache._fallback(5) == GuildSettings(5)
    await with_fallback.start()
    try:
        assert await with_fallback.get(4) == "default 4"
        assert with_fallback.cached(4) is None  # not kept: the real value is loaded later
        with pytest.raises(asyncpg.CannotConnectNowError):
            await without.get(4)  # a cache without a fallback lets its caller decide
        down = False
        assert await with_fallback.get(4) == "stored 4"
    finally:
        await with_fallback.stop()
        outages.postgres.reachable()
    assert not [r for r in caplog.records if r.name == "bot.guild_cache"]


async def test_a_reload_an_outage_failed_is_not_retried_on_every_use_nor_logged_each_time(
    redis: aioredis.Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """While PostgreSQL is down, a guild's value past its ttl is served as it is; the reload
    that failed is tried again after RELOAD_RETRY, not by every message meanwhile, and the
    outage is logged once for the worker (bot/outages.py), not once per failed reload."""
    caplog.set_level(logging.INFO)
    outages.postgres.reachable()
    failed = asyncio.Event()
    loads = 0

    async def load(_: int) -> str:
        nonlocal loads
        loads += 1
        if loads > 1:
            failed.set()
            raise asyncpg.ConnectionDoesNotExistError("connection was closed")
        return "old"

    cache: GuildCache[str] = GuildCache(redis, keys("events", "r"), load, what="test", ttl=60)
    await cache.start()
    try:
        assert await cache.get(9) == "old"
        cache._entries[9] = ("old", time.monotonic() - 60)  # past its ttl: reloaded on use
        assert await cache.get(9) == "old"  # served at once; the reload fails meanwhile
        await failed.wait()
        await reload_done(cache, 9)  # the failed reload, and its done-callback
        for _ in range(20):  # messages keep coming during the outage
            assert await cache.get(9) == "old"
            assert cache.cached(9) == "old"
            assert 9 not in cache._loading  # no reload started by them
        assert loads == 2
    finally:
        await cache.stop()
        outages.postgres.reachable()
    assert not [r for r in caplog.records if r.name == "bot.guild_cache"]
    assert [r.levelname for r in caplog.records if r.name == "bot.outages"] == ["WARNING", "INFO"]
