"""A test-only extension: the worker's job runner keeps the time of a clock the test moves.

The clock is the real time plus an offset in seconds, kept in Redis (`test:clock`, under the
bot's prefix) and announced on the same name's channel: a test that moves it forward (`set`,
then `publish`) makes what is due "in a minute" due now, in every worker, without waiting; a
worker that starts later (restarted after a SIGKILL) reads the offset first. Load it before the
features whose jobs it should govern."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot import jobs
from ipc.subscriber import Subscriber


class _Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)


async def setup(bot: Any) -> None:
    clock = _Clock()
    key = bot.keys("test", "clock")
    runner = jobs.of(bot)
    runner.clock = clock
    if bot.rest_only:
        return

    def moved(_: str, data: bytes) -> None:
        clock.offset = float(data)
        runner.wake()

    await Subscriber.of(bot.redis).subscribe(key, moved)
    stored = await bot.redis.get(key)
    if stored is not None:
        clock.offset = float(stored)
