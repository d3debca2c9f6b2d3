"""The subscriber's watchdog on an idle, healthy connection (ipc/subscriber.py, `_read`): a
PING's pong that arrives while the PING is still being sent (uvloop, the workers' loop, writes
and reads within that await) counts as an answer. It did not: every second watchdog period the
connection was declared dead and replaced, and with it every subscriber's state dropped (the
throttles' held windows, the guild settings caches)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest
import redis.asyncio as aioredis
import uvloop

from ipc.subscriber import Subscriber

pytestmark = pytest.mark.integration

T = TypeVar("T")

# The watchdog's period here (30 s in a worker): short, for many periods in a few seconds, but
# not so short that a loaded machine (the suite runs in four processes on two cores) delays a
# pong by a whole period.
PERIOD = 0.05


async def idle_for(redis_url: str, periods: int) -> tuple[int, int]:
    """(times subscribed, connections made) over `periods` watchdog periods of silence."""
    async with aioredis.Redis.from_url(redis_url) as redis:
        subscriber = Subscriber(redis, health_every=PERIOD)
        confirmed: list[int] = []
        sub = await subscriber.subscribe(
            "watchdog-test", lambda *_: None, on_subscribed=lambda: confirmed.append(1)
        )
        await sub.subscribed()
        # Nothing is published: all the connection carries is the watchdog's PINGs and pongs.
        await asyncio.sleep(PERIOD * periods)
        connections = subscriber.connections
        await sub.close()
        await subscriber.close()
        return len(confirmed), connections


async def bounded(coro: Awaitable[T], within: float) -> T:
    async with asyncio.timeout(within):  # a hang fails the test rather than the suite
        return await coro


def test_an_idle_healthy_connection_is_kept(redis_url: str) -> None:
    confirmed, connections = uvloop.run(bounded(idle_for(redis_url, 100), 60))
    assert (confirmed, connections) == (1, 1)
