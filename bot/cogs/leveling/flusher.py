"""The flusher: moves counted XP awards from the Redis stream to Postgres, in every worker.

Each worker is one consumer of the stream's group. A batch is written in one Postgres
transaction (idempotent: see store.write_events), and only then acknowledged, so a worker
killed at any point leaves its entries pending; another worker claims them once they have been
idle for `claim_idle` seconds and writes them again (counted once). On a graceful stop the
flusher writes everything it was given before it returns.

Outages: the loop never ends on an error. While PostgreSQL or Redis is unreachable it retries
after a short backoff (the outage is logged once, by bot/outages.py), starting with what this
consumer was given and hasn't acknowledged, so what was counted before the outage reaches
PostgreSQL once it is back: at least once from the stream, exactly once in the table (award
ids are unique). Each successful round also tells bot/outages.py that Redis answers: the flusher
reads the stream about once a second, so it is how a worker notices that Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bot import metrics, outages
from bot.cogs.leveling import store
from ipc.backoff import Backoff
from ipc.client import Keys, count_redis_error
from ipc.leaderboard import STREAM_RETENTION, Award
from ipc.stream_group import StreamEntry, StreamGroup

log = logging.getLogger(__name__)

GROUP = "flush"


def stream_group(redis: aioredis.Redis, keys: Keys, consumer: str) -> StreamGroup:
    return StreamGroup(redis, keys("xp", "stream"), GROUP, consumer)


def _award(entry: StreamEntry) -> Award | None:
    try:
        return Award.from_stream(entry.fields)
    except (KeyError, ValueError):
        # Acknowledged with its batch all the same: read again, it would fail again.
        log.error("dropping a malformed XP stream entry %s: %r", entry.entry_id, entry.fields)
        return None


class Flusher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        keys: Keys,
        consumer: str,
        *,
        batch: int = 500,
        claim_idle: float = 10.0,
        interval: float = 0.5,
        cluster: str = "",
        max_backoff: float = 5.0,
    ) -> None:
        self.pool = pool
        self.group = stream_group(redis, keys, consumer)
        self.batch = batch
        self.claim_idle = claim_idle
        # After a short batch, wait this long before reading again: under a steady trickle
        # the flusher writes a few large transactions a second, not one per award.
        self.interval = interval
        self.cluster = cluster
        self.max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self._last_claim = 0.0
        self._last_trim = 0.0
        self._last_lag = 0.0
        self._retry_mine = True  # at start: anything left pending under our name first
        self._stopping = False
        self.rounds = 0  # rounds done without an error (tests wait on them)
        self.failed_rounds = 0

    async def start(self) -> None:
        try:
            await self.group.ensure()
        except (RedisError, OSError) as exc:
            # Redis is down at start: the loop creates the group when it first reaches it
            # (StreamGroup recreates a missing group).
            outages.note(exc, "the XP flusher")
            log.debug("XP flusher: cannot create the stream group yet (%s)", exc)
        self._task = asyncio.create_task(self._run(), name="xp-flusher")

    async def stop(self) -> None:
        """Stop the loop, then write what this consumer holds and what is waiting."""
        if self._task is None:
            return
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.drain()
        except (RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # Not lost: the entries stay pending and another worker claims them.
            log.warning("XP flush at shutdown incomplete (%s); others will claim the rest", exc)

    async def drain(self, *, claim: bool = False) -> int:
        """Flush until nothing is waiting for this consumer; with `claim`, take over stale
        entries of other consumers too. Returns the entries written."""
        written = 0
        written += await self._flush(await self.group.pending_mine(self.batch), mine=True)
        while True:
            entries = await self.group.read(self.batch, block_ms=None)
            if claim:
                entries += await self.group.claim_stale(self.claim_idle, self.batch)
            if not entries:
                return written
            written += await self._flush(entries)

    async def _run(self) -> None:
        backoff = Backoff(cap=self.max_backoff)
        # The flag too, not only cancellation: a cancel that lands inside a client's own
        # timeout can surface as TimeoutError (an OSError), which the loop would survive.
        while not self._stopping:
            try:
                await self._tick()
            except Exception as exc:
                self.failed_rounds += 1
                # Whatever failed, what this consumer holds is written again first: entries
                # read before the error may not have reached PostgreSQL.
                self._retry_mine = True
                delay = backoff.next()
                server = outages.note(exc, "the XP flusher")
                if server == outages.REDIS or isinstance(exc, RedisError):
                    count_redis_error("xp_flush")
                if server is not None:
                    log.debug("XP flusher: %s; retrying in %.1fs", exc, delay)
                elif isinstance(exc, RedisError | OSError | asyncpg.PostgresError):
                    log.warning("XP flusher: %s; retrying in %.1fs", exc, delay)
                else:
                    # A bug must not stop the flushing for the process's lifetime; the entries
                    # stay pending until a round gets through.
                    log.exception("XP flusher: round failed; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
            else:
                self.rounds += 1
                backoff.reset()
                outages.redis.reachable()

    async def _tick(self) -> None:
        if self._retry_mine:
            pending = await self.group.pending_mine(self.batch)
            await self._flush(pending, mine=True)
            if len(pending) < self.batch:
                self._retry_mine = False
        entries = await self.group.read(self.batch, block_ms=1000)
        now = time.monotonic()
        if now - self._last_claim >= min(5.0, self.claim_idle / 2):
            self._last_claim = now
            claimed = await self.group.claim_stale(self.claim_idle, self.batch)
            if claimed:
                log.info("XP flusher: claimed %d entries of a stopped consumer", len(claimed))
            entries += claimed
        await self._flush(entries)
        if now - self._last_lag >= 1.0:
            self._last_lag = now
            metrics.XP_FLUSH_LAG.labels(self.cluster).set(await self.group.lag_seconds())
        if now - self._last_trim >= 30.0:
            self._last_trim = now
            await self.group.trim(STREAM_RETENTION)
            await self.group.forget_idle_consumers(3600)
        if entries and len(entries) < self.batch and not self._stopping:
            await asyncio.sleep(self.interval)

    async def _flush(self, entries: list[StreamEntry], *, mine: bool = False) -> int:
        if not entries:
            return 0
        awards = [a for a in map(_award, entries) if a is not None]
        async with self.pool.acquire() as conn, conn.transaction():
            result = await store.write_events(conn, awards)
        await self.group.ack([e.entry_id for e in entries])
        metrics.XP_FLUSH_BATCHES.labels(self.cluster).inc()
        metrics.XP_FLUSH_ROWS.labels(self.cluster, "inserted").inc(result.inserted)
        metrics.XP_FLUSH_ROWS.labels(self.cluster, "duplicate").inc(result.duplicates)
        if mine and result.duplicates:
            log.debug("XP flusher: %d re-delivered entries were already written", result.duplicates)
        return len(entries)
