"""Earning and granting points on the ledger: the daily claim and its streak, chat points once
per message, an admin's give/take/set, the settings' checks, and `points top` from Redis,
rebuilt from the ledger after a wipe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import pytest
import redis.asyncio as aioredis

from bot.points import earn, ledger
from bot.points.board import Board
from bot.points.settings import PointsSettings, load, parse_change, save
from bot.user_error import UserError
from ipc.client import Keys

G = 77


@pytest.fixture
async def pool(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """The shared `pool` (tests/conftest.py), and the ledger's invariants checked after."""
    yield pool
    assert await ledger.check(pool) == []


def test_daily_amount_and_streak() -> None:
    s = PointsSettings(G, daily_amount=100, streak_bonus=10, streak_max=3)
    assert [earn.daily_amount(s, n) for n in (1, 2, 3, 4, 9)] == [100, 110, 120, 120, 120]
    assert earn.next_streak(date(2026, 1, 1), 4, date(2026, 1, 2)) == 5
    assert earn.next_streak(date(2026, 1, 1), 4, date(2026, 1, 3)) == 1
    assert earn.next_streak(None, 0, date(2026, 1, 3)) == 1


def test_settings_are_checked_and_named() -> None:
    s = PointsSettings(G)
    assert parse_change(s, "max_bet", "5,000").max_bet == 5000
    assert parse_change(s, "allow-switch", "on").allow_switch
    with pytest.raises(UserError, match="`max_bet` takes a whole number, not `lots`"):
        parse_change(s, "max_bet", "lots")
    with pytest.raises(UserError, match="`refund_hours` must be from 1 to 8,760, not 0"):
        parse_change(s, "refund_hours", "0")
    with pytest.raises(UserError, match=r"min_bet .* can.t be above max_bet"):
        parse_change(s.with_changes(max_bet=10), "min_bet", "11")
    with pytest.raises(UserError, match="There is no setting `colour`"):
        parse_change(s, "colour", "red")


@pytest.mark.integration
async def test_settings_saved_and_loaded_with_the_xp_cooldown(pool: asyncpg.Pool) -> None:
    assert await load(pool, G) == PointsSettings(G)
    await pool.execute("INSERT INTO xp_settings (guild_id, cooldown_seconds) VALUES ($1, 30)", G)
    assert (await load(pool, G)).chat_cooldown == 30
    async with pool.acquire() as conn:
        await save(conn, PointsSettings(G, max_bet=500, vote_enabled=True))
    loaded = await load(pool, G)
    assert loaded.max_bet == 500 and loaded.vote_enabled and loaded.chat_cooldown == 30


@pytest.mark.integration
async def test_daily_once_a_day_with_a_streak(pool: asyncpg.Pool) -> None:
    s = PointsSettings(G, daily_amount=100, streak_bonus=10)
    async with pool.acquire() as conn:
        first = await earn.claim_daily(conn, s, 1, date(2026, 5, 1))
        again = await earn.claim_daily(conn, s, 1, date(2026, 5, 1))
        second = await earn.claim_daily(conn, s, 1, date(2026, 5, 2))
        broken = await earn.claim_daily(conn, s, 1, date(2026, 5, 4))
    assert (first.claimed, first.amount, first.balance) == (True, 100, 100)
    assert (again.claimed, again.balance) == (False, 100)
    assert (second.amount, second.streak, second.balance) == (110, 2, 210)
    assert (broken.amount, broken.streak, broken.balance) == (100, 1, 310)
    c = await ledger.circulation(pool, G)
    assert c == {"members": 310, "pools": 0, "minted": 310, "burned": 0}


@pytest.mark.integration
async def test_chat_points_once_per_message(pool: asyncpg.Pool) -> None:
    first = await earn.chat(pool, G, 555, 1, 5)
    again = await earn.chat(pool, G, 555, 1, 5)
    assert first is not None and first.applied and again is not None and not again.applied
    assert await earn.chat(pool, G, 556, 1, 0) is None
    assert await ledger.balance(pool, G, ledger.member(1)) == 5


@pytest.mark.integration
async def test_give_take_set(pool: asyncpg.Pool) -> None:
    async def adjust(how: str, amount: int, key: str) -> tuple[int, int]:
        async with pool.acquire() as conn, conn.transaction():
            return await earn.adjust(
                conn, guild_id=G, user_id=1, how=how, amount=amount, key=key, actor_id=9
            )

    assert await adjust("give", 500, "a") == (0, 500)
    assert await adjust("take", 200, "b") == (500, 300)
    with pytest.raises(UserError, match="has 300 points; you can't take 301"):
        await adjust("take", 301, "c")
    assert await adjust("set", 1000, "d") == (300, 1000)
    assert await adjust("set", 0, "e") == (1000, 0)
    with pytest.raises(UserError, match="made already"):
        await adjust("give", 5, "a")
    c = await ledger.circulation(pool, G)
    assert c == {"members": 0, "pools": 0, "minted": 1200, "burned": 1200}


@pytest.mark.integration
async def test_top_is_right_after_a_redis_wipe(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    board = Board(pool, redis, keys)
    for user, amount in ((1, 50), (2, 300), (3, 120)):
        async with pool.acquire() as conn, conn.transaction():
            posted = await ledger.post(
                conn,
                guild_id=G,
                key=f"g{user}",
                kind="admin_give",
                entries={ledger.MINT: -amount, ledger.member(user): amount},
            )
        await board.update(G, posted.balances)
    assert await board.top(G, 10) == [(2, 300), (3, 120), (1, 50)]
    async for key in redis.scan_iter(match=keys.prefix + "*"):
        await redis.delete(key)
    assert await board.top(G, 10) == [(2, 300), (3, 120), (1, 50)]
    assert await board.rank(G, 3) == 2


@pytest.mark.integration
async def test_a_board_write_lost_to_a_redis_outage_is_rebuilt_before_the_next_read(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    board = Board(pool, redis, keys)
    async with pool.acquire() as conn, conn.transaction():
        posted = await ledger.post(
            conn,
            guild_id=G,
            key="g",
            kind="admin_give",
            entries={ledger.MINT: -40, ledger.member(5): 40},
        )
    await board.update(G, posted.balances)
    assert await board.top(G, 10) == [(5, 40)]
    async with pool.acquire() as conn, conn.transaction():
        posted = await ledger.post(
            conn,
            guild_id=G,
            key="h",
            kind="admin_give",
            entries={ledger.MINT: -60, ledger.member(6): 60},
        )
    away = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    board.redis = away
    await board.update(G, posted.balances)  # Redis is away: no error for the member
    await away.aclose()
    board.redis = redis
    assert await board.top(G, 10) == [(6, 60), (5, 40)]
