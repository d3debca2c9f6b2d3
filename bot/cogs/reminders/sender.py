"""Sending a due reminder: the handler of the `reminders.deliver` jobs of the shared scheduler
(bot/jobs/, docs/jobs.md), which claims each delivery's job for one worker at a time, within a
lease, wakes on new reminders, retries with backoff and survives outages and restarts.

What this module adds is what makes a message exactly once, which the scheduler can't do for
an effect outside the database:

1. **Check** (only when the job's claim is not its first, `attempt > 1`: a lease passed, or an
   attempt failed in a way that may have reached Discord): read the channel's messages since
   the job was first claimed and, if one carries this delivery's nonce (in the embed footer),
   mark the delivery sent without sending.
2. **Send**, within the lease (the scheduler's timeout is the lease less a margin).
3. **Mark** `sent` in the transaction that completes the job (`run.complete()`), with the next
   repeat's delivery and its job. If the job is no longer ours, nothing is marked.

The window between 2 and 3 (a worker killed after Discord accepted the message, before the
mark) is what step 1 closes: the next claim finds the message by its nonce. What is left is a
send still in flight at another worker while the check runs: only possible when a live worker
overruns its lease, which the send timeout rules out short of a clock jump. docs/reminders.md
discusses it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Protocol

import asyncpg

from bot import jobs, metrics, outages
from bot.cogs.reminders import outbox
from bot.cogs.reminders.outbox import Due
from bot.cogs.reminders.plan import LATE_AFTER
from bot.cogs.reminders.render import Rendered, render

log = logging.getLogger(__name__)

# An earlier send is looked for from this long before the job's first claim (the database's
# and Discord's clocks may differ a little).
CLOCK_SLACK = timedelta(seconds=5)


class DeliveryError(Exception):
    """A send (or the look for an earlier one) failed. `permanent`: trying again won't help
    (the channel is gone, DMs are closed); otherwise it is retried later."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Transport(Protocol):
    async def find(self, due: Due, since: datetime) -> int | None:
        """The id of a message sent earlier for this delivery (its nonce), or None."""
        ...

    async def send(self, due: Due, message: Rendered) -> int:
        """Send it; the new message's id."""
        ...


class Sender:
    """The `reminders.deliver` kind: `kind()` is what the cog installs."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        transport: Transport,
        *,
        cluster: str = "0",
        lease: float = 30.0,
        max_attempts: int = 6,
        retry_delays: tuple[float, ...] = (5, 30, 120, 600),
    ) -> None:
        self.pool = pool
        self.transport = transport
        self.cluster = cluster
        self.lease = lease
        self.max_attempts = max_attempts
        self.retry_delays = retry_delays

    def kind(self) -> jobs.Kind:
        return jobs.Kind(
            outbox.KIND,
            self.run,
            on_failed=self.on_failed,
            lease=self.lease,
            max_attempts=self.max_attempts,
            retry_delays=self.retry_delays,
            late_after=LATE_AFTER,
            on_due=metrics.REMINDERS_DUE.labels(self.cluster).set,
        )

    def _count(self, outcome: str) -> None:
        metrics.REMINDERS_FIRED.labels(self.cluster, outcome).inc()

    async def run(self, run: jobs.Run) -> None:
        try:
            await self._deliver(run)
        except (jobs.Retry, jobs.Failed, jobs.ClaimLost):
            raise
        except Exception as exc:
            if outages.server_of(exc) is None:
                self._count("error")  # a bug: the scheduler logs it and retries
            raise

    async def _deliver(self, run: jobs.Run) -> None:
        due = await outbox.load(self.pool, run.job)
        if due is None or due.state != "pending":
            return  # deleted, or marked by an earlier attempt whose job mark was lost
        if due.attempts > 1:
            metrics.REMINDERS_RECLAIMED.labels(self.cluster).inc()
            try:
                earlier = await self.transport.find(due, due.first_claimed_at - CLOCK_SLACK)
            except DeliveryError as exc:
                raise self._failure(due, exc, "looking for an earlier send") from exc
            if earlier is not None:
                log.info("reminders: delivery %d was already sent (message %d)", due.id, earlier)
                async with run.complete() as conn:
                    await outbox.finish(conn, due, status="sent", message_id=earlier)
                self._count("already_sent")
                return
        message = render(
            reminder_id=due.reminder_id,
            nonce=due.nonce,
            message=due.message,
            target=due.target,
            via=due.via,
            author_id=due.author_id,
            channel_id=due.channel_id,
            guild_id=due.guild_id,
            event_at=due.event_at,
            lead=due.lead,
            late_seconds=due.late_seconds,
            recipients=await outbox.recipients(self.pool, due),
            repeats=due.series.repeat is not None,
        )
        try:
            message_id = await self.transport.send(due, message)
        except DeliveryError as exc:
            raise self._failure(due, exc, "sending") from exc
        async with run.complete() as conn:
            await outbox.finish(conn, due, status="sent", message_id=message_id)
        self._count("sent")
        metrics.REMINDERS_DELAY.labels(self.cluster).observe(due.late_seconds)
        if due.late_seconds >= LATE_AFTER:
            metrics.REMINDERS_LATE.labels(self.cluster).inc()

    def _failure(self, due: Due, exc: DeliveryError, what: str) -> Exception:
        """What to raise for the scheduler: Failed (on_failed marks the delivery) or Retry."""
        if exc.permanent or due.attempts >= self.max_attempts:
            log.warning("reminders: delivery %d failed %s: %s; giving up", due.id, what, exc)
            return jobs.Failed(str(exc))
        self._count("retry")
        return jobs.Retry(f"{what}: {exc}")

    async def on_failed(self, conn: asyncpg.Connection, job: jobs.Job, error: str) -> None:
        """The job failed for good: the delivery is marked failed (a repeat goes on)."""
        due = await outbox.load(conn, job)
        if due is not None and due.state == "pending":
            await outbox.finish(conn, due, status="failed", error=error[:500])
        self._count("failed")
