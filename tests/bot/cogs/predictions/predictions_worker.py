"""A separate process for the predictions invariant tests (not a test module).

python predictions_worker.py bet DSN GUILD PREDICTION USER PROC COUNT
    COUNT concurrent bets, keys PROC-i, amounts from a seeded generator; prints one JSON
    line {"placed": [amount...], "refused": n}
python predictions_worker.py pay DSN PREDICTION
    pays a `resolving` prediction and stops in the middle of the payout's transaction
    (after the ledger post): prints PAUSED and waits to be killed
"""

from __future__ import annotations

import asyncio
import random
import sys

import asyncpg
import orjson

from bot.cogs.predictions import settle, store
from bot.points.ledger import InsufficientPoints
from bot.points.settings import PointsSettings


async def bets(dsn: str, *, guild: int, prediction: int, user: int, proc: int, count: int) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=8)
    settings = PointsSettings(guild, max_stake=10**9)
    rng = random.Random(proc)
    amounts = [rng.randint(1, 200) for _ in range(count)]
    placed: list[int] = []
    refused = 0

    async def one(i: int) -> None:
        nonlocal refused
        try:
            done = await store.bet(
                pool,
                settings,
                prediction_id=prediction,
                user_id=user,
                option=0,
                amount=amounts[i],
                key=f"{proc}-{i}",
            )
            assert done.applied
            placed.append(amounts[i])
        except InsufficientPoints:
            refused += 1

    await asyncio.gather(*(one(i) for i in range(count)))
    await pool.close()
    print(orjson.dumps({"placed": placed, "refused": refused}).decode(), flush=True)


async def pay(dsn: str, prediction: int) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)

    async def hook(step: str) -> None:
        if step == "posted":
            print("PAUSED", flush=True)
            await asyncio.Event().wait()  # until SIGKILL

    await settle.pay(pool, prediction, hook=hook)


def main() -> None:
    mode, dsn, *rest = sys.argv[1:]
    if mode == "bet":
        g, p, u, proc, n = (int(x) for x in rest)
        asyncio.run(bets(dsn, guild=g, prediction=p, user=u, proc=proc, count=n))
    else:
        asyncio.run(pay(dsn, int(rest[0])))


if __name__ == "__main__":
    main()
