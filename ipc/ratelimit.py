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
import logging
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
