"""What a feature writes to run scheduled work: a `Kind` (its handler and settings), and what
the handler is given (`Run`, with its `Job`) and may raise (`Retry`, `Failed`).

The guarantee, precisely (docs/jobs.md says it at length):

- A job is claimed by one runner at a time: the claim is `FOR UPDATE SKIP LOCKED` with a
  worker token and a lease of `Kind.lease` seconds. Its handler runs under a timeout a little
  shorter than the lease, so a live runner never overruns its own lease.
- A handler whose effect is in the database makes it inside `async with run.complete() as
  conn:`: the job is marked done in that transaction, first, and only if this runner still
  holds the claim (else `ClaimLost` is raised and nothing commits). Effect and completion
  commit together or not at all: **exactly once**, across clusters, restarts and crashes.
- A handler with an effect outside the database (a Discord call) can't commit it with the
  job. A runner killed after the effect and before the mark leaves the job to its lease, and
  the next claim runs the handler again. So the effect must be idempotent (an unban is) or
  checkable: the handler gets `job.attempt` (1 on the first claim) and
  `job.first_claimed_at`, and on `attempt > 1` looks for its earlier effect (a message with
  the job's nonce since `first_claimed_at`) before doing it again, as reminders do. Then it
  is exactly once too; without either it is at least once.
- A handler that returns without calling `run.complete()` has its job marked done after it
  returns (for outside effects that need no database change).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from bot.jobs import store


@dataclass(frozen=True)
class Job:
    """A claimed job, as its handler sees it."""

    id: int
    kind: str
    key: str
    guild_id: int | None
    due_at: datetime
    payload: Any  # what `schedule` was given (JSON: dicts, lists, str, numbers, bool, None)
    attempt: int  # 1 on the first claim; more after a retry or a lease that passed
    first_claimed_at: datetime  # an earlier attempt's effect can't be older than this
    claimed_at: datetime  # the runner's clock at this claim
    late_by: float  # seconds from due_at to this claim (0 when on time)
    late: bool  # late_by >= the kind's late_after: say so ("late by 2h") if the user sees it


class Retry(Exception):
    """Raise from a handler: try again later (after `delay` s, or the kind's backoff). After
    `max_attempts` attempts the job fails instead."""

    def __init__(self, reason: str, *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class Failed(Exception):
    """Raise from a handler: trying again won't help (the channel is gone); the job is marked
    failed and the kind's `on_failed` runs in that transaction."""


class ClaimLost(Exception):
    """`run.complete()` found the job no longer ours (its lease passed and another runner took
    it, or it was given back): nothing in the block committed."""


Handler = Callable[["Run"], Awaitable[None]]
OnFailed = Callable[[asyncpg.Connection, Job, str], Awaitable[None]]


@dataclass(frozen=True)
class Kind:
    """A kind of job and how it runs. `name` is stored in every row ('feature.action', e.g.
    'moderation.unban'); a runner claims only the kinds registered with it."""

    name: str
    run: Handler
    # Runs in the transaction that marks the job failed (permanently, or after max_attempts):
    # the feature's record of the failure (and anything that follows it) commits with it.
    on_failed: OnFailed | None = None
    lease: float = 60.0  # seconds a claim is good for; the handler gets a little less
    max_attempts: int = 6
    retry_delays: tuple[float, ...] = (5, 30, 120, 600)  # after attempt 1, 2, ...; the last repeats
    late_after: float = 60.0  # a claim this many seconds after due_at is `late`
    # Called every round with the number of this kind's jobs due and not yet claimed that this
    # runner may run (for a feature's own gauge; guildhouse_jobs_due has it by kind anyway).
    on_due: Callable[[int], None] | None = None
    # Claimed only while this returns True (None: always). For a handler that needs what a
    # worker has only once it is READY (the guild cache: `available=bot.is_ready`); the
    # feature wakes the runner when it becomes true (`jobs.of(bot).wake()` in on_ready).
    available: Callable[[], bool] | None = None

    def retry_delay(self, attempt: int) -> float:
        return self.retry_delays[min(attempt, len(self.retry_delays)) - 1]

    @property
    def margin(self) -> float:
        """The handler's time is the lease less this."""
        return min(5.0, self.lease / 4)


@dataclass
class Run:
    """One attempt at a job: what its handler gets."""

    job: Job
    pool: asyncpg.Pool
    worker: str
    deadline: float  # time.monotonic() by which the handler must be done (its timeout)
    completed: bool = field(default=False, init=False)

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    @asynccontextmanager
    async def complete(self) -> AsyncIterator[asyncpg.Connection]:
        """A transaction in which the job is already marked done: make the database effect in
        it. Raises ClaimLost (before the block runs) if the job is no longer ours."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await store.finish(conn, self.job.id, self.worker, state="done"):
                raise ClaimLost(f"job {self.job.id} ({self.job.kind} {self.job.key})")
            yield conn
        self.completed = True
