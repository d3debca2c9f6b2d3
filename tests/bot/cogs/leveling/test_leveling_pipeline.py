"""Leveling against real Postgres and Redis: awards, the flusher, dead consumers, rebuilds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import redis.asyncio as aioredis
from discord.utils import time_snowflake
from waits import until

from bot.chat_light_path import Chat
from bot.cogs.leveling import store
from bot.cogs.leveling.flusher import Flusher, stream_group
from bot.cogs.leveling.rebuild import rebuild
from bot.cogs.leveling.service import LevelingService
from bot.cogs.leveling.settings import XpSettings
from ipc.client import Keys
from ipc.leaderboard import PERIODS, Award, Leaderboard, Profile, period_end

NOW = datetime.now(UTC)


def chat(n: int, user: int, name: str = "ann") -> Chat:
    """Message n of a test, sent now in guild 1, channel 100; no avatar (the profiles the
    tests look at have none)."""
    return Chat(time_snowflake(NOW) + n, 1, 100, None, user, (), name, None, "hi")


def award(n: int, guild: int, user: int, amount: int, at: datetime = NOW) -> Award:
    return Award(f"m:{n}", guild, user, amount, at, name=f"user{user}", avatar=None)


async def pg_totals(pool: asyncpg.Pool) -> dict[tuple[int, int], int]:
    rows = await pool.fetch("SELECT guild_id, user_id, xp FROM xp_totals")
    return {(r["guild_id"], r["user_id"]): r["xp"] for r in rows}


async def boards(lb: Leaderboard, guilds: list[int]) -> dict[tuple[int | None, str], list]:
    out = {}
    for g in [*guilds, None]:
        for p in PERIODS:
            out[(g, p)] = [(e.user_id, e.score, e.rank) for e in await lb.top(g, p, limit=1000)]
    return out


async def test_the_same_batch_twice_counts_once(pool: asyncpg.Pool) -> None:
    rows = [
        Award("m:1", 1, 10, 20, NOW, "message", "ann", None),
        Award("m:2", 1, 10, 15, NOW, "message", "ann", None),
        Award("m:2", 1, 10, 15, NOW, "message", "ann", None),  # in the batch twice
        Award("m:3", 2, 10, 25, NOW, "message", "ann", None),
    ]
    async with pool.acquire() as conn, conn.transaction():
        first = await store.write_events(conn, rows)
    async with pool.acquire() as conn, conn.transaction():
        second = await store.write_events(conn, rows)
    assert (first.inserted, first.duplicates) == (3, 0)
    assert (second.inserted, second.duplicates) == (0, 3)
    assert await pg_totals(pool) == {(1, 10): 35, (2, 10): 25}
    assert await pool.fetchval("SELECT messages FROM xp_totals WHERE guild_id = 1") == 2
    assert await pool.fetchval("SELECT count(*) FROM xp_days") == 2
    assert await pool.fetchval("SELECT name FROM xp_profiles WHERE user_id = 10") == "ann"


async def test_awards_reach_postgres_and_match_the_boards(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    lb = Leaderboard(redis, keys)
    n = 0
    for guild in (1, 2):
        for user in (10, 11, 12):
            for _ in range(user - 9):
                n += 1
                assert (await lb.award(award(n, guild, user, 10 * guild))).awarded
    flusher = Flusher(pool, redis, keys, "test-a")
    await flusher.group.ensure()
    assert await flusher.drain() == n
    assert await flusher.group.lag_seconds() == 0.0
    totals = await pg_totals(pool)
    for guild in (1, 2):
        for user in (10, 11, 12):
            assert totals[(guild, user)] == await lb.score(guild, "alltime", user)
    # Global: the sum over guilds, ranked.
    top = await lb.top(None, "alltime")
    assert [(e.user_id, e.score, e.rank) for e in top] == [(12, 90, 1), (11, 60, 2), (10, 30, 3)]
    assert (await lb.rank(None, "week", 11)).rank == 2  # type: ignore[union-attr]
    assert (await lb.rank(2, "day", 10)).score == 20  # type: ignore[union-attr]
    assert await lb.count(1) == 3 and await lb.count(None, "month") == 3
    assert (await lb.profiles([10, 99])).keys() == {10}


async def test_cooldown_and_duplicates(redis: aioredis.Redis, keys: Keys) -> None:
    lb = Leaderboard(redis, keys)
    assert (await lb.award(award(1, 1, 10, 20), cooldown=60)).status == "awarded"
    assert (await lb.award(award(2, 1, 10, 20), cooldown=60)).status == "cooldown"
    # Another guild has a cooldown of its own; the same award id is a duplicate anywhere.
    assert (await lb.award(award(3, 2, 10, 20), cooldown=60)).status == "awarded"
    assert (await lb.award(award(3, 2, 10, 20))).status == "duplicate"
    assert await lb.score(None, "alltime", 10) == 40
    ttl = await redis.pttl(lb.cooldown_key(1, 10))
    assert 0 < ttl <= 60_000


async def test_period_boards_expire_after_their_period(redis: aioredis.Redis, keys: Keys) -> None:
    lb = Leaderboard(redis, keys)
    await lb.award(award(1, 1, 10, 20, NOW))
    day_key = lb.board_key(1, "day", NOW)
    assert day_key.endswith(f":g:1:d{NOW:%Y%m%d}")
    end = period_end("day", NOW)
    assert end is not None
    expected = (end + timedelta(days=1)).timestamp() - datetime.now(UTC).timestamp()
    ttl = await redis.ttl(day_key)
    assert abs(ttl - expected) < 5
    assert await redis.ttl(lb.board_key(None, "week", NOW)) > 86400  # a day past the week
    assert await redis.ttl(lb.board_key(1, "alltime", NOW)) == -1  # all-time never expires
    # An award dated in a period long over counts all-time, and its period boards are gone.
    old = datetime(2020, 3, 4, 10, tzinfo=UTC)
    await lb.award(award(2, 1, 10, 5, old))
    assert await lb.score(1, "alltime", 10) == 25
    assert not await redis.exists(lb.board_key(1, "day", old))


async def test_a_dead_consumers_entries_are_claimed(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    lb = Leaderboard(redis, keys)
    for n in range(1, 31):
        await lb.award(award(n, 1, 10 + n % 3, 5))
    dead = stream_group(redis, keys, "dead-worker")
    await dead.ensure()
    taken = await dead.read(count=100, block_ms=None)  # delivered, never acknowledged
    assert len(taken) == 30
    alive = Flusher(pool, redis, keys, "alive-worker", claim_idle=0.3)
    assert await alive.drain() == 0  # nothing new; the dead one's entries are not idle yet
    assert await pg_totals(pool) == {}

    async def idle() -> bool:  # Redis's own clock: idle past claim_idle (0.3 s)
        rows = await redis.xpending_range(dead.stream, dead.group, min="-", max="+", count=100)
        return len(rows) == 30 and all(r["time_since_delivered"] >= 300 for r in rows)

    await until("the dead consumer's entries idle", idle, within=10)
    assert await alive.drain(claim=True) == 30
    assert sum((await pg_totals(pool)).values()) == 150
    summary = await redis.xpending(alive.group.stream, alive.group.group)
    assert summary["pending"] == 0
    # The dead consumer comes back and acknowledges late: nothing is counted twice.
    async with pool.acquire() as conn, conn.transaction():
        again = await store.write_events(conn, [r for r in map(_row, taken) if r])
    assert again.inserted == 0 and sum((await pg_totals(pool)).values()) == 150


def _row(entry):  # type: ignore[no-untyped-def]
    return Award.from_stream(entry.fields)


async def test_rebuild_after_wiping_our_keys_gives_the_same_ranks(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys, redis_prefix: str
) -> None:
    lb = Leaderboard(redis, keys)
    guilds = [1, 2, 3]
    n = 0
    last_week = NOW - timedelta(days=8)
    for guild in guilds:
        for user in range(10, 16):
            for _ in range((user * guild) % 4 + 1):
                n += 1
                await lb.award(award(n, guild, user, 7 + user + guild))
            n += 1
            await lb.award(award(n, guild, user, 3, last_week))  # all-time only (and month?)
    flusher = Flusher(pool, redis, keys, "w")
    await flusher.group.ensure()
    await flusher.drain()
    # Some awards are still on their way (in the stream, not in Postgres) at the rebuild.
    for user in (10, 11):
        n += 1
        await lb.award(award(n, 1, user, 100))
    assert await rebuild(pool, redis, keys) is not None  # first build: sets the marker
    before = await boards(lb, guilds)
    async for key in redis.scan_iter(match=redis_prefix + "lb:*"):
        await redis.delete(key)
    assert not await lb.is_ready() and await lb.top(None, "alltime") == []
    result = await rebuild(pool, redis, keys)
    assert result is not None and result.replayed == 2
    assert await boards(lb, guilds) == before
    assert await lb.is_ready()
    # The pending two reach Postgres; the next rebuild doesn't count them twice.
    await flusher.drain()
    await rebuild(pool, redis, keys)
    assert await boards(lb, guilds) == before
    assert sum((await pg_totals(pool)).values()) == sum(s for _, s, _ in before[(None, "alltime")])


async def test_rebuild_replays_awards_that_arrive_during_it(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    lb = Leaderboard(redis, keys)
    for n in range(1, 21):
        await lb.award(award(n, 1, 10 + n % 4, 10))
    flusher = Flusher(pool, redis, keys, "w")
    await flusher.group.ensure()
    await flusher.drain()
    expected = 200
    late = 0

    async def known_slowly(ids: list[str]) -> set[str]:
        # While the rebuild checks the stream, more awards arrive and some are flushed.
        nonlocal late
        for n in range(100 + late, 105 + late):
            await lb.award(award(n, 1, 10, 5))
        late += 5
        await flusher.drain()
        async with pool.acquire() as conn:
            return await store.known_awards(conn, ids)

    # Drive Leaderboard.rebuild directly with a snapshot taken before those arrivals.
    token = await lb.acquire_rebuild_lock()
    assert token is not None
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        snap = await store.snapshot(conn, NOW - timedelta(days=40), NOW - timedelta(days=8), NOW)
        scores = {(1, "alltime"): {u: float(x) for _, u, x in snap.alltime}}
        await lb.rebuild(token, scores, known_slowly, when=NOW)
    expected += late * 5
    assert sum(e.score for e in await lb.top(1, "alltime", limit=100)) == expected
    await flusher.drain()
    assert sum((await pg_totals(pool)).values()) == expected


async def test_only_one_process_rebuilds_at_once(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    lb = Leaderboard(redis, keys)
    token = await lb.acquire_rebuild_lock()
    assert token is not None
    assert await rebuild(pool, redis, keys) is None
    await lb.release_rebuild_lock(token)
    assert await rebuild(pool, redis, keys) is not None


async def test_level_up_is_announced_once_and_survives_a_wipe(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys, redis_prefix: str
) -> None:
    svc = LevelingService(pool, redis, keys)
    await rebuild(pool, redis, keys)
    settings = XpSettings(1, min_xp=30, max_xp=30, cooldown=0)
    flusher = Flusher(pool, redis, keys, "w")
    await flusher.group.ensure()

    def msg(n: int) -> Chat:
        return chat(n, 10)

    levels = []
    for n in range(1, 5):  # 30, 60, 90, 120: level 1 at the fourth
        out = await svc.award_message(msg(n), settings)
        levels.append(out.level_up)
    assert levels == [None, None, None, 1]
    assert [a.key for a in (await svc.award_message(msg(5), settings)).achievements] == []
    await flusher.drain()
    # Redis is wiped: the next award's total from Redis is just 30, which must not look like
    # a level-up, nor lose the level: the Postgres total stands in until the rebuild.
    async for key in redis.scan_iter(match=redis_prefix + "*"):
        await redis.delete(key)
    await flusher.group.ensure()
    out = await svc.award_message(msg(6), settings)
    assert out.status == "awarded" and out.total == 180 and out.level_up is None
    if svc._rebuild_task is not None:
        await asyncio.wait([svc._rebuild_task])
    assert await svc.board.is_ready()
    assert await svc.board.score(1, "alltime", 10) == 180
    out = await svc.award_message(msg(7), settings)  # 210
    out = await svc.award_message(msg(8), settings)  # 240
    out = await svc.award_message(msg(9), settings)  # 270: level 2 (255)
    assert out.level_up == 2
    await svc.stop()


async def test_achievements_unlock_once(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    svc = LevelingService(pool, redis, keys)
    settings = XpSettings(1, cooldown=0)
    out = await svc.award_message(chat(1, 10), settings)
    assert [a.key for a in out.achievements] == ["first_message"]
    other = LevelingService(pool, redis, keys)  # another worker, with an empty cache
    out = await other.award_message(chat(2, 10), settings)
    assert out.achievements == []
    svc.achievements.command_counts.linger = 0  # one command at a time: none to gather
    for _ in range(9):
        got = await svc.achievements.command_done(1, 10)
    assert got == []
    assert [a.key for a in await svc.achievements.command_done(1, 10)] == ["commands_10"]
    assert [a.key for a in await svc.achievements.dice_rolled(1, 10, 9)] == []
    assert [a.key for a in await svc.achievements.dice_rolled(1, 10, 12)] == ["roll_10_successes"]
    assert await svc.achievements.dice_rolled(1, 10, 15) == []
    # Streaks come from the active days in Postgres.
    today = NOW.date()
    await pool.executemany(
        "INSERT INTO xp_days VALUES (1, 20, $1)", [(today - timedelta(days=i),) for i in (1, 2)]
    )
    out = await svc.award_message(chat(3, 20), settings)
    assert {a.key for a in out.achievements} == {"first_message", "streak_3"}
    assert await pool.fetchval("SELECT count(*) FROM achievements") == 5


async def test_commands_finishing_together_are_counted_in_one_statement(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    svc = LevelingService(pool, redis, keys)
    got = await asyncio.gather(
        *[svc.achievements.command_done(1, 30) for _ in range(12)],
        *[svc.achievements.command_done(1, 31) for _ in range(3)],
    )
    assert svc.achievements.command_counts.calls == 1
    assert (
        await pool.fetchval("SELECT commands FROM xp_totals WHERE guild_id = 1 AND user_id = 30")
        == 12
    )
    assert (
        await pool.fetchval("SELECT commands FROM xp_totals WHERE guild_id = 1 AND user_id = 31")
        == 3
    )
    # Every call of the batch sees the count after all of them: the 10-command achievement is
    # announced by exactly one of member 30's calls, and none of member 31's.
    assert sum(a.key == "commands_10" for unlocked in got[:12] for a in unlocked) == 1
    assert all(unlocked == [] for unlocked in got[12:])
    assert [a.key for a in await svc.achievements.command_done(1, 31)] == []  # 4: nothing new


async def test_a_graceful_stop_writes_everything_first(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    lb = Leaderboard(redis, keys)
    flusher = Flusher(pool, redis, keys, "stopping")
    await flusher.start()
    for n in range(1, 201):
        await lb.award(award(n, 1, 10 + n % 5, 3))
    # Stopped at once (as cog_unload does on SIGTERM): the loop may be mid-read or mid-batch.
    await asyncio.wait_for(flusher.stop(), 30)
    assert sum((await pg_totals(pool)).values()) == 600
    assert await flusher.group.lag_seconds() == 0.0
    await flusher.stop()  # a second stop is harmless


async def test_stop_right_after_start_returns(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    for _ in range(3):
        flusher = Flusher(pool, redis, keys, "brief")
        await flusher.start()
        await asyncio.wait_for(flusher.stop(), 10)


async def test_a_profile_travels_only_when_it_changed(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    """Chat carries the author's name and avatar; the award sends them only when they differ
    from what this worker last sent with a counted award, and a refused award sends nothing."""
    svc = LevelingService(pool, redis, keys)
    await rebuild(pool, redis, keys)
    free, slow = XpSettings(1, cooldown=0), XpSettings(1, cooldown=60)
    stream = keys("xp", "stream")

    async def say(n: int, name: str, settings: XpSettings = free) -> bytes:
        await svc.award_message(chat(n, 10, name), settings)
        ((_, fields),) = await redis.xrevrange(stream, count=1)
        return bytes(fields[b"p"])

    assert b"ann" in await say(1, "ann")
    assert await say(2, "ann") == b""  # unchanged: not sent again
    assert b"annie" in await say(3, "annie")  # renamed: sent at once
    assert await svc.board.profiles([10]) == {10: Profile("annie", None)}
    await say(4, "anna", slow)  # counted, starts a cooldown
    await say(5, "anya", slow)  # refused: nothing written, so "anya" is still news
    assert b"anya" in await say(6, "anya")
    await svc.stop()
