"""`points top`: live ranks in a Redis sorted set per server, the ledger as the truth.

A write that fails because Redis is away doesn't fail what the member did (it is in the
ledger); this worker rebuilds that server's board before it next reads it.

Every ledger post that changes members' balances writes their new balances here (ZADD of the
balance PostgreSQL returned, not an increment, so a repeated or reordered write can't drift).
A marker key says the board was built; without it (a Redis wipe, a first use) the board is
rebuilt from `points_accounts` before it is read, under a short lock so one worker does it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bot import outages
from bot.points import ledger
from ipc.client import Keys

log = logging.getLogger(__name__)


class Board:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys) -> None:
        self.pool = pool
        self.redis = redis
        self.keys = keys
        # Servers whose board missed a write here (Redis was away): rebuilt before their next
        # read on this worker.
        self.stale: set[int] = set()

    def _board(self, guild_id: int) -> str:
        return self.keys("points", "top", guild_id)

    def _ready(self, guild_id: int) -> str:
        return self.keys("points", "top-ready", guild_id)

    async def update(self, guild_id: int, balances: Mapping[str, int]) -> None:
        """The new balances of the members a post touched (accounts `u:<id>`)."""
        scores = {str(user): bal for acc, bal in balances.items() if (user := ledger.user_of(acc))}
        if not scores:
            return
        try:
            await self.redis.zadd(self._board(guild_id), scores)
        except Exception as exc:
            # The change is in the ledger, which is what counts: the caller's answer stands.
            if outages.note(exc, "the points board") is None:
                raise
            self.stale.add(guild_id)

    async def rebuild(self, guild_id: int) -> int:
        rows = await self.pool.fetch(
            "SELECT account, balance FROM points_accounts "
            "WHERE guild_id = $1 AND account LIKE 'u:%'",
            guild_id,
        )
        board = self._board(guild_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(board)
            scores = {str(ledger.user_of(r["account"])): int(r["balance"]) for r in rows}
            if scores:
                pipe.zadd(board, scores)
            pipe.set(self._ready(guild_id), "1")
            await pipe.execute()
        log.info("points: rebuilt the board of guild %s (%d members)", guild_id, len(rows))
        return len(rows)

    async def ensure(self, guild_id: int) -> None:
        if guild_id in self.stale:
            await self.rebuild(guild_id)
            self.stale.discard(guild_id)
            return
        if await self.redis.exists(self._ready(guild_id)):
            return
        lock = self.keys("points", "top-rebuild", guild_id)
        if await self.redis.set(lock, "1", nx=True, ex=30):
            try:
                await self.rebuild(guild_id)
            finally:
                await self.redis.delete(lock)
            return
        for _ in range(100):  # another worker is rebuilding it
            await asyncio.sleep(0.05)
            if await self.redis.exists(self._ready(guild_id)):
                return
        await self.rebuild(guild_id)

    async def top(self, guild_id: int, count: int, offset: int = 0) -> list[tuple[int, int]]:
        """[(user id, balance)] from rank `offset` on, highest first; ties by user id."""
        await self.ensure(guild_id)
        rows: list[Any] = await self.redis.zrevrange(
            self._board(guild_id), offset, offset + count - 1, withscores=True
        )
        return [(int(m), int(score)) for m, score in rows if int(score) > 0]

    async def rank(self, guild_id: int, user_id: int) -> int | None:
        await self.ensure(guild_id)
        rank: Any = await self.redis.zrevrank(self._board(guild_id), str(user_id))
        return None if rank is None else int(rank) + 1
