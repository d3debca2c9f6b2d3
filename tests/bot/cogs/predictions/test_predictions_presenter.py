"""The live totals are edited at most once per refresh window, whatever the betting rate and
however many workers take bets (they share the window through Redis)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import redis.asyncio as aioredis

from bot.cogs.predictions.presenter import Presenter
from ipc.client import Keys

pytestmark = pytest.mark.integration


class Counting(Presenter):
    def __init__(self, bot: Any, edits: list[int]) -> None:
        super().__init__(bot, SimpleNamespace(settings=None, board=None))  # type: ignore[arg-type]
        self.edits = edits
        self.refresh_seconds = 2.0  # far longer than the burst takes

    async def refresh(self, guild_id: int, prediction_id: int) -> None:
        self.edits.append(prediction_id)


async def test_a_burst_of_bets_on_two_workers_is_one_edit(
    redis: aioredis.Redis, keys: Keys
) -> None:
    bot = SimpleNamespace(redis=redis, keys=keys)
    edits: list[int] = []
    workers = [Counting(bot, edits), Counting(bot, edits)]
    for _ in range(100):  # a burst: 100 bets on 7, half on each worker, 3 on 8
        for worker in workers:
            await worker.refresh_soon(1, 7)
    for _ in range(3):
        await workers[1].refresh_soon(1, 8)
    for worker in workers:
        await worker.idle()
    assert sorted(edits) == [7, 8]
    # the window is over (the edit came at its end): the next bet brings the next edit
    await workers[0].refresh_soon(1, 7)
    await workers[0].idle()
    assert sorted(edits) == [7, 7, 8]
