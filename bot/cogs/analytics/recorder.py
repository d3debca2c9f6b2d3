"""Command uses counted in memory and written in batches (ipc/batch.py), as XP for chat is.

A use is one `push` (an append to a list); the batcher sends what gathered every `flush`
seconds as one transaction of three statements (store.write), however many uses it carries.
So analytics cost no database round trip per command. A worker killed between flushes loses
up to `flush` seconds of its counts, and a batch that fails (PostgreSQL away) is logged and
dropped: analytics are not a ledger.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from bot.cogs.analytics import store
from bot.cogs.analytics.figures import Use, fold
from ipc.batch import Batcher

FLUSH = 10.0  # seconds between writes (ANALYTICS_FLUSH, WorkerConfig.analytics.flush)


class Recorder:
    def __init__(self, pool: asyncpg.Pool, *, flush: float = FLUSH) -> None:
        self.pool = pool
        self.batcher: Batcher[Use, None] = Batcher(
            self._send,
            max_batch=20_000,
            linger=flush,
            linger_each=True,
            name="analytics",
        )

    def record(self, use: Use) -> None:
        self.batcher.push(use)

    async def drain(self) -> None:
        """Wait for what is queued to be written (tests, a stopping worker)."""
        await self.batcher.drain()

    async def _send(self, uses: list[Use]) -> Sequence[None]:
        await store.write(self.pool, fold(uses))
        return [None] * len(uses)
