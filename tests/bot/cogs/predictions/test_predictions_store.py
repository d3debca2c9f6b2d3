"""Predictions against a real PostgreSQL: bets, close, resolve and pay, vote, void, auto-refund,
and the ledger's invariants after every scenario (and under 4 processes, and a SIGKILL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import orjson
import pytest
from waits import until

from bot.cogs.predictions import settle, store
from bot.cogs.predictions.clock import Clock
from bot.points import ledger
from bot.points.settings import PointsSettings

pytestmark = pytest.mark.integration

G = 1001
ROOT = Path(__file__).resolve().parents[4]
WORKER = Path(__file__).with_name("predictions_worker.py")


@pytest.fixture
async def pool(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """The shared `pool` (tests/conftest.py), and the ledger's invariants checked after
    every scenario."""
    yield pool
    assert await ledger.check(pool) == []
    c = await ledger.circulation(pool, G)
    assert c["members"] + c["pools"] == c["minted"] - c["burned"]


async def grant(pool: asyncpg.Pool, user: int, amount: int, guild: int = G) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await ledger.post(
            conn,
            guild_id=guild,
            key=f"grant:{user}:{amount}:{os.urandom(4).hex()}",
            kind="admin_give",
            entries={ledger.MINT: -amount, ledger.member(user): amount},
        )


async def new(pool: asyncpg.Pool, options: int = 2, window: int = 3600) -> store.Prediction:
    async with pool.acquire() as conn:
        return await store.create(
            conn,
            guild_id=G,
            channel_id=5,
            creator_id=9,
            question="Who wins?",
            options=[f"o{i}" for i in range(options)],
            category="games",
            window_seconds=window,
        )


async def past_close(pool: asyncpg.Pool, pid: int) -> None:
    """The injected clock: the window ended a second ago."""
    await pool.execute(
        "UPDATE predictions SET closes_at = now() - interval '1 second' WHERE id = $1", pid
    )


async def balance(pool: asyncpg.Pool, user: int) -> int:
    return await ledger.balance(pool, G, ledger.member(user))


S = PointsSettings(G)


async def test_ledger_post_is_idempotent_and_refuses_overdraft(pool: asyncpg.Pool) -> None:
    await grant(pool, 1, 50)
    async with pool.acquire() as conn, conn.transaction():
        first = await ledger.post(
            conn, guild_id=G, key="k1", kind="x", entries={ledger.member(1): -20, ledger.BURN: 20}
        )
        again = await ledger.post(
            conn, guild_id=G, key="k1", kind="x", entries={ledger.member(1): -20, ledger.BURN: 20}
        )
    assert first.applied and not again.applied and first.tx_id == again.tx_id
    assert await balance(pool, 1) == 30
    with pytest.raises(ledger.InsufficientPoints, match="can't pay 31"):
        async with pool.acquire() as conn, conn.transaction():
            await ledger.post(
                conn,
                guild_id=G,
                key="k2",
                kind="x",
                entries={ledger.member(1): -31, ledger.BURN: 31},
            )
    assert await balance(pool, 1) == 30
    with pytest.raises(ledger.Unbalanced):
        async with pool.acquire() as conn, conn.transaction():
            await ledger.post(conn, guild_id=G, key="k3", kind="x", entries={ledger.member(1): 5})


async def test_the_database_refuses_unbalanced_entries_and_negative_members(
    pool: asyncpg.Pool,
) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
        async with pool.acquire() as conn, conn.transaction():
            tx = await conn.fetchval(
                "INSERT INTO points_tx (guild_id, key, kind) VALUES ($1, 'raw', 'x') RETURNING id",
                G,
            )
            await conn.execute("INSERT INTO points_entries VALUES ($1, $2, 'u:1', 5)", tx, G)
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            "INSERT INTO points_accounts (guild_id, account, balance) VALUES ($1, 'u:2', -1)", G
        )


async def test_bet_close_resolve_pays_by_hand(pool: asyncpg.Pool) -> None:
    for user in (1, 2, 3):
        await grant(pool, user, 1000)
    p = await new(pool)
    await store.bet(pool, S, prediction_id=p.id, user_id=1, option=0, amount=100, key="a")
    await store.bet(pool, S, prediction_id=p.id, user_id=2, option=0, amount=200, key="b")
    placed = await store.bet(pool, S, prediction_id=p.id, user_id=3, option=1, amount=401, key="c")
    # the same interaction again (a retry): nothing more
    again = await store.bet(pool, S, prediction_id=p.id, user_id=3, option=1, amount=401, key="c")
    assert placed.applied and not again.applied
    assert again.pools == [300, 401] and again.balance == 599
    # adding to a bet on the same option
    await store.bet(pool, S, prediction_id=p.id, user_id=1, option=0, amount=50, key="a2")
    with pytest.raises(store.PredictionError, match="doesn't allow switching"):
        await store.bet(pool, S, prediction_id=p.id, user_id=1, option=1, amount=5, key="a3")
    await past_close(pool, p.id)
    with pytest.raises(store.PredictionError, match="closed"):
        await store.bet(pool, S, prediction_id=p.id, user_id=2, option=0, amount=5, key="late")
    closed = await settle.close_due(pool)
    assert [c.id for c in closed] == [p.id] and await settle.close_due(pool) == []
    logged = await pool.fetch(
        "SELECT before, after FROM audit_log WHERE action = 'predict.close' AND guild_id = $1", G
    )
    assert [(r["before"], r["after"]) for r in logged] == [  # the pool decodes jsonb
        ({"status": "open"}, {"id": p.id, "status": "closed"})
    ]  # one audit entry for the one close
    await settle.choose(pool, G, p.id, 0, actor_id=9)
    done = await settle.pay(pool, p.id)
    assert done is not None
    # pool 751 to stakes 150 and 200: 751*150/350 = 321.86, 751*200/350 = 429.14 -> 321 + 429
    # = 750, one point left: the larger fraction (.86, member 1) gets it.
    assert done[1] == {1: 322, 2: 429, 3: 0}
    assert await settle.pay(pool, p.id) is None
    assert [await balance(pool, u) for u in (1, 2, 3)] == [1172, 1229, 599]
    assert await ledger.balance(pool, G, ledger.pool(p.id)) == 0


async def test_switching_moves_the_stake_where_allowed(pool: asyncpg.Pool) -> None:
    await grant(pool, 1, 100)
    p = await new(pool, options=3)
    switching = S.with_changes(allow_switch=True)
    await store.bet(pool, switching, prediction_id=p.id, user_id=1, option=0, amount=10, key="a")
    placed = await store.bet(
        pool, switching, prediction_id=p.id, user_id=1, option=2, amount=5, key="b"
    )
    assert placed.pools == [0, 0, 15]


async def test_limits_per_bet_and_per_member(pool: asyncpg.Pool) -> None:
    await grant(pool, 1, 10_000)
    p = await new(pool)
    tight = S.with_changes(min_bet=10, max_bet=100, max_stake=150)
    with pytest.raises(store.PredictionError, match="from 10 to 100 points, not 5"):
        await store.bet(pool, tight, prediction_id=p.id, user_id=1, option=0, amount=5, key="a")
    await store.bet(pool, tight, prediction_id=p.id, user_id=1, option=0, amount=100, key="b")
    with pytest.raises(store.PredictionError, match="stake 160"):
        await store.bet(pool, tight, prediction_id=p.id, user_id=1, option=0, amount=60, key="c")
    assert await balance(pool, 1) == 9_900
    with pytest.raises(store.PredictionError, match="no option 3"):
        await store.bet(pool, tight, prediction_id=p.id, user_id=1, option=2, amount=10, key="d")


async def test_vote_needs_the_minimum_and_a_majority(pool: asyncpg.Pool) -> None:
    for user in (1, 2, 3):
        await grant(pool, user, 100)
    p = await new(pool)
    voting = S.with_changes(vote_enabled=True, vote_min=2)
    for user, option in ((1, 0), (2, 1), (3, 1)):
        await store.bet(
            pool, voting, prediction_id=p.id, user_id=user, option=option, amount=30, key=str(user)
        )
    with pytest.raises(store.PredictionError, match="still open"):
        await settle.vote(pool, voting, p.id, 1, 0)
    await past_close(pool, p.id)
    await settle.close_due(pool)
    with pytest.raises(store.PredictionError, match="Only members who bet"):
        await settle.vote(pool, voting, p.id, 99, 0)
    first = await settle.vote(pool, voting, p.id, 1, 0)
    assert first.counts == [1, 0] and first.decided is None  # below the minimum
    tie = await settle.vote(pool, voting, p.id, 2, 1)
    assert tie.counts == [1, 1] and tie.decided is None  # no majority
    last = await settle.vote(pool, voting, p.id, 3, 1)
    assert last.decided is not None and last.decided.winner == 1
    paid = await settle.pay(pool, p.id)
    assert paid is not None and paid[1] == {1: 0, 2: 45, 3: 45}


async def test_void_refunds_every_bet_once(pool: asyncpg.Pool) -> None:
    await grant(pool, 1, 100)
    await grant(pool, 2, 100)
    p = await new(pool)
    await store.bet(pool, S, prediction_id=p.id, user_id=1, option=0, amount=40, key="a")
    await store.bet(pool, S, prediction_id=p.id, user_id=2, option=1, amount=70, key="b")
    _, back = await settle.void(pool, G, p.id, actor_id=9)
    assert back == {1: 40, 2: 70}
    with pytest.raises(store.PredictionError, match="void already"):
        await settle.void(pool, G, p.id, actor_id=9)
    assert [await balance(pool, u) for u in (1, 2)] == [100, 100]


async def test_clocks_close_and_refund_exactly_once_also_across_a_restart(
    pool: asyncpg.Pool, migrated_dsn: str
) -> None:
    await grant(pool, 1, 1000)
    predictions = [await new(pool) for _ in range(6)]
    for p in predictions:
        await store.bet(pool, S, prediction_id=p.id, user_id=1, option=0, amount=10, key=str(p.id))
        await past_close(pool, p.id)
    events: list[tuple[str, int]] = []

    async def closed(p: store.Prediction) -> None:
        events.append(("closed", p.id))

    async def settled(pid: int) -> None:
        if await settle.claim_announcement(pool, pid):
            events.append(("settled", pid))

    async with asyncpg.create_pool(migrated_dsn, min_size=1, max_size=4) as other:
        clocks = [
            Clock(pool, on_closed=closed, on_settled=settled),
            Clock(other, on_closed=closed, on_settled=settled),
        ]
        for _ in range(3):
            await asyncio.gather(*(c.round() for c in clocks))
        assert sorted(events) == sorted(("closed", p.id) for p in predictions)
        # the auto-refund's time passes (120 h after close, by default): two fresh clocks, as
        # after a restart, refund each once
        await pool.execute("UPDATE predictions SET closed_at = now() - interval '121 hours'")
        events.clear()
        restarted = [Clock(other, on_closed=closed, on_settled=settled), clocks[0]]
        for _ in range(3):
            await asyncio.gather(*(c.round() for c in restarted))
    assert sorted(events) == sorted(("settled", p.id) for p in predictions)
    statuses = await pool.fetch("SELECT DISTINCT status FROM predictions")
    assert [r["status"] for r in statuses] == ["refunded"]
    assert await balance(pool, 1) == 1000
    assert await pool.fetchval("SELECT count(*) FROM points_tx WHERE kind = 'refund'") == 6


async def test_200_concurrent_bets_from_4_processes(pool: asyncpg.Pool, migrated_dsn: str) -> None:
    await grant(pool, 1, 10_000)  # about half of what they try to stake
    p = await new(pool)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            "bet",
            migrated_dsn,
            str(G),
            str(p.id),
            "1",
            str(n),
            "50",
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        for n in range(4)
    ]
    outs = [await proc.communicate() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0]
    results = [orjson.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    placed = [a for r in results for a in r["placed"]]
    assert len(placed) + sum(r["refused"] for r in results) == 200  # none lost
    assert sum(r["refused"] for r in results) > 0  # the balance ran out on the way
    staked = await pool.fetchval(
        "SELECT amount FROM prediction_bets WHERE prediction_id = $1 AND user_id = 1", p.id
    )
    assert staked == sum(placed)
    assert await ledger.balance(pool, G, ledger.pool(p.id)) == sum(placed)
    assert await balance(pool, 1) == 10_000 - sum(placed) >= 0
    assert await pool.fetchval("SELECT count(*) FROM points_tx WHERE kind = 'bet'") == len(placed)


async def test_a_payout_killed_midway_is_finished_once(
    pool: asyncpg.Pool, migrated_dsn: str
) -> None:
    for user in (1, 2, 3):
        await grant(pool, user, 500)
    p = await new(pool)
    for user, option, amount in ((1, 0, 100), (2, 0, 50), (3, 1, 125)):
        await store.bet(
            pool, S, prediction_id=p.id, user_id=user, option=option, amount=amount, key=str(user)
        )
    await settle.choose(pool, G, p.id, 0, actor_id=9)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        "pay",
        migrated_dsn,
        str(p.id),
        stdout=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"PAUSED"
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    # not started: the transaction died with the process
    row = await pool.fetchrow("SELECT status FROM predictions WHERE id = $1", p.id)
    assert row is not None and row["status"] == "resolving"

    async def rolled_back() -> bool:
        return not await pool.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'predictions' AND l.pid <> pg_backend_pid()"
        )

    # PostgreSQL notices the dead connection and rolls back its work.
    await until("the killed payout's locks on predictions released", rolled_back)
    assert await pool.fetchval("SELECT count(*) FROM points_tx WHERE kind = 'resolve'") == 0
    assert [await balance(pool, u) for u in (1, 2, 3)] == [400, 450, 375]
    # two workers' clocks finish it: once
    async with asyncpg.create_pool(migrated_dsn, min_size=1, max_size=2) as other:
        done = await asyncio.gather(settle.pay_pending(pool), settle.pay_pending(other))
    assert sum(len(d) for d in done) == 1
    # pool 275 to 100 and 50: 183.33 and 91.67 -> 183 + 91, the point left to the larger
    # fraction (member 2's .67)
    assert [await balance(pool, u) for u in (1, 2, 3)] == [400 + 183, 450 + 92, 375]
    assert await pool.fetchval("SELECT count(*) FROM points_tx WHERE kind = 'resolve'") == 1


async def test_bets_racing_the_close_and_the_payout_lose_nothing(
    pool: asyncpg.Pool, migrated_dsn: str
) -> None:
    members = range(100, 120)
    for user in members:
        await grant(pool, user, 1000)
    p = await new(pool)
    accepted: list[int] = []
    refused: list[int] = []

    async def one(i: int, on: asyncpg.Pool) -> None:
        user = members[i % len(members)]
        try:
            await store.bet(
                on, S, prediction_id=p.id, user_id=user, option=i % 2, amount=7, key=f"r{i}"
            )
            accepted.append(i)
        except store.PredictionError:
            refused.append(i)

    async def close() -> None:
        await past_close(pool, p.id)
        await settle.close_due(pool)

    async with asyncpg.create_pool(migrated_dsn, min_size=1, max_size=10) as other:
        # the close while bets are in flight on two pools (two workers) ...
        await asyncio.gather(*(one(i, pool if i % 2 else other) for i in range(100)), close())
        # ... and bets after it: refused
        await asyncio.gather(*(one(i, pool if i % 2 else other) for i in range(100, 200)))
    assert len(accepted) + len(refused) == 200 and len(refused) >= 100
    staked = await pool.fetchval(
        "SELECT sum(amount) FROM prediction_bets WHERE prediction_id = $1", p.id
    )
    assert staked == 7 * len(accepted) == await ledger.balance(pool, G, ledger.pool(p.id))
    await settle.choose(pool, G, p.id, 0, actor_id=9)
    done = await settle.pay(pool, p.id)
    assert done is not None and sum(done[1].values()) == staked
    assert await ledger.balance(pool, G, ledger.pool(p.id)) == 0
