"""Wake-ups over Redis pub/sub: a feature that schedules a job publishes a notice, and every
runner that hears it looks at the table again at once, instead of at its next poll.

Only a hint: a lost notice costs a runner at most its `max_sleep`, since the table is the truth.
The channel is one subscription on the process's shared pub/sub connection
(ipc/subscriber.py), which reconnects after an outage and logs it once; each time the
subscription is made again the runner is woken too, for the notices lost meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ipc.client import count_redis_error
from ipc.subscriber import Subscriber, Subscription

log = logging.getLogger(__name__)


class WakeChannel:
    def __init__(self, redis: aioredis.Redis, channel: str, on_notice: Callable[[], None]) -> None:
        self.redis = redis
        self.channel = channel
        self.on_notice = on_notice
        self._subscription: Subscription | None = None

    async def publish(self) -> None:
        """Tell every runner to look again (a failure is logged: they find it at their poll)."""
        try:
            await self.redis.publish(self.channel, b"new")
        except (RedisError, OSError) as exc:
            count_redis_error("jobs")
            log.info("jobs: could not announce a new job: %s", exc)

    async def start(self) -> None:
        """Listen (without waiting for Redis: while it is away, the poll remains)."""
        if self._subscription is None:
            self._subscription = await Subscriber.of(self.redis).subscribe(
                self.channel, lambda _channel, _data: self.on_notice(), on_subscribed=self.on_notice
            )

    async def subscribed(self) -> None:
        """Returns once Redis confirmed the subscription (a publish from now on arrives)."""
        assert self._subscription is not None, "not started"
        await self._subscription.subscribed()

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
