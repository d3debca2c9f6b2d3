"""The shared global window in Redis that admits each REST request (`Admission`), and the local
window a process keeps to while Redis is unreachable (the package's docstring has the whole).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import MaxConnectionsError, RedisError

from ipc.client import Degraded, ScriptCall

# The package's one logger: Degraded names the limiter's Redis errors after its last part
# (operation "ratelimit" in guildhouse_redis_errors_total).
log = logging.getLogger("ipc.ratelimit")

# KEYS: window zset, sequence counter, pause key, route -> bucket hash.
# ARGV: rate, window ms, exempt (1: skip the global window), route, major, bucket key prefix.
# Returns 0 when admitted, else milliseconds to wait: negative for a per-route bucket (a known
# bucket with nothing left holds the call until it resets), positive for the global window or
# pause. Otherwise the call takes one from its bucket's remaining count.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local bkey, reset = nil, 0
if ARGV[4] ~= '' then
  local bucket = redis.call('HGET', KEYS[4], ARGV[4])
  if bucket then
    bkey = ARGV[6] .. bucket .. ':' .. ARGV[5]
    local st = redis.call('HMGET', bkey, 'remaining', 'reset')
    reset = tonumber(st[2] or '0')
    if reset > now and tonumber(st[1] or '1') <= 0 then
      return now - reset
    end
  end
end
if ARGV[3] ~= '1' then
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
end
if bkey and reset > now then
  redis.call('HINCRBY', bkey, 'remaining', -1)
end
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

# A process back on the shared window adds the requests it sent on its local window (still in
# the window) to it, so the shared count covers them.
# KEYS: window zset, sequence counter.  ARGV: window ms, then each request's age in ms.
_REJOIN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
for i = 2, #ARGV do
  local seq = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[1], now - tonumber(ARGV[i]), seq)
end
redis.call('PEXPIRE', KEYS[1], window * 2)
redis.call('PEXPIRE', KEYS[2], window * 2)
return #ARGV - 1
"""

# This process's Redis connection pool is full (its own calls, not an outage): a request waits
# this long (s) for a connection and asks again.
POOL_FULL_WAIT = 0.01


