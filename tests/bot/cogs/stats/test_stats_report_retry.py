"""A report's second attempt (the first runner died after sending) finds the first one by its
nonce (its own, from the bot, since the first claim) and doesn't send again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import discord

from bot import jobs
from bot.cogs.stats import reports

ME = 42


@dataclass
class FakeMessage:
    id: int
    author: Any
    embeds: list[discord.Embed]


@dataclass
class FakeChannel:
    messages: list[FakeMessage]
    asked_after: list[datetime] = field(default_factory=list)

    async def history(self, *, after: datetime, limit: int) -> AsyncIterator[FakeMessage]:
        self.asked_after.append(after)
        for m in self.messages[:limit]:
            yield m


@dataclass
class FakeBot:
    user: Any


def job(attempt: int, job_id: int = 7) -> jobs.Job:
    now = datetime(2026, 12, 4, 9, tzinfo=UTC)
    return jobs.Job(
        id=job_id,
        kind=reports.KIND,
        key="1:daily:2026-12-03",
        guild_id=1,
        due_at=now,
        payload={"period": "daily:2026-12-03"},
        attempt=attempt,
        first_claimed_at=now,
        claimed_at=now + timedelta(minutes=2),
        late_by=0.0,
        late=False,
    )


def report_message(msg_id: int, author: int, job_id: int) -> FakeMessage:
    e = discord.Embed(title="Daily statistics")
    e.set_footer(text=reports.nonce(job_id))
    return FakeMessage(msg_id, discord.Object(author), [e])


async def test_the_earlier_report_is_found_by_its_nonce_since_the_first_claim() -> None:
    channel = FakeChannel(
        [
            report_message(1, ME, 6),  # yesterday's report: another job
            report_message(2, 99, 7),  # someone else's message quoting the nonce
            report_message(3, ME, 7),
        ]
    )
    r = reports.Reports(FakeBot(discord.Object(ME)))  # type: ignore[arg-type]
    found = await r._sent_before(channel, job(attempt=2))  # type: ignore[arg-type]
    assert found == 3
    assert channel.asked_after == [job(2).first_claimed_at - reports.CLOCK_SLACK]


async def test_nothing_found_means_send() -> None:
    channel = FakeChannel([report_message(1, ME, 6)])
    r = reports.Reports(FakeBot(discord.Object(ME)))  # type: ignore[arg-type]
    assert await r._sent_before(channel, job(attempt=2)) is None  # type: ignore[arg-type]
