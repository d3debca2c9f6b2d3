"""Close on time and the automatic refund as jobs of the shared scheduler: with two runners (two
clusters) racing, and again with new runners (a restart), each prediction is closed once and
refunded once, with the clock injected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from bot import jobs
from bot.cogs.predictions import store
from bot.cogs.predictions.timing import Timing, schedule_close
from bot.points import ledger
from bot.points.settings import PointsSettings

pytestmark = pytest.mark.integration

G = 4242


@pytest.fixture
async def jpool(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """The shared `pool` (tests/conftest.py; it has the bot's JSON codecs, for job
    payloads), and the ledger's invariants checked after every test."""
    yield pool
    assert await ledger.check(pool) == []


class Told:
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    async def closed(self, p: store.Prediction) -> None:
        self.events.append(("closed", p.id))

    async def announce(self, prediction_id: int) -> None:
        self.events.append(("settled", prediction_id))


class Settings:
    async def get(self, guild_id: int) -> PointsSettings:
        return PointsSettings(guild_id, refund_hours=120)


def runners(pool: asyncpg.Pool, told: Told, now: list[datetime]) -> list[jobs.JobRunner]:
    async def notify() -> None:
        return None

    timing = Timing(told, Settings(), notify)  # type: ignore[arg-type]
    out = []
    for name in ("c0", "c1"):
        r = jobs.JobRunner(
            pool, worker=name, shard_count=1, shard_ids=[0], cluster=name, clock=lambda: now[0]
        )
        for kind in timing.kinds():
            r.register(kind)
        out.append(r)
    return out


async def rounds(rs: list[jobs.JobRunner], n: int = 3) -> None:
    import asyncio

    for _ in range(n):
        await asyncio.gather(*(r.run_due() for r in rs))
        await asyncio.gather(*(r.idle() for r in rs))


async def test_close_and_refund_once_with_two_runners_and_a_restart(jpool: asyncpg.Pool) -> None:
    async with jpool.acquire() as conn, conn.transaction():
        await ledger.post(
            conn,
            guild_id=G,
            key="grant",
            kind="admin_give",
            entries={ledger.MINT: -1000, ledger.member(1): 1000},
        )
        made = []
        for i in range(4):
            p = await store.create(
                conn,
                guild_id=G,
                channel_id=1,
                creator_id=1,
                question=f"q{i}",
                options=["a", "b"],
                category=None,
                window_seconds=60,
            )
            await schedule_close(conn, p)
            made.append(p)
    settings = PointsSettings(G)
    for p in made:
        await store.bet(
            jpool, settings, prediction_id=p.id, user_id=1, option=0, amount=25, key=str(p.id)
        )
    told = Told()
    now = [datetime.now(UTC)]
    rs = runners(jpool, told, now)
    await rounds(rs)
    assert told.events == []  # not due yet
    now[0] += timedelta(minutes=2)  # the window is over
    await rounds(rs)
    assert sorted(told.events) == sorted(("closed", p.id) for p in made)
    statuses = {r["status"] for r in await jpool.fetch("SELECT status FROM predictions")}
    assert statuses == {"closed"}
    # a restart: new runners; 121 hours on, the refunds are due
    told.events.clear()
    rs = runners(jpool, told, now)
    now[0] += timedelta(hours=121)
    await rounds(rs)
    assert sorted(told.events) == sorted(("settled", p.id) for p in made)
    assert await ledger.balance(jpool, G, ledger.member(1)) == 1000
    assert await jpool.fetchval("SELECT count(*) FROM points_tx WHERE kind = 'refund'") == 4
    done: Any = await jpool.fetch("SELECT kind, state FROM jobs WHERE kind LIKE 'predictions.%'")
    assert {(r["kind"], r["state"]) for r in done} == {
        ("predictions.close", "done"),
        ("predictions.refund", "done"),
    }
    assert len(done) == 8
