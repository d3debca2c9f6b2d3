"""Bets per second with the points ledger, and each bet's p50/p99, against a naive balance
UPDATE in the same run, on one prediction that every bet goes to.

- ledger: `predictions.store.bet`, the production path a bet form's submission takes: the
  prediction's row FOR SHARE, the ledger transaction (its key, two entries, both balances, the
  CHECK that stops an overdraft, the deferred check that it balances), the member's stake, and
  the prediction's totals read back for the confirmation;
- naive: what a bot author might write: in one transaction, `UPDATE balances SET balance =
  balance - $amount WHERE user = $user AND balance >= $amount` and the pool's total added to; no
  idempotency key, no ledger, no stake row, no totals read back.

Both run the same bets (members, amounts) with the same number of concurrent callers, in
alternating rounds so both see the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

import orjson

from bench import interrupt
from bench.common import backing, percentile

GUILD = 1


async def setup(database_url: str, members: int) -> Any:
    from bot.cogs.predictions import store
    from bot.db.pool import create_pool
    from bot.entry import apply_migrations
    from bot.points import ledger

    await apply_migrations(database_url)
    pool = await create_pool(database_url, min_size=4, max_size=40)
    async with pool.acquire() as conn, conn.transaction():
        users = [ledger.member(u) for u in range(members)]
        await ledger.post(
            conn,
            guild_id=GUILD,
            key=f"bench:grant:{time.time_ns()}",
            kind="admin_give",
            entries={ledger.MINT: -(10**9) * members, **dict.fromkeys(users, 10**9)},
        )
        prediction = await store.create(
            conn,
            guild_id=GUILD,
            channel_id=1,
            creator_id=1,
            question="bench",
            options=["a", "b", "c"],
            category=None,
            window_seconds=24 * 3600,
        )
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_balances (user_id BIGINT PRIMARY KEY, "
            "balance BIGINT NOT NULL)"
        )
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_pool (id INT PRIMARY KEY, total BIGINT)"
        )
        await conn.execute(
            "INSERT INTO bench_balances SELECT g, 1000000000 FROM generate_series(0, $1) g "
            "ON CONFLICT DO NOTHING",
            members,
        )
        await conn.execute("INSERT INTO bench_pool VALUES (1, 0) ON CONFLICT DO NOTHING")
    return pool, prediction.id


async def ledger_bet(pool: Any, prediction: int, bet: tuple[int, int, int, str]) -> None:
    from bot.cogs.predictions import store
    from bot.points.settings import PointsSettings

    user, option, amount, key = bet
    settings = PointsSettings(GUILD, max_stake=10**12, allow_switch=True)
    await store.bet(
        pool,
        settings,
        prediction_id=prediction,
        user_id=user,
        option=option,
        amount=amount,
        key=key,
    )


async def naive_bet(pool: Any, _: int, bet: tuple[int, int, int, str]) -> None:
    user, _option, amount, _key = bet
    async with pool.acquire() as conn, conn.transaction():
        done = await conn.execute(
            "UPDATE bench_balances SET balance = balance - $2 WHERE user_id = $1 AND balance >= $2",
            user,
            amount,
        )
        if done.endswith(" 1"):
            await conn.execute("UPDATE bench_pool SET total = total + $1 WHERE id = 1", amount)


async def round_of(
    fn: Any, pool: Any, prediction: int, bets: list[tuple[int, int, int, str]], concurrency: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = list(reversed(bets))

    async def caller() -> None:
        while queue:
            bet = queue.pop()
            t = time.perf_counter()
            await fn(pool, prediction, bet)
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


async def run(bets: int, members: int, concurrency: int, rounds: int) -> dict[str, Any]:
    rng = random.Random(27)
    planned = [(rng.randrange(members), 0, rng.randint(1, 500), f"bench:{i}") for i in range(bets)]
    with backing() as urls:
        pool, prediction = await setup(urls["database_url"], members)
        try:
            side: dict[str, tuple[float, list[float]]] = {"ledger": (0.0, []), "naive": (0.0, [])}
            per = max(1, bets // rounds)
            for start in range(0, bets, per):
                chunk = planned[start : start + per]
                for name, fn in (("ledger", ledger_bet), ("naive", naive_bet)):
                    spent, lat = await round_of(fn, pool, prediction, chunk, concurrency)
                    total, all_lat = side[name]
                    side[name] = (total + spent, all_lat + lat)
            from bot.points import ledger

            problems = await ledger.check(pool)
        finally:
            await pool.close()

    def figures(name: str) -> dict[str, float]:
        spent, lat = side[name]
        return {
            "bets_per_s": round(len(lat) / spent),
            "p50_ms": round(percentile(lat, 0.5) * 1000, 2),
            "p99_ms": round(percentile(lat, 0.99) * 1000, 2),
        }

    ours, naive = figures("ledger"), figures("naive")
    return {
        "bench": "bets",
        "ledger": ours,
        "naive_update": naive,
        "throughput_ratio": round(ours["bets_per_s"] / naive["bets_per_s"], 2),
        "p99_ratio": round(ours["p99_ms"] / naive["p99_ms"], 2),
        "ledger_invariants_ok": not problems,
        "params": {"bets": bets, "members": members, "concurrency": concurrency, "rounds": rounds},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bets", type=int, default=4000, help="bets on each side")
    parser.add_argument("--members", type=int, default=200, help="members betting")
    parser.add_argument("--concurrency", type=int, default=16, help="bets in flight at once")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds")
    args = parser.parse_args()
    if min(args.bets, args.members, args.concurrency, args.rounds) < 1:
        parser.error("every count must be at least 1")
    result = asyncio.run(run(args.bets, args.members, args.concurrency, args.rounds))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    interrupt.main(main)
