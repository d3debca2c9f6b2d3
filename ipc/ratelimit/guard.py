"""Discord's ban after 10,000 invalid requests in 10 minutes, kept away from: `InvalidRequestGuard`
counts every process's invalid answers and refuses calls near the ban (`RequestRefused`)."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ipc.client import Keys

log = logging.getLogger("ipc.ratelimit")  # the package's one logger (admission.py)


# The background refresh starts this long (s) after the call that found the copy stale, so its
# round trip runs after that call's request, not beside it.
REFRESH_AFTER = 0.02


class RequestRefused(Exception):
    """A REST call was not sent because the bot is close to Discord's invalid-request ban."""


class InvalidRequestGuard:
    """Counts 401/403/429 answers across every process in a sliding 10 minutes (one counter per
    minute in Redis); past `warn_at` it logs, past `refuse_at` it refuses further calls until
    the count drops, so the bot never reaches Discord's ban at 10,000.

    Counting costs Redis round trips only when an invalid answer arrives; the check before each
    call reads a local copy refreshed at most once a second.
    """

    INVALID = frozenset({401, 403, 429})

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        warn_at: int = 5000,
        refuse_at: int = 9000,
        window: float = 600.0,
    ) -> None:
        if not 0 < warn_at <= refuse_at:
            raise ValueError("0 < warn_at <= refuse_at is required")
        self.redis = redis
        self.keys = keys
        self.warn_at = warn_at
        self.refuse_at = refuse_at
        self.minutes = max(1, math.ceil(window / 60))
        self.count = 0
        self.round_trips = 0  # for benchmarks
        self._checked = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self._refresh_timer: asyncio.TimerHandle | None = None
        self._warned = False

    def _minute_keys(self, now: float) -> list[str]:
        minute = int(now // 60)
        return [
            self.keys("rest", "invalid", m) for m in range(minute - self.minutes + 1, minute + 1)
        ]

    async def record(self, status: int) -> None:
        if status not in self.INVALID:
            return
        now = time.time()
        current = self._minute_keys(now)[-1]
        self.round_trips += 2
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.incr(current)
                pipe.expire(current, self.minutes * 60 + 60)
                await pipe.execute()
            await self._refresh(now)
        except (RedisError, OSError):
            self.count += 1  # counted locally until Redis is back
        if self.count >= self.warn_at and not self._warned:
            self._warned = True
            log.warning(
                "%d invalid REST requests (401/403/429) in the last %d minutes; "
                "Discord bans the bot at 10,000",
                self.count,
                self.minutes,
            )

    def _start_refresh(self) -> None:
        self._refresh_timer = None
        self._refreshing = asyncio.create_task(
            self._refresh_quietly(), name="invalid-request-count"
        )

    async def _refresh_quietly(self) -> None:
        try:
            await self._refresh(time.time())
        except (RedisError, OSError):
            self._checked = time.monotonic()  # Redis is down: try again in a second

    async def _refresh(self, now: float) -> None:
        values = await self.redis.mget(self._minute_keys(now))
        self.count = sum(int(v) for v in values if v is not None)
        self._checked = time.monotonic()
        if self.count < self.warn_at:
            self._warned = False

    async def check(self) -> None:
        """Raise RequestRefused when the bot is at the refusal threshold.

        Only a process's first check waits for the shared count; after that the local copy is
        refreshed in the background, at most once a second and a moment after the call that
        found it stale (REFRESH_AFTER), so no REST call waits for it or runs beside it."""
        if not self._checked:
            self.round_trips += 1
            await self._refresh_quietly()
        elif (
            time.monotonic() - self._checked > 1.0
            and self._refresh_timer is None
            and (self._refreshing is None or self._refreshing.done())
        ):
            self.round_trips += 1
            self._refresh_timer = asyncio.get_running_loop().call_later(
                REFRESH_AFTER, self._start_refresh
            )
        if self.count >= self.refuse_at:
            log.error(
                "refusing a REST call: %d invalid requests in the last %d minutes "
                "(Discord bans at 10,000)",
                self.count,
                self.minutes,
            )
            raise RequestRefused(
                f"{self.count} invalid requests in {self.minutes} minutes; calls are held back "
                "to avoid Discord's ban"
            )
