"""Leaderboards: XP awards counted per second, `rank` lookup p99 on a board of 1,000,000
members, and the flush to PostgreSQL in rows per second, each against the straightforward way
in the same run.

- awards: `Leaderboard.award_many` (the production path: cooldown, duplicate check, stream,
  eight boards), in the batches the worker sends, against one plain `ZINCRBY` per award, awaited
  one after another (what a bot author would write);
- rank: `Leaderboard.rank` (ZREVRANK and ZSCORE in one pipeline) against a raw `ZREVRANK`;
- flush: the flusher's batch statement (`store.write_events`: events, totals and active days in
  one statement per 500 awards) against an `INSERT` per award with an `UPDATE` of the total.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis

from bench import interrupt
from bench.common import backing, percentile
from ipc.client import Keys
from ipc.leaderboard import Award, Leaderboard

BATCH = 100


def _awards(n: int, start: int, users: int) -> list[tuple[Award, float]]:
    now = datetime.now(UTC)
    rng = random.Random(start)
    return [
        (Award(f"m:{start + i}", 1 + i % 20, rng.randrange(users), 15 + i % 11, now), 0.0)
        for i in range(n)
    ]


async def awards(redis: aioredis.Redis, prefix: str, n: int) -> dict[str, Any]:
    board = Leaderboard(redis, Keys(prefix + "a:"))
    items = _awards(n, 0, 50_000)
    started = time.perf_counter()
    for i in range(0, n, BATCH):
        await board.award_many(items[i : i + BATCH])
    ours = n / (time.perf_counter() - started)
    key = prefix + "plain"
    started = time.perf_counter()
    for award, _ in items:
        await redis.zincrby(key, award.amount, str(award.user_id))
    plain = n / (time.perf_counter() - started)
    return {
        "awards": n,
        "guildhouse_per_s": round(ours),
        "zincrby_per_s": round(plain),
        "ratio": round(ours / plain, 2),
    }


async def rank(redis: aioredis.Redis, prefix: str, members: int, lookups: int) -> dict[str, Any]:
    keys = Keys(prefix + "r:")
    board = Leaderboard(redis, keys)
    key = board.board_key(None, "alltime")
    rng = random.Random(7)
    async with redis.pipeline(transaction=False) as pipe:
        for start in range(0, members, 10_000):
            pipe.zadd(key, {str(u): rng.randrange(10**7) for u in range(start, start + 10_000)})
            await pipe.execute()
    users = [rng.randrange(members) for _ in range(lookups)]
    ours, raw = [], []
    for u in users:  # interleaved, so both see the same machine
        t = time.perf_counter()
        await board.rank(None, "alltime", u)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        await redis.zrevrank(key, str(u))
        raw.append(time.perf_counter() - t)

    def ms(values: list[float], q: float) -> float:
        return round(percentile(values, q) * 1000, 3)

    return {
        "members": members,
        "lookups": lookups,
        "rank_p50_ms": ms(ours, 0.5),
        "rank_p99_ms": ms(ours, 0.99),
        "zrevrank_p50_ms": ms(raw, 0.5),
        "zrevrank_p99_ms": ms(raw, 0.99),
        "p99_ratio": round(percentile(ours, 0.99) / percentile(raw, 0.99), 2),
    }


async def flush(database_url: str, rows: int) -> dict[str, Any]:
    from bot.cogs.leveling import store
    from bot.db.pool import create_pool
    from bot.entry import apply_migrations

    await apply_migrations(database_url)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        now = datetime.now(UTC)
        events = [Award(f"f:{i}", 1 + i % 20, i % 5000, 20, now) for i in range(rows)]
        started = time.perf_counter()
        for i in range(0, rows, 500):
            async with pool.acquire() as conn, conn.transaction():
                await store.write_events(conn, events[i : i + 500])
        ours = rows / (time.perf_counter() - started)
        started = time.perf_counter()
        async with pool.acquire() as conn:
            for e in events:
                async with conn.transaction():
                    inserted = await conn.execute(
                        "INSERT INTO xp_events (award_id, guild_id, user_id, amount, kind,"
                        " created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                        "p" + e.award_id,
                        e.guild_id,
                        e.user_id,
                        e.amount,
                        e.kind,
                        e.at,
                    )
                    if inserted.endswith(" 1"):
                        await conn.execute(
                            "UPDATE xp_totals SET xp = xp + $3 WHERE guild_id = $1"
                            " AND user_id = $2",
                            e.guild_id,
                            e.user_id,
                            e.amount,
                        )
        plain = rows / (time.perf_counter() - started)
        return {
            "rows": rows,
            "guildhouse_rows_per_s": round(ours),
            "row_by_row_per_s": round(plain),
            "ratio": round(ours / plain, 1),
        }
    finally:
        await pool.close()


async def run(n_awards: int, members: int, lookups: int, rows: int) -> dict[str, Any]:
    with backing() as urls:
        redis = aioredis.Redis.from_url(urls["redis_url"])
        prefix = f"bench:lb:{secrets.token_hex(4)}:"
        try:
            out: dict[str, Any] = {"bench": "leaderboard"}
            out["awards"] = await awards(redis, prefix, n_awards)
            out["rank"] = await rank(redis, prefix, members, lookups)
            out["flush"] = await flush(urls["database_url"], rows)
            return out
        finally:
            async for key in redis.scan_iter(match=prefix + "*", count=1000):
                await redis.delete(key)
            await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--awards", type=int, default=20_000, help="awards to count")
    parser.add_argument("--members", type=int, default=1_000_000, help="members on the board")
    parser.add_argument("--lookups", type=int, default=2_000, help="rank lookups")
    parser.add_argument("--rows", type=int, default=20_000, help="rows to flush")
    args = parser.parse_args()
    if min(args.awards, args.members, args.lookups, args.rows) < 1:
        parser.error("every count must be at least 1")
    result = asyncio.run(run(args.awards, args.members, args.lookups, args.rows))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    interrupt.main(main)
