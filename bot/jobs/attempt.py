"""One attempt at a claimed job: run its kind's handler under a timeout shorter than the lease,
and record the outcome (done, retry with backoff, failed with `on_failed`, or left to the
lease when the database is away). bot/jobs/kinds.py states what a handler is promised.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime

import asyncpg
from prometheus_client import Counter

from bot import outages
from bot.jobs import store
from bot.jobs.kinds import ClaimLost, Failed, Job, Kind, Retry, Run

log = logging.getLogger(__name__)

# The database and its driver failing under us: retry the loop, never crash it.
DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

JOBS_RUN = Counter(
    "guildhouse_jobs_total",
    "Job attempts by kind and outcome: done, retry, failed, lost (the claim had passed to "
    "another runner), left (to its lease: the database was unreachable), error (a bug).",
    ["cluster", "kind", "outcome"],
)


class Attempt:
    """A claimed job and what running it needs; `run()` runs it once."""

    def __init__(
        self,
        kind: Kind,
        job: Job,
        *,
        pool: asyncpg.Pool,
        worker: str,
        cluster: str,
        now: Callable[[], datetime | None],
    ) -> None:
        self.kind = kind
        self.job = job
        self.pool = pool
        self.worker = worker
        self.cluster = cluster
        self.now = now

    def _lost(self) -> None:
        log.warning("jobs: lost the claim on %s %s while running it", self.job.kind, self.job.key)
        self._count("lost")

    def _count(self, outcome: str) -> None:
        JOBS_RUN.labels(self.cluster, self.job.kind, outcome).inc()

    async def run(self) -> bool:
        """Run the handler and record the outcome. True when the job is finished with (done,
        put back for a retry, failed, or lost to another runner); False when it is left to its
        lease. Never raises but CancelledError (a stop: the runner gives the job back)."""
        try:
            await self._attempt_one()
            return True
        except asyncio.CancelledError:
            raise  # stop(): the job is still held, and given back
        except Exception as exc:
            # Writing the outcome failed: the row stays claimed; when its lease passes it is
            # claimed again, with attempt + 1.
            self._count("left")
            if outages.note(exc, "a job's completion") is None:
                log.warning("jobs: %s %s left to its lease: %s", self.job.kind, self.job.key, exc)
            return False

    async def _attempt_one(self) -> None:
        if self.job.attempt > self.kind.max_attempts:  # a job whose runners keep dying mid-run
            await self._fail(f"gave up after {self.kind.max_attempts} attempts")
            return
        run = Run(
            self.job, self.pool, self.worker, time.monotonic() + self.kind.lease - self.kind.margin
        )
        try:
            async with asyncio.timeout(self.kind.lease - self.kind.margin):
                await self.kind.run(run)
        except ClaimLost:
            log.warning(
                "jobs: lost the claim on %s %s while running it", self.job.kind, self.job.key
            )
            self._count("lost")
            return
        except Failed as exc:
            await self._fail(str(exc) or exc.__class__.__name__)
            return
        except Retry as exc:
            await self._retry(str(exc), exc.delay)
            return
        except TimeoutError:
            if not run.completed:
                await self._retry("timed out", None)
                return
        except Exception as exc:
            if outages.server_of(exc) == outages.POSTGRES and not run.completed:
                raise  # left to its lease (the database is away)
            log.exception("jobs: %s %s failed unexpectedly", self.job.kind, self.job.key)
            self._count("error")
            if not run.completed:
                await self._retry(f"{exc.__class__.__name__}: {exc}", None)
            return
        if not run.completed and not await store.finish(
            self.pool, self.job.id, self.worker, state="done"
        ):
            log.warning(
                "jobs: lost the claim on %s %s while running it", self.job.kind, self.job.key
            )
            self._count("lost")
            return
        self._count("done")

    async def _retry(self, reason: str, delay: float | None) -> None:
        if self.job.attempt >= self.kind.max_attempts:
            await self._fail(f"{reason} (attempt {self.job.attempt})")
            return
        delay = self.kind.retry_delay(self.job.attempt) if delay is None else delay
        log.info("jobs: %s %s: %s; retrying in %.0fs", self.job.kind, self.job.key, reason, delay)
        await store.retry_later(
            self.pool, self.job.id, self.worker, delay=delay, error=reason, now=self.now()
        )
        self._count("retry")

    async def _fail(self, reason: str) -> None:
        log.warning("jobs: %s %s failed: %s; giving up", self.job.kind, self.job.key, reason)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                if not await store.finish(
                    conn, self.job.id, self.worker, state="failed", error=reason
                ):
                    self._count("lost")
                    return
                if self.kind.on_failed is not None:
                    await self.kind.on_failed(conn, self.job, reason)
        except Exception as exc:
            if self.kind.on_failed is None or outages.server_of(exc) is not None:
                raise
            # A bug in on_failed must not keep the job coming back: fail it without.
            log.exception("jobs: on_failed of %s %s failed", self.job.kind, self.job.key)
            await store.finish(self.pool, self.job.id, self.worker, state="failed", error=reason)
        self._count("failed")
