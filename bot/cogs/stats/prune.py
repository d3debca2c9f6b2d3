"""Pruning the day rows: one job a day (kind `stats.prune`, key `prune:<date>`, any cluster)
drops what is older than report.KEEP_DAYS (400 days: `stats history` reaches 365) and schedules
the next day's in the transaction that completes it. Every worker schedules today's at start
(the key makes it one job)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING

from bot import jobs
from bot.cogs.stats import report, store

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

KIND = "stats.prune"
AT = time(4, 0)  # UTC


def due(day: datetime) -> tuple[str, datetime]:
    d = day.date()
    return f"prune:{d.isoformat()}", datetime.combine(d, AT, UTC)


class Pruner:
    def __init__(self, bot: Guildhouse) -> None:
        self.bot = bot

    def kind(self) -> jobs.Kind:
        return jobs.Kind(KIND, self.run, lease=120.0)

    async def ensure(self) -> None:
        key, at = due(datetime.now(UTC))
        await jobs.of(self.bot).schedule(KIND, key, at)

    async def run(self, run: jobs.Run) -> None:
        now = datetime.now(UTC)
        before = now.date() - timedelta(days=report.KEEP_DAYS)
        await store.prune(self.bot.pool, before)  # idempotent: a second run finds nothing
        key, at = due(now + timedelta(days=1))
        async with run.complete() as conn:
            await jobs.store.schedule(conn, KIND, key, at)
        await jobs.of(self.bot).notify()
