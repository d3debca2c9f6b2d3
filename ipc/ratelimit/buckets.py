"""Per-route buckets shared by every process: what responses' `X-RateLimit-*` headers say goes to
Redis (`Buckets`), where the admit script (admission.py) holds a call back while its bucket is
empty (the package's docstring has the whole)."""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ipc.client import Degraded

log = logging.getLogger("ipc.ratelimit")  # the package's one logger (admission.py)

# KEYS: route -> bucket hash.  ARGV: route, major, bucket, remaining, reset-after ms,
# retry-after ms (a 429 on this bucket, else 0), bucket key prefix.
# Within one window the lower count wins (other processes' calls may be in flight); a reset
# later than the known one starts a new window.
_LEARN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], 86400000)
local bkey = ARGV[7] .. ARGV[3] .. ':' .. ARGV[2]
local remaining = tonumber(ARGV[4])
local new_reset = now + tonumber(ARGV[5])
local st = redis.call('HMGET', bkey, 'remaining', 'reset')
local reset = tonumber(st[2] or '0')
if reset > now and new_reset <= reset + 250 then
  remaining = math.min(remaining, tonumber(st[1] or remaining))
  new_reset = math.max(new_reset, reset)
end
local retry = tonumber(ARGV[6])
if retry > 0 then
  remaining = 0
  new_reset = math.max(new_reset, now + retry)
end
redis.call('HSET', bkey, 'remaining', remaining, 'reset', new_reset)
redis.call('PEXPIRE', bkey, new_reset - now + 1000)
return new_reset - now
"""


class Buckets:
    """What responses said of the routes' buckets, shared with every process when it is news
    (`learn`); nothing is shared while Redis is unreachable (`redis_state`, the shared window's).
    """

    def __init__(
        self, redis: aioredis.Redis, routes_key: str, bucket_prefix: str, redis_state: Degraded
    ) -> None:
        self.routes_key = routes_key  # route -> bucket hash
        self.bucket_prefix = bucket_prefix
        self.redis_state = redis_state
        self._learn = redis.register_script(_LEARN)
        # What this process already told Redis: route -> bucket, and (bucket, major) -> the
        # monotonic time its current window ends. Only news costs a round trip.
        self._routes: dict[str, str] = {}
        self._windows: dict[tuple[str, str], float] = {}
        self.learned = 0  # round trips spent sharing bucket news

    async def learn(  # noqa: PLR0917 - the fields of one X-RateLimit header set
        self,
        route: str,
        major: str,
        bucket: str,
        remaining: int,
        reset_after: float,
        retry_after: float = 0.0,
        *,
        owned: bool = False,
    ) -> None:
        """Share what a response's `X-RateLimit-*` headers (or a bucket 429) said.

        Costs a round trip only for news: a route not yet mapped, a new window, an exhausted
        bucket or a 429. Within a known window Redis already counts every process's calls.
        For a bucket the request's command owns (`owned`: `major` is in its reservation's
        `owns`) only an exhausted bucket or a 429 is news: no other process sends in it, save
        the odd call from another cluster.
        """
        now = time.monotonic()
        window_key = (bucket, major)
        no_news = retry_after <= 0 and remaining > 0
        if self.redis_state.down or (
            no_news
            and (
                owned
                or (self._routes.get(route) == bucket and self._windows.get(window_key, 0.0) > now)
            )
        ):
            return
        try:
            left_ms = await self._learn(
                keys=[self.routes_key],
                args=[
                    route,
                    major,
                    bucket,
                    max(0, remaining),
                    max(0, int(reset_after * 1000)),
                    max(0, int(retry_after * 1000)),
                    self.bucket_prefix,
                ],
            )
        except (RedisError, OSError) as exc:
            log.debug("REST limiter: could not share a bucket: %s", exc)
            return
        self.learned += 1
        self._routes[route] = bucket
        self._windows[window_key] = now + int(left_ms) / 1000
        if len(self._windows) > 10_000:
            self._windows = {k: v for k, v in self._windows.items() if v > now}
