"""ipc.leaderboard and ipc.stream_group with only a Redis client: the read API a web page would use,
and the stream's consumer group (claiming, trimming that never drops unacknowledged entries)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import redis.asyncio as aioredis
from waits import until

from ipc.client import Keys
from ipc.leaderboard import Award, Leaderboard, Profile
from ipc.stream_group import StreamGroup

NOW = datetime.now(UTC)


async def _fill(lb: Leaderboard, scores: dict[int, int], guild: int = 1) -> None:
    for n, (user, xp) in enumerate(scores.items()):
        await lb.award(Award(f"m:{guild}:{n}", guild, user, xp, NOW, name=f"u{user}"))


async def test_top_pages_rank_and_count(redis: aioredis.Redis, keys: Keys) -> None:
    lb = Leaderboard(redis, keys)
    scores = {100 + i: 10 * (i + 1) for i in range(25)}  # user 124 has the most
    await _fill(lb, scores)
    first = await lb.top(1, "alltime", limit=10)
    second = await lb.top(1, "alltime", offset=10, limit=10)
    last = await lb.top(1, "alltime", offset=20, limit=10)
    assert [e.rank for e in first] == list(range(1, 11))
    assert [e.user_id for e in first[:3]] == [124, 123, 122]
    assert second[0].rank == 11 and second[0].user_id == 114
    assert len(last) == 5 and last[-1].user_id == 100 and last[-1].score == 10
    assert await lb.top(1, "alltime", offset=30) == []
    assert await lb.count(1) == 25 and await lb.count(2) == 0
    r = await lb.rank(1, "week", 110)
    assert r is not None and (r.rank, r.score) == (15, 110)
    assert await lb.rank(1, "alltime", 999) is None
    assert await lb.rank(None, "day", 124) is not None  # the global boards too


async def test_profiles_for_pages(redis: aioredis.Redis, keys: Keys) -> None:
    lb = Leaderboard(redis, keys)
    await _fill(lb, {1: 10})
    await lb.set_profiles({2: Profile("Bea", "https://cdn.example/b.png")})
    got = await lb.profiles([1, 2, 3])
    assert got == {1: Profile("u1", None), 2: Profile("Bea", "https://cdn.example/b.png")}
    assert await lb.profiles([]) == {}


async def test_negative_change_leaves_the_board_at_zero(redis: aioredis.Redis, keys: Keys) -> None:
    lb = Leaderboard(redis, keys)
    await _fill(lb, {1: 30, 2: 20})
    out = await lb.award(Award("a:x", 1, 1, -30, NOW, kind="admin"))
    assert out.awarded and out.guild_total == 0
    assert [e.user_id for e in await lb.top(1)] == [2]
    assert [e.user_id for e in await lb.top(None, "month")] == [2]


async def test_trim_keeps_unacknowledged_entries(redis: aioredis.Redis, keys: Keys) -> None:
    stream = keys("s")
    for i in range(6):
        await redis.xadd(stream, {"i": str(i)})
    a = StreamGroup(redis, stream, "g", "a")
    await a.ensure()
    await a.ensure()  # idempotent
    got = await a.read(count=4, block_ms=None)
    await a.ack([e.entry_id for e in got[:2]])
    # retention=0 trims what is older than now: let the clock pass the entries' millisecond
    # (entry ids are millisecond times), or the newest acknowledged one could be "now".
    await asyncio.sleep(0.01)
    assert await a.trim(retention=0) == 2  # only the two acknowledged ones go
    assert await redis.xlen(stream) == 4
    assert await a.lag_seconds() >= 0
    assert await a.oldest_unacked() == got[2].entry_id

    async def idle() -> bool:  # Redis's own clock: idle past claim_stale's min_idle (0.1 s)
        rows = await redis.xpending_range(stream, "g", min="-", max="+", count=10)
        return len(rows) == 2 and all(r["time_since_delivered"] >= 100 for r in rows)

    await until("the two unacknowledged entries idle", idle, within=10)
    b = StreamGroup(redis, stream, "g", "b")
    claimed = await b.claim_stale(min_idle=0.1)
    assert [e.fields["i"] for e in claimed] == ["2", "3"]
    rest = await b.read(count=10, block_ms=None)
    assert [e.fields["i"] for e in rest] == ["4", "5"]
    await b.ack([e.entry_id for e in claimed + rest])
    assert await b.oldest_unacked() is None and await b.lag_seconds() == 0.0


async def test_a_wiped_group_comes_back(redis: aioredis.Redis, keys: Keys) -> None:
    stream = keys("s")
    g = StreamGroup(redis, stream, "g", "a")
    await g.ensure()
    await redis.delete(stream)
    await redis.xadd(stream, {"i": "1"})
    got = await g.read(count=10, block_ms=None)  # NOGROUP: created again from the start
    assert [e.fields["i"] for e in got] == ["1"]


async def test_an_award_reaches_the_stream_as_sent(redis: aioredis.Redis, keys: Keys) -> None:
    """The awards travel to the script as JSON: snowflakes above 2**53 (where a JSON number
    would lose digits), a profile with quotes and non-ASCII, and several awards in one call
    (the later one on cooldown) come back from the stream and the boards unchanged."""
    lb = Leaderboard(redis, keys)
    guild, user = 1_300_000_000_000_000_001, 1_234_567_890_123_456_789
    at = datetime(2026, 12, 4, 12, 0, 0, 123000, tzinfo=UTC)
    first = Award("m:9007199254740993", guild, user, 7, at, name='Zoë "the" 🐉', avatar="x")
    again = Award("m:9007199254740995", guild, user, 5, at)
    outcomes = await lb.award_many([(first, 60.0), (again, 60.0)])
    assert [o.status for o in outcomes] == ["awarded", "cooldown"]
    assert outcomes[0].guild_total == 7
    group = StreamGroup(redis, lb.stream, "check", "c1")
    await group.ensure()
    (entry,) = await group.read(block_ms=None)
    assert Award.from_stream(entry.fields) == first
    assert [e.user_id for e in await lb.top(guild)] == [user]
    assert await lb.profiles([user]) == {user: Profile('Zoë "the" 🐉', "x")}
