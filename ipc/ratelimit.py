"""Discord's global REST limit, shared by every process and pod of the bot.

discord.py limits each process on its own; W processes can send W times the global limit (50
requests per second per bot) and earn 429s, then a temporary ban. `GlobalLimiter` hands out
slots from one sliding window kept in Redis: a Lua script, on Redis's clock, admits a request
only if fewer than `rate` were admitted in the last `window` seconds, so no configuration of
processes can exceed it. One round trip per request on the hot path.

A global 429 seen by any process pauses everyone for its `retry_after`. If Redis is
unreachable, each process falls back to a local window of its share (`rate / clusters`),
logs it once, and goes back to the shared window when Redis answers again.

Interaction callbacks and webhook follow-ups are exempt from the global limit on Discord, and
here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ipc.client import Keys

log = logging.getLogger(__name__)

# KEYS: window zset, sequence counter, pause key.  ARGV: rate, window ms.
# Returns 0 when admitted, else milliseconds to wait.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
if paused > now then
  return paused - now
end
local rate, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= rate then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
local seq = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], now, seq)
redis.call('PEXPIRE', KEYS[1], window * 2)
redis.call('PEXPIRE', KEYS[2], window * 2)
return 0
"""

# KEYS: pause key.  ARGV: pause ms.  Extends the pause, never shortens it.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untl = now + tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[1]) or '0') < untl then
  redis.call('SET', KEYS[1], untl, 'PX', tonumber(ARGV[1]) + 1000)
end
return untl
"""

EXEMPT_PREFIXES = ("/interactions/", "/webhooks/")


def is_exempt(path: str) -> bool:
    """Interaction callbacks and webhook follow-ups don't count against the global limit."""
    return any(p in path for p in EXEMPT_PREFIXES)


class GlobalLimiter:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        rate: int = 50,
        window: float = 1.0,
        clusters: int = 1,
        margin: float = 0.1,
    ) -> None:
        if rate < 1 or window <= 0 or clusters < 1:
            raise ValueError("rate >= 1, window > 0 and clusters >= 1 are required")
        self.redis = redis
        self.rate = rate
        # A slot is granted a moment before the request reaches Discord; a slightly longer
        # window keeps jitter on the way from turning 50 into 51 in Discord's window.
        self.window = window * (1 + margin)
        self.keys = [
            keys("rest", "global", "window"),
            keys("rest", "global", "seq"),
            keys("rest", "global", "pause"),
        ]
        self._admit = redis.register_script(_ADMIT)
        self._pause = redis.register_script(_PAUSE)
        self._local_rate = max(1, rate // clusters)
        self._local: deque[float] = deque()
        self._local_pause = 0.0
        self._degraded = False
        self.waited = 0.0  # seconds spent waiting, for metrics and benchmarks
        self.calls = 0

    async def acquire(self) -> None:
        """Wait for a slot in the shared window (or the local one without Redis)."""
        self.calls += 1
        started = time.monotonic()
        while True:
            try:
                wait_ms = int(
                    await self._admit(keys=self.keys, args=[self.rate, int(self.window * 1000)])
                )
            except (RedisError, OSError) as exc:
                await self._acquire_local(exc)
                break
            if self._degraded:
                self._degraded = False
                log.warning("REST limiter: Redis is back; shared global limit resumed")
            if wait_ms == 0:
                break
            await asyncio.sleep(wait_ms / 1000)
        self.waited += time.monotonic() - started

    async def pause(self, seconds: float) -> None:
        """A global 429: hold every process back for `seconds`."""
        self._local_pause = max(self._local_pause, time.monotonic() + seconds)
        try:
            await self._pause(keys=[self.keys[2]], args=[int(seconds * 1000)])
        except (RedisError, OSError) as exc:
            log.debug("REST limiter: could not share a pause: %s", exc)

    async def _acquire_local(self, exc: BaseException) -> None:
        if not self._degraded:
            self._degraded = True
            log.warning(
                "REST limiter: Redis unreachable (%s); limiting this process to %d "
                "requests per %.2fs",
                exc,
                self._local_rate,
                self.window,
            )
        while True:
            now = time.monotonic()
            if self._local_pause > now:
                await asyncio.sleep(self._local_pause - now)
                continue
            while self._local and now - self._local[0] >= self.window:
                self._local.popleft()
            if len(self._local) < self._local_rate:
                self._local.append(now)
                return
            await asyncio.sleep(self._local[0] + self.window - now)


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
        self._checked = 0.0
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

    async def _refresh(self, now: float) -> None:
        values = await self.redis.mget(self._minute_keys(now))
        self.count = sum(int(v) for v in values if v is not None)
        self._checked = time.monotonic()
        if self.count < self.warn_at:
            self._warned = False

    async def check(self) -> None:
        """Raise RequestRefused when the bot is at the refusal threshold."""
        if time.monotonic() - self._checked > 1.0:
            with contextlib.suppress(RedisError, OSError):
                await self._refresh(time.time())
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
