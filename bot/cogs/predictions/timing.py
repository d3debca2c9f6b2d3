"""Closing on time and the automatic refund, as jobs of the shared scheduler (bot/jobs): a
prediction's close is scheduled with it, for its `closes_at`, in the transaction that creates
it; the close schedules the refund, `refund_hours` later, in its own.

Each handler makes its change inside `run.complete()`: the job is marked done in the same
transaction as the state change, its ledger post and its audit row, so it happens exactly once
across clusters and restarts (the scheduler's guarantee; the state change is conditional
besides, so the clock's backstop, clock.py, can race it harmlessly). What Discord is told (the
message edited, the close or the result posted) follows the commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg

from bot import jobs
from bot.cogs.predictions import settle
from bot.cogs.predictions.presenter import Presenter
from bot.cogs.predictions.store import Prediction
from bot.points.settings import SettingsStore

CLOSE = "predictions.close"
REFUND = "predictions.refund"


async def schedule_close(conn: asyncpg.Connection, prediction: Prediction) -> None:
    """In the transaction that creates the prediction; call `jobs.of(bot).notify()` after it."""
    await jobs.store.schedule(
        conn,
        CLOSE,
        f"close:{prediction.id}",
        prediction.closes_at,
        guild_id=prediction.guild_id,
        payload={"p": prediction.id},
    )


class Timing:
    """The two kinds' handlers. `notify` wakes every runner (`jobs.of(bot).notify`)."""

    def __init__(
        self,
        presenter: Presenter,
        settings: SettingsStore,
        notify: Callable[[], Awaitable[None]],
    ) -> None:
        self.presenter = presenter
        self.settings = settings
        self.notify = notify

    def kinds(self) -> list[jobs.Kind]:
        return [jobs.Kind(CLOSE, self.close, late_after=30.0), jobs.Kind(REFUND, self.refund)]

    async def close(self, run: jobs.Run) -> None:
        prediction_id = int(run.job.payload["p"])
        guild_id = run.job.guild_id
        hours = (await self.settings.get(guild_id)).refund_hours if guild_id else 120
        async with run.complete() as conn:
            closed = await settle.close_one(conn, prediction_id)
            if closed is not None and closed.closed_at is not None:
                await jobs.store.schedule(
                    conn,
                    REFUND,
                    f"refund:{prediction_id}",
                    closed.closed_at + timedelta(hours=hours),
                    guild_id=closed.guild_id,
                    payload={"p": prediction_id},
                )
        if closed is not None:
            await self.notify()
            await self.presenter.closed(closed)

    async def refund(self, run: jobs.Run) -> None:
        prediction_id = int(run.job.payload["p"])
        async with run.complete() as conn:
            done = await settle.refund_one(conn, prediction_id)
        if done is not None:
            await self.presenter.announce(prediction_id)
