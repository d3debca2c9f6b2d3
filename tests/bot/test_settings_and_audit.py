"""Per-guild settings and the audit log against real PostgreSQL and Redis."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from waits import until

from bot import audit
from bot.guild_settings import GuildSettings, GuildSettingsStore, SettingsError, validate_prefix
from ipc.client import Keys


async def _store(pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys) -> GuildSettingsStore:
    store = GuildSettingsStore(pool, redis, keys)
    await store.start()
    return store


async def test_change_on_one_worker_is_seen_by_another(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys, redis_url: str
) -> None:
    # Two stores with their own Redis connections stand for two worker processes.
    other_redis = aioredis.Redis.from_url(redis_url)
    a = await _store(pool, redis, keys)
    b = await _store(pool, other_redis, keys)
    try:
        assert (await a.get(1)).prefix == "!" and (await b.get(1)).prefix == "!"
        new = (await a.get(1)).with_changes(prefix="?", mod_roles=frozenset({5}))
        async with pool.acquire() as conn:
            await a.save(conn, new)
        await a.announce(1)

        async def seen() -> bool:  # pub/sub delivery is asynchronous but prompt
            return (await b.get(1)).prefix == "?"

        await until("the other worker sees the change", seen, within=2)
        assert await b.get(1) == new
    finally:
        await a.stop()
        await b.stop()
        await other_redis.aclose()


async def test_settings_round_trip_through_postgres(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    store = GuildSettingsStore(pool, redis, keys)
    s = GuildSettings(
        7,
        prefix="gh.",
        mod_roles=frozenset({1, 2}),
        admin_roles=frozenset({3}),
        log_channel=99,
        disabled=frozenset({"roll"}),
    )
    async with pool.acquire() as conn:
        await store.save(conn, s)
    store.forget(7)
    assert await store.get(7) == s
    # The default prefix is stored as NULL, so a later change of the default applies.
    async with pool.acquire() as conn:
        await store.save(conn, s.with_changes(prefix="!"))
    assert await pool.fetchval("SELECT prefix FROM guilds WHERE id = 7") is None


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("", "empty"),
        ("x" * 17, "at most 16"),
        ("a b", "spaces"),
        ("/", "Discord uses"),
        ("`", "backticks"),
    ],
)
def test_prefix_validation(prefix: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        validate_prefix(prefix)
    assert validate_prefix("  ?? ") == "??"


async def test_audit_row_is_written_with_the_change(pool: asyncpg.Pool) -> None:
    async def change(conn: asyncpg.Connection) -> tuple[Any, Any]:
        await conn.execute("INSERT INTO guilds (id, prefix) VALUES (5, '?')")
        return None, {"prefix": "?"}

    entry = await audit.record_change(
        pool,
        guild_id=5,
        actor_id=10,
        action="settings.prefix",
        change=change,
        channel_id=20,
        target_id=30,
    )
    assert entry.after == {"prefix": "?"} and entry.before is None
    (row,) = await audit.recent(pool, 5)
    assert row == entry
    assert await audit.recent(pool, 5, target_id=30) == [entry]
    assert await audit.recent(pool, 5, target_id=31) == []
    assert await audit.recent(pool, 5, action="settings") == [entry]
    assert await audit.recent(pool, 5, action="xp") == []


async def test_a_failed_change_writes_no_audit_row(pool: asyncpg.Pool) -> None:
    async def change(conn: asyncpg.Connection) -> tuple[Any, Any]:
        await conn.execute("INSERT INTO guilds (id, prefix) VALUES (6, '?')")
        # Violates the prefix length check: the whole transaction must roll back.
        await conn.execute("UPDATE guilds SET prefix = $1 WHERE id = 6", "x" * 40)
        return None, None

    with pytest.raises(asyncpg.CheckViolationError):
        await audit.record_change(
            pool, guild_id=6, actor_id=10, action="settings.prefix", change=change
        )
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 0
    assert await pool.fetchval("SELECT count(*) FROM guilds WHERE id = 6") == 0


async def test_a_failed_audit_write_undoes_the_change(pool: asyncpg.Pool) -> None:
    async def change(conn: asyncpg.Connection) -> tuple[Any, Any]:
        await conn.execute("INSERT INTO guilds (id, prefix) VALUES (8, '?')")
        return None, {"unserialisable": object()}  # the audit insert will fail

    with pytest.raises(asyncpg.DataError):
        await audit.record_change(pool, guild_id=8, actor_id=10, action="x", change=change)
    assert await pool.fetchval("SELECT count(*) FROM guilds WHERE id = 8") == 0
