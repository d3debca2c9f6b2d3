"""The job runner: one per worker process, for every feature's kinds of job.

Its loop: claim what is due (bot/jobs/store.py: `FOR UPDATE SKIP LOCKED`, this worker's token,
each kind's lease), run each claimed job's handler as a task under a timeout shorter than the
lease, then mark it done, or put it back for a retry with backoff, or mark it failed (after
`max_attempts`, or when the handler says it is hopeless). Then sleep until the next due time
(at most `max_sleep`), or until woken: by a job scheduled in this process, by a notice on the
Redis wake channel (bot/jobs/wake.py), or by a running job finishing when all slots were full.

Restarts and crashes: on start, the claims of this cluster's earlier processes are expired
(one process per cluster runs at a time, so they are dead) and their jobs run at once; a
claim of a dead runner elsewhere passes with its lease. Jobs that came due while no runner was
up are claimed on the first round, marked `late` by how long ago they were due. `stop` lets
running jobs finish (up to a grace) and gives back the rest at once.

Outages: a round that can't reach PostgreSQL is retried after a short backoff, quietly (the
outage is logged once, bot/outages.py). A job whose completion couldn't be written is left to
its lease, and its next attempt runs with `attempt > 1` (see bot/jobs/kinds.py for what that
asks of a handler).

The clock: `clock=None` uses the database's `now()` for due times and leases (one clock for
every cluster). A test passes its own (`clock=lambda: fake_now`) to make a job due "in a
minute" due now, without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from prometheus_client import Gauge

from bot import outages
from bot.jobs import store
from bot.jobs.attempt import DB_ERRORS, Attempt
from bot.jobs.kinds import Job, Kind
from bot.jobs.wake import WakeChannel
from ipc.backoff import Backoff

log = logging.getLogger(__name__)

JOBS_DUE = Gauge(
    "guildhouse_jobs_due",
    "Jobs due now and not yet claimed that this cluster may run, by kind (jobs without a guild "
    "count on every cluster).",
    ["cluster", "kind"],
    multiprocess_mode="livemostrecent",
)


def worker_token(cluster_id: int | str, unique: str) -> str:
    """'c<cluster>:<unique>': the prefix `c<cluster>:` finds this cluster's earlier processes."""
    return f"c{cluster_id}:{unique}"