class Admission:
    """A slot of the shared global window for each request (and room in its route's bucket), or
    of this process's share of the rate (`rate / clusters`) in a local window while Redis is
    unreachable.

    The local window counts every request the process sends, through Redis or not (`record`), so
    a switch to it starts from what the process has just sent. Those sent while Redis was
    unreachable are added to the shared window when Redis answers again (`_rejoin`); for a
    window's length after that the process also keeps to its share, since the other processes
    may still be on theirs. A global 429 (`pause`) holds back every process, this one on its own
    clock as well (`paused_until`), which the local window and the allotment keep to.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: list[str],
        bucket_prefix: str,
        *,
        rate: int,
        window: float,
        clusters: int,
    ) -> None:
        self.rate = rate
        self.window = window  # seconds, with GlobalLimiter's margin
        self.keys = keys  # window zset, sequence counter, pause key, route -> bucket hash
        self.bucket_prefix = bucket_prefix
        self.script = redis.register_script(_ADMIT)
        self._pause = redis.register_script(_PAUSE)
        self._rejoin_script = redis.register_script(_REJOIN)
        self._local_rate = max(1, rate // clusters)
        self._local: deque[float] = deque()  # this process's requests in the last window
        self._offline: list[float] = []  # those sent while Redis was unreachable
        self._rejoined_until = 0.0  # back from an outage: also keep to the local share until
        self._turn = asyncio.Lock()  # one task at a time waits for the global window
        self._turn_holder: asyncio.Task[Any] | None = None
        self.paused_until = 0.0  # a global 429 seen by this process (monotonic)
        self.redis_state = Degraded(
            log,
            "REST limiter: Redis unreachable (%s); limiting this process to "
            f"{self._local_rate} requests per {self.window:.2f}s",
            "REST limiter: Redis is back; shared global limit resumed",
            what="the REST limiter",
        )

    def args(self, route: str, major: str, exempt: bool) -> list[str | int]:
        return [self.rate, int(self.window * 1000), int(exempt), route, major, self.bucket_prefix]

    def call(self, route: str, major: str) -> ScriptCall:
        """The admit script for a request to `route`/`major`, to run in another component's
        round trip (`GlobalLimiter.buy_call`)."""
        return ScriptCall(self.script, self.keys, self.args(route, major, False))

    async def admit(self, route: str, major: str, exempt: bool) -> None:
        """Wait until the shared window (and the route's bucket) admits this request (without
        Redis: the local window).

        One task of the process at a time waits for the global window (`_turn`): the others
        queue here instead of asking Redis every time a slot frees, whose burst of round trips
        could fill the connection pool. A full pool is this process's, not an outage: the
        shared window still counts every process, so the request waits for a connection instead
        of falling back to the local window. Back from an outage, for a window's length the
        request also needs room in this process's share (the others may still be on theirs)."""
        args = self.args(route, major, exempt)
        counted = False  # already taken from the local window, which records it
        try:
            while True:
                if not self.redis_state.should_try():
                    if counted:
                        self._offline.append(time.monotonic())
                    else:
                        await self._acquire_local(offline=True)
                    return
                if self._turn.locked() and self._turn_holder is not asyncio.current_task():
                    await self._turn.acquire()
                    self._turn_holder = asyncio.current_task()
                if not counted and time.monotonic() < self._rejoined_until:
                    await self._acquire_local()
                    counted = True
                try:
                    if self.redis_state.down:
                        await self._rejoin()
                    wait_ms = int(await self.script(keys=self.keys, args=args))
                except MaxConnectionsError:
                    await asyncio.sleep(POOL_FULL_WAIT)
                    continue
                except (RedisError, OSError) as exc:
                    self.redis_state.failed(exc)
                    if counted:
                        self._offline.append(time.monotonic())
                    else:
                        await self._acquire_local(offline=True)
                    return
                self._succeeded()
                if wait_ms == 0:
                    if not counted and not exempt:
                        self.record(time.monotonic())
                    return
                if wait_ms < 0:  # the route's bucket is empty: no reason to hold the others back
                    self._leave_turn()
                    await asyncio.sleep(-wait_ms / 1000)
                    continue
                if self._turn_holder is not asyncio.current_task():
                    await self._turn.acquire()
                    self._turn_holder = asyncio.current_task()
                await asyncio.sleep(wait_ms / 1000)
        finally:
            self._leave_turn()

    def _leave_turn(self) -> None:
        """This task no longer waits for the global window: the next in the queue may."""
        if self._turn_holder is asyncio.current_task():
            self._turn_holder = None
            self._turn.release()

    def _succeeded(self) -> None:
        if self.redis_state.down:
            self._rejoined_until = time.monotonic() + self.window
        self.redis_state.succeeded()

    async def _rejoin(self) -> None:
        """Back from an outage: add the requests this process sent on its local window, and
        that are still in the window, to the shared one."""
        now = time.monotonic()
        ages = [int((now - t) * 1000) for t in self._offline if now - t < self.window]
        if ages:
            await self._rejoin_script(keys=self.keys[:2], args=[int(self.window * 1000), *ages])
        self._offline.clear()

    def record(self, now: float) -> None:
        """A request of this process leaves now: the local window counts it, so that a switch
        to it (Redis unreachable) starts from what this process has just sent."""
        while self._local and now - self._local[0] >= self.window:
            self._local.popleft()
        self._local.append(now)

    async def pause(self, seconds: float) -> None:
        """A global 429: hold every process back for `seconds`."""
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)
        if self.redis_state.down:
            return
        try:
            await self._pause(keys=[self.keys[2]], args=[int(seconds * 1000)])
        except (RedisError, OSError) as exc:
            log.debug("REST limiter: could not share a pause: %s", exc)

    async def _acquire_local(self, *, offline: bool = False) -> None:
        """A slot of this process's share of the rate, counted with what it sent in the last
        window whichever way; `offline`: Redis doesn't know of it (added back on `_rejoin`)."""
        while True:
            now = time.monotonic()
            if self.paused_until > now:
                await asyncio.sleep(self.paused_until - now)
                continue
            while self._local and now - self._local[0] >= self.window:
                self._local.popleft()
            if len(self._local) < self._local_rate:
                self._local.append(now)
                if offline:
                    self._offline.append(now)
                return
            await asyncio.sleep(self._local[0] + self.window - now)
