"""Persistent components' state against real PostgreSQL and Redis: stored state, single-use
claims under concurrency, the sweep of expired rows, first deliveries of interaction ids."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import discord
import pytest
import redis.asyncio as aioredis

from bot.components import ids, paginator, state
from bot.components.handlers import Handler
from bot.components.ids import CustomId
from ipc.client import Keys

pytestmark = pytest.mark.timeout(60)


class Note(Handler, name="t_note"):
    action_room = 0


@dataclass
class Bot:
    pool: asyncpg.Pool


async def rows(pool: asyncpg.Pool, table: str) -> int:
    query = {
        "component_state": "SELECT count(*) FROM component_state",
        "component_claims": "SELECT count(*) FROM component_claims",
    }[table]
    return int(await pool.fetchval(query))


async def test_state_goes_inline_when_it_fits_else_to_postgres(pool: asyncpg.Pool) -> None:
    bot: Any = Bot(pool)
    small = await Note.new(bot, owner=42, state={"e": "2d6"})
    assert small.ref[0] != ids.STORED and await rows(pool, "component_state") == 0
    big_state = {"text": "x" * 500, "n": [1, 2, 3]}
    big = await Note.new(bot, owner=42, state=big_state)
    custom = CustomId.parse(big.custom_id())
    assert custom is not None and custom.stored_id is not None
    assert len(big.custom_id()) <= ids.MAX_LENGTH
    stored = await Note().load(bot, custom)
    assert stored is not None and stored.data == big_state and stored.owner_id == 42
    assert stored.expires_at == pytest.approx(time.time() + Note.ttl, abs=5)
    forced = await Note.new(bot, state=None, stored=True)
    found = await Note().load(bot, CustomId.parse(forced.custom_id()))  # type: ignore[arg-type]
    assert found is not None and found.data is None and found.owner_id is None
    # Another handler's name does not read it.
    assert await state.load(pool, custom.stored_id, "pages") is None


async def test_a_claim_is_won_once_among_concurrent_presses(pool: asyncpg.Pool) -> None:
    later = time.time() + 60
    won = await asyncio.gather(*(state.claim(pool, "m1:gh:x::1", later) for _ in range(20)))
    assert won.count(True) == 1
    await state.release(pool, "m1:gh:x::1")
    assert await state.claim(pool, "m1:gh:x::1", later)
    assert await state.claim(pool, "m2:gh:x::1", later)  # the same component on another message


async def test_sweep_removes_what_expired_only(pool: asyncpg.Pool) -> None:
    now = time.time()
    for i in range(5):
        await state.save(
            pool, f"old-{i:04d}", handler="t", owner_id=None, data={}, expires_at=now - 1
        )
        await state.claim(pool, f"old-{i}", now - 1)
    await state.save(pool, "fresh-00", handler="t", owner_id=None, data={}, expires_at=now + 60)
    await state.claim(pool, "fresh", now + 60)
    assert await state.sweep(pool, batch=2) == 10
    assert await rows(pool, "component_state") == 1 and await rows(pool, "component_claims") == 1
    assert await state.load(pool, "fresh-00", "t") is not None


async def test_a_paginator_press_reads_one_page(pool: asyncpg.Pool) -> None:
    bot: Any = Bot(pool)
    pages = [discord.Embed(title=f"page {i}", description="d" * 3000) for i in range(3)]
    ref = await paginator.Pages.new(
        bot, owner=7, state={"pages": [p.to_dict() for p in pages]}, stored=True
    )
    handler = paginator.Pages()
    for action, title in (("n1", "page 1"), ("l2", "page 2"), ("f0", "page 0")):
        custom = CustomId.parse(ref.custom_id(action))
        assert custom is not None
        found = await handler.load(bot, custom)
        assert found is not None and found.owner_id == 7
        assert found.data["page"]["title"] == title and found.data["total"] == 3
    beyond = CustomId.parse(ref.custom_id("n9"))
    assert beyond is not None and await handler.load(bot, beyond) is None


async def test_an_interaction_id_is_first_delivered_once(redis: aioredis.Redis, keys: Keys) -> None:
    firsts = await asyncio.gather(*(state.first_delivery(redis, keys, 1234) for _ in range(10)))
    assert firsts.count(True) == 1
    assert await state.first_delivery(redis, keys, 1235)
    ttl = await redis.ttl(keys("component", "seen", 1234))
    assert 0 < ttl <= state.INTERACTION_LIFE
    await state.keep_for_retry(redis, keys, "tok", {"custom_id": "gh:x::1", "values": {"a": "1"}})
    assert await state.for_retry(redis, keys, "tok") == {
        "custom_id": "gh:x::1",
        "values": {"a": "1"},
    }
    assert await state.for_retry(redis, keys, "gone") is None


async def test_while_postgres_is_away_redis_holds_the_claim(
    redis: aioredis.Redis, keys: Keys
) -> None:
    later = time.time() + 60
    won = await asyncio.gather(
        *(state.claim_in_redis(redis, keys, "m1:gh:x::1", later) for _ in range(10))
    )
    assert won.count(True) == 1
    ttl = await redis.ttl(keys("component", "claim", "m1:gh:x::1"))
    assert 0 < ttl <= 60
    await state.release_in_redis(redis, keys, "m1:gh:x::1")
    assert await state.claim_in_redis(redis, keys, "m1:gh:x::1", later)