class JobRunner:
    """Claims and runs due jobs of the kinds registered with it (see the module docstring)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        worker: str,
        shard_count: int,
        shard_ids: list[int],
        cluster: str = "0",
        redis: aioredis.Redis | None = None,
        wake_channel: str | None = None,
        accepting: Callable[[], bool] = lambda: True,
        clock: Callable[[], datetime] | None = None,
        batch: int = 10,
        max_sleep: float = 30.0,
        max_backoff: float = 5.0,
    ) -> None:
        self.pool = pool
        self.worker = worker
        self.cluster = cluster
        self.accepting = accepting
        self.clock = clock
        self.batch = batch
        self.max_sleep = max_sleep
        self.max_backoff = max_backoff
        self.kinds: dict[str, Kind] = {}
        self._routing = (shard_count, list(shard_ids))
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._held: set[int] = set()  # claimed by us, not finished with
        self._predecessors_expired = False
        self.channel = (
            WakeChannel(redis, wake_channel, self.wake)
            if redis is not None and wake_channel is not None
            else None
        )
        self.rounds = 0  # loop iterations that went to sleep (tests wait on it)
        self.failed_rounds = 0  # of which ended in an error (tests wait on it)

    # -- what features call --------------------------------------------------------------------

    def register(self, kind: Kind) -> None:
        """Run jobs of this kind (from the next round on)."""
        self.kinds[kind.name] = kind
        self.wake()

    def unregister(self, name: str) -> None:
        """Stop claiming jobs of this kind (those running finish)."""
        self.kinds.pop(name, None)

    async def schedule(
        self,
        kind: str,
        key: str,
        due_at: datetime,
        *,
        guild_id: int | None = None,
        payload: Any = None,
    ) -> store.Scheduled:
        """Schedule a job (one per (kind, key): a second call returns the first job as it is)
        and wake every runner. Inside your own transaction, call `store.schedule(conn, ...)`
        and then `notify()` after the commit."""
        found = await store.schedule(
            self.pool, kind, key, due_at, guild_id=guild_id, payload=payload
        )
        await self.notify()
        return found

    async def reschedule(
        self, kind: str, key: str, due_at: datetime, *, payload: Any = None
    ) -> store.Scheduled | None:
        """Move a pending job (see store.reschedule) and wake every runner."""
        found = await store.reschedule(self.pool, kind, key, due_at, payload=payload)
        await self.notify()
        return found

    async def cancel(self, kind: str, key: str) -> store.Scheduled | None:
        """Cancel a pending job (see store.cancel)."""
        return await store.cancel(self.pool, kind, key)

    async def notify(self) -> None:
        """Wake this runner and, over Redis, every other one."""
        self.wake()
        if self.channel is not None:
            await self.channel.publish()

    def wake(self) -> None:
        self._wake.set()

    def now(self) -> datetime | None:
        """The injected clock's time; None: the database's."""
        return self.clock() if self.clock is not None else None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Free the claims of this cluster's earlier processes (or, while PostgreSQL is away,
        on the loop's first round that reaches it), then start the loop."""
        try:
            await self._expire_predecessors()
        except DB_ERRORS as exc:
            log.warning("jobs: could not free the last process's claims yet: %s", exc)
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name="jobs-runner")
        if self.channel is not None:
            await self.channel.start()

    @property
    def started(self) -> bool:
        return self._task is not None and not self._task.done()

    async def subscribed(self) -> None:
        """Returns once the wake channel is subscribed (for tests and start-up logs)."""
        assert self.channel is not None
        await self.channel.subscribed()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let running jobs finish (up to `grace` s); give back what this
        worker still holds, so another runner (or this cluster's next process) takes it at
        once."""
        self._stopping = True
        self._wake.set()
        if self.channel is not None:
            await self.channel.stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._running:
            _, late = await asyncio.wait(set(self._running), timeout=grace)
            if late:
                log.warning("jobs: %d jobs still running after %.0fs; stopping", len(late), grace)
                for task in late:
                    task.cancel()
                await asyncio.wait(late)
        if self._held:
            try:
                n = await store.release(self.pool, self.worker, sorted(self._held), now=self.now())
                log.info("jobs: gave back %d claimed jobs", n)
            except DB_ERRORS as exc:
                log.warning("jobs: could not give back claimed jobs: %s", exc)
            self._held.clear()

    # -- the loop ------------------------------------------------------------------------------

    async def _expire_predecessors(self) -> None:
        prefix = self.worker.split(":", 1)[0] + ":"
        n = await store.expire_predecessors(self.pool, prefix, self.worker, now=self.now())
        self._predecessors_expired = True
        if n:
            log.info("jobs: %d jobs of this cluster's last process are reclaimable", n)

    def _routing_now(self) -> store.Routing:
        """The kinds this runner claims this round: registered, and available."""
        kinds = [k.name for k in self.kinds.values() if k.available is None or k.available()]
        return store.Routing(kinds, *self._routing)

    async def _loop(self) -> None:
        backoff = Backoff(first=1.0, cap=self.max_backoff)
        while not self._stopping:
            self._wake.clear()
            delay = self.max_sleep
            try:
                if not self._predecessors_expired:
                    await self._expire_predecessors()
                free = self.batch - len(self._running)
                if self.accepting() and free > 0 and await self.run_due(free) == free:
                    continue  # more may be due: no sleep (or, when full, until a slot frees)
                outlook = await store.outlook(self.pool, self._routing_now(), now=self.now())
                for name, kind in list(self.kinds.items()):
                    due = outlook.due.get(name, 0)
                    JOBS_DUE.labels(self.cluster, name).set(due)
                    if kind.on_due is not None:
                        kind.on_due(due)
                if outlook.wait is not None:
                    delay = min(max(outlook.wait + 0.02, 0.05), self.max_sleep)
                backoff.reset()
            except Exception as exc:
                delay = backoff.next()
                self.failed_rounds += 1
                if outages.note(exc, "the job runner") is not None:
                    log.debug("jobs: round failed (%s); retrying in %.1fs", exc, delay)
                elif isinstance(exc, DB_ERRORS):
                    log.warning("jobs: round failed: %s", exc)
                else:
                    # The loop outlives its bugs: every feature's jobs would otherwise stop for
                    # the process's lifetime. Leases bring back whatever was claimed.
                    log.exception("jobs: round failed")
            if self._stopping:
                break
            self.rounds += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def run_due(self, limit: int | None = None) -> int:
        """One round: claim up to `limit` (default: the batch) due jobs and start their
        handlers; the number claimed. (Tests may call it directly, with the loop not started,
        and wait with `idle()`.)"""
        claimed = await store.claim(
            self.pool,
            self._routing_now(),
            worker=self.worker,
            leases={k.name: k.lease for k in self.kinds.values()},
            limit=self.batch if limit is None else limit,
            now=self.now(),
        )
        for row in claimed:
            kind = self.kinds.get(row.kind)
            if kind is None:  # unregistered since the round began: its lease brings it back
                continue
            self._held.add(row.id)
            attempt = Attempt(
                kind,
                self._job(kind, row),
                pool=self.pool,
                worker=self.worker,
                cluster=self.cluster,
                now=self.now,
            )
            task = asyncio.create_task(self._attempt(attempt))
            task.set_name(f"job {row.kind} {row.id}")
            self._running.add(task)
            task.add_done_callback(self._finished)
        return len(claimed)

    async def idle(self) -> None:
        """Returns when no handler of this runner is running."""
        while self._running:
            await asyncio.wait(set(self._running))

    async def _attempt(self, attempt: Attempt) -> None:
        if await attempt.run():
            self._held.discard(attempt.job.id)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()  # a slot is free

    def _job(self, kind: Kind, row: store.Claimed) -> Job:
        late_by = max(0.0, (row.claimed_at - row.due_at).total_seconds())
        return Job(
            id=row.id,
            kind=row.kind,
            key=row.key,
            guild_id=row.guild_id,
            due_at=row.due_at,
            payload=row.payload,
            attempt=row.attempts,
            first_claimed_at=row.first_claimed_at,
            claimed_at=row.claimed_at,
            late_by=late_by,
            late=late_by >= kind.late_after,
        )
