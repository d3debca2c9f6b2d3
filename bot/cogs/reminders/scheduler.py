"""The scheduler that runs in every worker: claims due deliveries, sends them, marks them.

Exactly once, across every cluster and through restarts:

1. **Claim** (store.claim): one statement, `FOR UPDATE SKIP LOCKED`, sets `firing`, this
   worker's token and a lease. Two schedulers never claim the same row. A channel reminder is
   claimed only by the cluster whose shards include its guild; DMs by any cluster.
2. **Send**, within the lease (the send is abandoned a safety margin before it ends).
3. **Mark** `sent` (store.finish), only if this worker still holds the claim, and schedule the
   next repeat in the same transaction.

The window that remains is between 2 and 3: a worker killed after Discord accepted the message
but before the mark leaves a `firing` row whose lease will pass. Re-sending blindly would be
at-least-once; never re-sending would be at-most-once. We do neither: every message carries
its delivery's nonce (in the embed footer), and a claim that is not the row's first
(`attempts > 1`: a lease passed, or an attempt failed in a way that may have reached Discord)
first reads the channel's messages since the row was first claimed and, if the nonce is there,
marks the row sent without sending. A new send happens only after that check succeeded. What
is left is a send still in flight at another worker while the check runs: only possible when a
live worker overruns its lease, which the send timeout (the lease minus a margin) rules out
short of a clock jump. docs/reminders.md discusses it.

Waking: the loop sleeps until the next due time (capped at `max_sleep`), or until woken: by a
reminder created in this process, or by a notice on a Redis pub/sub channel that the cog
publishes to after creating one (so another cluster's new reminder due in 5 s isn't found by
a 30 s poll). Without Redis the cap is the poll.

Outages: a round that can't reach PostgreSQL is retried after a short backoff (at most
`max_backoff` seconds, so the scheduler notices soon that the server is back), quietly: the
outage itself is logged once (bot/outages.py). What was due meanwhile is claimed on the first
round that reaches the database, and the steps above keep it to one send. A delivery whose mark
failed is left to its lease; the next claim finds its message by the nonce and doesn't send it
again. The wake-up subscription is renewed whenever Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg
import redis.asyncio as aioredis

from bot import metrics, outages
from bot.cogs.reminders import store
from bot.cogs.reminders.render import Rendered, render
from bot.cogs.reminders.schedule import LATE_AFTER
from bot.cogs.reminders.store import Due, Next

log = logging.getLogger(__name__)

# The database and its driver failing under us: retry the loop, never crash it.
DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# An earlier send is looked for from this long before the row's first claim (the database's
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


def worker_token(cluster_id: int, unique: str) -> str:
    return f"c{cluster_id}:{unique}"


class Scheduler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        transport: Transport,
        *,
        worker: str,
        shard_count: int,
        shard_ids: list[int],
        cluster: str = "0",
        redis: aioredis.Redis | None = None,
        wake_channel: str | None = None,
        accepting: Callable[[], bool] = lambda: True,
        lease: float = 30.0,
        batch: int = 10,
        max_sleep: float = 30.0,
        retry_delays: tuple[float, ...] = (5, 30, 120, 600),
        max_attempts: int = 6,
        max_backoff: float = 5.0,
    ) -> None:
        self.pool = pool
        self.transport = transport
        self.worker = worker
        self.shard_count = shard_count
        self.shard_ids = list(shard_ids)
        self.cluster = cluster
        self.redis = redis
        self.wake_channel = wake_channel
        self.accepting = accepting
        self.lease = lease
        self.batch = batch
        self.max_sleep = max_sleep
        self.retry_delays = retry_delays
        self.max_attempts = max_attempts
        self.max_backoff = max_backoff
        # Sends are given up this long before the lease ends.
        self.margin = min(5.0, lease / 4)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._held: set[int] = set()  # claimed by us, not finished
        self._subscribed = asyncio.Event()
        self.rounds = 0  # loop iterations that went to sleep (tests wait on it)
        self.failed_rounds = 0  # of which ended in an error (tests wait on it)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="reminders-scheduler")
        if self.redis is not None and self.wake_channel is not None:
            self._listener = asyncio.create_task(self._listen(), name="reminders-wake")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let deliveries in progress finish (up to `grace` s); give back what
        this worker still holds, so another worker (or this cluster's next process) takes it
        at once."""
        self._stopping = True
        self._wake.set()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                log.warning("reminders: deliveries still running after %.0fs; stopping", grace)
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._held:
            try:
                n = await store.release(self.pool, self.worker, sorted(self._held))
                log.info("reminders: gave back %d claimed deliveries", n)
            except DB_ERRORS as exc:
                log.warning("reminders: could not give back claimed deliveries: %s", exc)

    def wake(self) -> None:
        self._wake.set()

    async def subscribed(self) -> None:
        """Returns once the wake-up channel is subscribed (for tests and start-up logs)."""
        await self._subscribed.wait()

    async def _listen(self) -> None:
        assert self.redis is not None and self.wake_channel is not None
        backoff = outages.Backoff(cap=self.max_backoff)
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as ps:
                    await ps.subscribe(self.wake_channel)
                    self._subscribed.set()
                    outages.redis.reachable()
                    backoff.reset()
                    async for message in ps.listen():
                        if message and message.get("type") == "message":
                            self._wake.set()
            except Exception as exc:
                # Whatever ended it: without the channel, new reminders wait for the poll.
                self._subscribed.clear()
                if outages.note(exc, "the reminders wake-up channel") is None:
                    log.warning("reminders: wake-up channel lost (%s); polling meanwhile", exc)
                await asyncio.sleep(backoff.next())

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        backoff = outages.Backoff(first=1.0, cap=self.max_backoff)
        while not self._stopping:
            self._wake.clear()
            delay = self.max_sleep
            try:
                if self.accepting():
                    claimed = await self.tick()
                    if claimed >= self.batch:
                        continue  # more may be due: no sleep
                outlook = await store.outlook(
                    self.pool, shard_count=self.shard_count, shard_ids=self.shard_ids
                )
                metrics.REMINDERS_DUE.labels(self.cluster).set(outlook.due)
                if outlook.wait is not None:
                    delay = min(max(outlook.wait + 0.02, 0.05), self.max_sleep)
                backoff.reset()
            except Exception as exc:
                delay = backoff.next()
                self.failed_rounds += 1
                if outages.note(exc, "the reminder scheduler") is not None:
                    log.debug("reminders: round failed (%s); retrying in %.1fs", exc, delay)
                elif isinstance(exc, DB_ERRORS):
                    log.warning("reminders: scheduler round failed: %s", exc)
                else:
                    # The loop outlives its bugs: reminders would otherwise stop for the
                    # process's lifetime. Leases bring back whatever was claimed.
                    log.exception("reminders: scheduler round failed")
            if self._stopping:
                break
            self.rounds += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def tick(self) -> int:
        """Claim what is due and deliver it; the number claimed."""
        claimed = await store.claim(
            self.pool,
            worker=self.worker,
            shard_count=self.shard_count,
            shard_ids=self.shard_ids,
            limit=self.batch,
            lease=self.lease,
        )
        if not claimed:
            return 0
        deadline = time.monotonic() + self.lease - self.margin
        # Until a delivery is finished with, it is ours: if the loop is cancelled mid-send,
        # stop() gives it back (the next claimer checks for the send before repeating it).
        self._held.update(d.id for d in claimed)
        await asyncio.gather(*(self._deliver(d, deadline) for d in claimed))
        return len(claimed)

    def _next(self, due: Due) -> Next | None:
        found = due.series.next_delivery(due.occurrence, due.lead, datetime.now(UTC))
        return Next(*found) if found else None

    async def _deliver(self, due: Due, deadline: float) -> None:
        try:
            await self._deliver_one(due, deadline)
            self._held.discard(due.id)
        except DB_ERRORS as exc:
            # The row stays claimed; when its lease passes it is claimed again, and that claim
            # looks for this attempt's message before sending.
            if outages.note(exc, "a reminder delivery") is None:
                log.warning("reminders: delivery %d left to its lease: %s", due.id, exc)
            else:
                log.info("reminders: delivery %d left to its lease (database unreachable)", due.id)
        except Exception:
            # A bug in one delivery must not stop the others or the loop; its lease passes and
            # the next attempt tries again, up to max_attempts.
            log.exception("reminders: delivery %d failed unexpectedly", due.id)
            self._count("error")
            if due.attempts >= self.max_attempts:
                with contextlib.suppress(*DB_ERRORS):
                    await store.finish(
                        self.pool, due, self.worker, status="failed", nxt=None, error="bug"
                    )

    def _count(self, outcome: str) -> None:
        metrics.REMINDERS_FIRED.labels(self.cluster, outcome).inc()

    async def _deliver_one(self, due: Due, deadline: float) -> None:
        if due.attempts > 1:
            metrics.REMINDERS_RECLAIMED.labels(self.cluster).inc()
            try:
                earlier = await self.transport.find(due, due.first_claimed_at - CLOCK_SLACK)
            except DeliveryError as exc:
                await self._failed(due, exc, checking=True)
                return
            if earlier is not None:
                log.info("reminders: delivery %d was already sent (message %d)", due.id, earlier)
                await store.finish(
                    self.pool,
                    due,
                    self.worker,
                    status="sent",
                    nxt=self._next(due),
                    message_id=earlier,
                )
                self._count("already_sent")
                return
        recipients = await store.recipients(self.pool, due)
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
            recipients=recipients,
            repeats=due.series.repeat is not None,
        )
        left = deadline - time.monotonic()
        if left <= 0:
            log.warning("reminders: lease of delivery %d nearly over; leaving it", due.id)
            return
        try:
            async with asyncio.timeout(left):
                message_id = await self.transport.send(due, message)
        except DeliveryError as exc:
            await self._failed(due, exc)
            return
        except TimeoutError:
            # Discord may or may not have it: the next claim looks before sending again.
            await self._failed(due, DeliveryError("send timed out", permanent=False))
            return
        held = await store.finish(
            self.pool, due, self.worker, status="sent", nxt=self._next(due), message_id=message_id
        )
        if not held:
            log.warning("reminders: lost the claim on delivery %d while sending it", due.id)
        self._count("sent")
        metrics.REMINDERS_DELAY.labels(self.cluster).observe(due.late_seconds)
        if due.late_seconds >= LATE_AFTER:
            metrics.REMINDERS_LATE.labels(self.cluster).inc()

    async def _failed(self, due: Due, exc: DeliveryError, *, checking: bool = False) -> None:
        what = "looking for an earlier send" if checking else "sending"
        if exc.permanent or due.attempts >= self.max_attempts:
            log.warning("reminders: delivery %d failed %s: %s; giving up", due.id, what, exc)
            await store.finish(
                self.pool, due, self.worker, status="failed", nxt=self._next(due), error=str(exc)
            )
            self._count("failed")
            return
        delay = self.retry_delays[min(due.attempts, len(self.retry_delays)) - 1]
        log.info(
            "reminders: delivery %d failed %s: %s; retrying in %.0fs", due.id, what, exc, delay
        )
        await store.retry_later(self.pool, due, self.worker, delay=delay, error=str(exc)[:500])
        self._count("retry")
