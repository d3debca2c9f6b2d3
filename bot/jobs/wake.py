"""Wake-ups over Redis pub/sub: a feature that schedules a job publishes a notice, and every
runner that hears it looks at the table again at once, instead of at its next poll.

Only a hint: a lost notice costs a runner at most its `max_sleep`, since the table is the truth.
The subscription is renewed whenever Redis is back; the outage is logged once (bot/outages.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bot import outages
from ipc.client import count_redis_error

log = logging.getLogger(__name__)


class WakeChannel:
    def __init__(
        self, redis: aioredis.Redis, channel: str, on_notice: Callable[[], None], *, cap: float
    ) -> None:
        self.redis = redis
        self.channel = channel
        self.on_notice = on_notice
        self.cap = cap
        self.subscribed = asyncio.Event()

    async def publish(self) -> None:
        """Tell every runner to look again (a failure is logged: they find it at their poll)."""
        try:
            await self.redis.publish(self.channel, b"new")
        except (RedisError, OSError) as exc:
            count_redis_error("jobs")
            log.info("jobs: could not announce a new job: %s", exc)

    async def listen(self) -> None:
        backoff = outages.Backoff(cap=self.cap)
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as ps:
                    await ps.subscribe(self.channel)
                    self.subscribed.set()
                    outages.redis.reachable()
                    backoff.reset()
                    async for message in ps.listen():
                        if message and message.get("type") == "message":
                            self.on_notice()
            except Exception as exc:
                # Whatever ended it: without the channel, new jobs wait for the poll.
                self.subscribed.clear()
                if outages.note(exc, "the jobs wake-up channel") is None:
                    log.warning("jobs: wake-up channel lost (%s); polling meanwhile", exc)
                await asyncio.sleep(backoff.next())
