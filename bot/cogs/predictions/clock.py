"""The backstop every worker runs: finishes payouts a stopped worker left (`resolving`), gets
settled predictions announced, and closes or refunds whatever is due that its job (timing.py,
on the shared scheduler) has not done yet.

Exactly once, with any number of workers and across restarts, without a lease: each step is a
conditional state change in PostgreSQL (settle.py), claimed with `FOR UPDATE SKIP LOCKED`, so
of all the workers (and jobs) that try, one changes the row and the others find nothing to do;
a worker killed mid-step rolls back and the next round (here or elsewhere) does it. What a step
tells Discord comes after its commit: an edit of the prediction's message on close
(idempotent), and the result's announcement, claimed once with `announced`.

Time is PostgreSQL's `now()` (one clock for every worker); `tick` is how often a worker looks
(15 s in the cog: the jobs close on time, this is for what they missed). No bet is taken after
a prediction's time meanwhile: a bet checks `closes_at` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from bot import outages
from bot.cogs.predictions import settle
from bot.cogs.predictions.store import Prediction
from ipc.backoff import Backoff

log = logging.getLogger(__name__)

OnClosed = Callable[[Prediction], Awaitable[None]]
OnSettled = Callable[[int], Awaitable[None]]


async def _nothing(_: object) -> None:
    return None


class Clock:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        on_closed: OnClosed = _nothing,
        on_settled: OnSettled = _nothing,
        tick: float = 2.0,
    ) -> None:
        self.pool = pool
        self.on_closed = on_closed
        self.on_settled = on_settled
        self.tick = tick
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="predictions-clock")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = Backoff(first=1.0, cap=10.0)
        while True:
            delay = self.tick
            try:
                await self.round()
                backoff.reset()
            except Exception as exc:
                if outages.note(exc, "the predictions clock") is None:
                    log.exception("predictions: a clock round failed")
                delay = backoff.next()
            self.rounds += 1
            await asyncio.sleep(delay)

    async def round(self) -> tuple[int, int, int]:
        """One look: (closed, paid, refunded) by this call."""
        closed = await settle.close_due(self.pool)
        for prediction in closed:
            log.info("predictions: #%s closed for bets", prediction.id)
            await self._tell(self.on_closed, prediction)
        paid = await settle.pay_pending(self.pool)
        refunded = await settle.refund_due(self.pool)
        for settled, _ in refunded:
            log.info("predictions: #%s refunded automatically", settled.id)
        for prediction_id in await settle.unannounced(self.pool):
            await self._tell(self.on_settled, prediction_id)
        return len(closed), len(paid), len(refunded)

    async def _tell(self, callback: Callable[[object], Awaitable[None]], what: object) -> None:
        try:
            await callback(what)
        except Exception:
            # Discord refused or failed: the state change stands; log and carry on.
            log.exception("predictions: could not tell Discord about %s", what)
