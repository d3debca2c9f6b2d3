"""The launcher's control channel through a Redis outage: the process's one WARNING, and the
subscriber's own line (the channel is on the process's one pub/sub connection,
ipc/subscriber.py), at INFO, once, however many times it retries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import cast

import pytest
import redis.asyncio as aioredis
from waits import until

from cluster.embedded import free_port
from cluster.rolling import control_loop
from cluster.workers import Supervisor
from ipc.client import Keys, redis_outage


@pytest.fixture
def redis_reachable() -> Iterator[None]:
    """The process's record reachable before (an earlier test may have left an outage on it)
    and after (this test leaves one)."""
    redis_outage.reachable()
    yield
    redis_outage.reachable()


@pytest.mark.usefixtures("redis_reachable")
async def test_a_lost_control_subscription_is_one_warning_for_the_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # No redis-py retries: each of the loop's attempts fails at once.
    dead = aioredis.Redis(host="127.0.0.1", port=free_port(), retry=None)
    # Nothing asks for a restart: the supervisor is never used.
    loop = asyncio.create_task(control_loop(dead, Keys("x:"), cast(Supervisor, None)))
    try:
        # The subscriber retries with a backoff from 0.5 s: wait for its second attempt.
        await until(
            "the loop retries (a second pub/sub line)",
            lambda: sum(r.name == "ipc.subscriber" for r in caplog.records) >= 2,
        )
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await dead.aclose()
    assert redis_outage.down
    lost = [r.levelname for r in caplog.records if r.name == "ipc.subscriber"]
    assert lost[:2] == ["INFO", "DEBUG"]
    warnings = [r.message for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("Redis is unreachable (the pub/sub subscriber: ")
