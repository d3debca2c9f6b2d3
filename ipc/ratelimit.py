"""Discord's global REST limit, shared by every process and pod of the bot.

discord.py limits each process on its own; W processes can send W times the global limit (50
requests per second per bot) and earn 429s, then a temporary ban. `GlobalLimiter` hands out
slots from one sliding window kept in Redis: a Lua script, on Redis's clock, admits a request
only if fewer than `rate` were admitted in the last `window` seconds, so no configuration of
processes can exceed it. One round trip per request on the hot path.

Per-route buckets are shared too: what a response's `X-RateLimit-*` headers say (the route's
bucket, what is left, when it resets) goes to Redis, and the same script that grants the global
slot takes one from the bucket's remaining count, or holds the call until the bucket resets when
it is empty. A bucket exhausted, or a 429 earned, by one process holds the others back.
Responses cost a second round trip only when they bring news (a new route or window, an empty
bucket, a 429).

A global 429 seen by any process pauses everyone for its `retry_after`. If Redis is
unreachable, each process falls back to a local window of its share (`rate / clusters`),
says so once at INFO (the outage's one WARNING is the process's: `ipc.client.redis_outage`),
and goes back to the shared window when Redis answers again, adding to it what it sent locally.
The local window counts every request the process sent, through Redis or not. A full
connection pool is not an outage: the request waits for a connection. One task of a process at
a time waits for the global window; the others queue behind it (docs/ratelimits.md).

Interaction callbacks and webhook follow-ups are exempt from the global limit on Discord, and
here.

A command's answer has one seam here: `reserve` a `Reservation` when the command is known (a
slot of this process's allotment, when there is one, and the buckets the command owns),
`buy_call`/`bought` to buy the slot in a round trip the caller makes anyway, pass the
reservation to `acquire` and `learn` for each request the command sends, and `settle` it when
the command ends (an unspent allotted slot goes back to the allotment).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import MaxConnectionsError, RedisError

from ipc.client import Degraded, Keys, ScriptCall

log = logging.getLogger(__name__)

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

# Slots granted ahead, for a process to use without a round trip each.
# KEYS: window zset, sequence counter, pause key.  ARGV: rate, window ms, slots wanted, valid ms,
# then the first member and count of an earlier allotment's unused slots (given back).
# Each slot is an entry of the window scored at the end of its validity, so it counts in the
# window from now until the last moment it could be used has left it: the window's sum stays
# what it would be had every slot been used at that last moment. Granted only while the window,
# with the grant, stays at most three quarters full: near the limit every call goes through
# _ADMIT and no slot is held back unused. Returns {granted, first member}.
_ALLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local want, valid = tonumber(ARGV[3]), tonumber(ARGV[4])
local back, unused = tonumber(ARGV[5]), tonumber(ARGV[6])
for i = back, back + unused - 1 do
  redis.call('ZREM', KEYS[1], i)
end
if tonumber(redis.call('GET', KEYS[3]) or '0') > now then
  return {0, 0}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local grant = math.min(want, math.floor(rate * 3 / 4) - redis.call('ZCARD', KEYS[1]))
if grant <= 0 then
  return {0, 0}
end
local last = redis.call('INCRBY', KEYS[2], grant)
for i = last - grant + 1, last do
  redis.call('ZADD', KEYS[1], now + valid, i)
end
redis.call('PEXPIRE', KEYS[1], window * 2 + valid)
redis.call('PEXPIRE', KEYS[2], window * 2 + valid)
return {grant, last - grant + 1}
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

EXEMPT_PREFIXES = ("/interactions/", "/webhooks/")

# An allotment is good for this long (s): a slot of it is an entry of the shared window that
# counts for ALLOT_FOR + the window, so a long allotment holds capacity that a short one frees.
ALLOT_FOR = 0.25
ALLOT_SLACK = 0.01  # stop using an allotment this long before Redis's end of it

# A prepaid slot is good for this long after Redis granted it. The shared window is `margin`
# (10 %) longer than Discord's, which covers a slot granted this long before its request leaves.
PREPAID_FOR = 0.05

# A refill that is not urgent starts this long (s) after the slot that called for it was taken:
# its round trip then doesn't run between that slot's request and its sending.
REFILL_AFTER = 0.005

# This process's Redis connection pool is full (its own calls, not an outage): a request waits
# this long (s) for a connection and asks again.
POOL_FULL_WAIT = 0.01


@dataclass(eq=False)
class Reservation:
    """What a command may spend on its answer (`GlobalLimiter.reserve`).

    A slot of the global window (and of the route's bucket) for its first request to
    `route`/`major`, taken ahead: from this process's allotment (`allotment` >= 0, no round
    trip), or bought in a round trip the caller made anyway (`GlobalLimiter.buy_call`, a
    command's throttle check), possibly still on its way (`pending`). The command's first
    message then costs no round trip of its own, or only what is left of one. Good once, until
    `until` (monotonic); 0 while no slot is held.

    `owns`: the major parameters (the command's channel and guild, on this process's shards)
    whose buckets no other process sends in, so their calls skip the shared bucket.
    """

    route: str = ""
    major: str = ""
    owns: tuple[str, ...] = ()
    until: float = 0.0
    pending: asyncio.Future[Any] | None = None
    allotment: int = -1  # the allotment the slot came from (GlobalLimiter's count), or -1
    spent: bool = False
    settled: bool = False

    @property
    def holds_slot(self) -> bool:
        return (self.until > 0 or self.pending is not None) and not (self.spent or self.settled)


def is_exempt(path: str) -> bool:
    """Interaction callbacks and webhook follow-ups don't count against the global limit."""
    return any(p in path for p in EXEMPT_PREFIXES)


_MAJOR_RESOURCES = ("channels", "guilds", "webhooks")


def route_of(method: str, path: str) -> tuple[str, str]:
    """(route, major parameter) of a REST call, as Discord buckets it.

    `GET /api/v10/channels/123/messages/456` -> (`GET /channels/{id}/messages/{id}`, `123`):
    ids become placeholders, except that the major parameter (the channel, guild or webhook the
    route starts with) keeps calls on different channels in different buckets.
    """
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api" and parts[1].startswith("v"):
        parts = parts[2:]
    major = ""
    out: list[str] = []
    for i, seg in enumerate(parts):
        if i == 1 and parts[0] in _MAJOR_RESOURCES:
            major = seg
            out.append("{major}")
        elif i == 2 and parts[0] == "webhooks":
            major += "/" + seg  # the webhook token is part of its major parameter
            out.append("{token}")
        elif seg.isdigit() or (i > 0 and parts[i - 1] == "reactions"):
            out.append("{id}")
        else:
            out.append(seg)
    return f"{method.upper()} /{'/'.join(out)}", major


class GlobalLimiter:
    """The shared global window, per-route buckets, allotments and the local fallback (the
    module's docstring).

    Over issue 24's 300 lines (about 380) because the fallback to the local window and the
    return from it (`_admitted`, `_rejoin`, `_record`) share the window's state with the shared
    path; splitting them into a class of their own is the next step, not yet taken.
    """

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
            keys("rest", "routes"),
        ]
        self.bucket_prefix = keys("rest", "bucket", "")
        self._admit = redis.register_script(_ADMIT)
        self._allot = redis.register_script(_ALLOT)
        self._pause = redis.register_script(_PAUSE)
        self._rejoin_script = redis.register_script(_REJOIN)
        self._learn = redis.register_script(_LEARN)
        # What this process already told Redis: route -> bucket, and (bucket, major) -> the
        # monotonic time its current window ends. Only news costs a round trip.
        self._routes: dict[str, str] = {}
        self._windows: dict[tuple[str, str], float] = {}
        self._local_rate = max(1, rate // clusters)
        self._local: deque[float] = deque()  # this process's requests in the last window
        self._offline: list[float] = []  # those sent while Redis was unreachable
        self._rejoined_until = 0.0  # back from an outage: also keep to the local share until
        self._turn = asyncio.Lock()  # one task at a time waits for the global window
        self._turn_holder: asyncio.Task[Any] | None = None
        self._local_pause = 0.0
        self._redis_state = Degraded(
            log,
            "REST limiter: Redis unreachable (%s); limiting this process to "
            f"{self._local_rate} requests per {self.window:.2f}s",
            "REST limiter: Redis is back; shared global limit resumed",
            what="the REST limiter",
        )
        # The current allotment: members first..first+granted-1 of the window, `used` of them
        # taken, good until `_allot_until` (monotonic). One refill in flight at a time.
        self._allot_first = 0
        self._allot_count = 0  # which allotment is current (a Reservation's `allotment`)
        self._allot_granted = 0
        self._allot_used = 0
        self._allot_until = 0.0
        self._allot_job: asyncio.Task[None] | None = None
        self._refill_timer: asyncio.TimerHandle | None = None
        self._allot_next_ask = 0.0
        self._allot_asks: deque[float] = deque()  # when slots were asked for, the last second
        self.allotted_used = 0  # for benchmarks and tests
        self.waited = 0.0  # seconds spent waiting, for metrics and benchmarks
        self.calls = 0
        self.prepaid_used = 0
        self.released = 0  # allotted slots a command reserved and gave back unspent
        self.learned = 0  # round trips spent sharing bucket news

    def _admit_args(self, route: str, major: str, exempt: bool) -> list[str | int]:
        return [self.rate, int(self.window * 1000), int(exempt), route, major, self.bucket_prefix]

    def reserve(
        self, route: str = "", major: str = "", *, owns: tuple[str, ...] = ()
    ) -> Reservation:
        """A command's `Reservation`: a slot of the allotment for its first request to
        `route`/`major` if one is left (else a refill is on its way and `buy_call` can buy
        one; no `route`: nothing to prepay), and the buckets it owns (`owns`: its channel and
        guild, on this process's shards, where no other process answers). Allotted slots skip
        the shared per-route bucket, as owned buckets do."""
        reservation = Reservation(route, major, owns)
        if route:
            until = self._allotted()
            if until is not None:
                reservation.until, reservation.allotment = until, self._allot_count
        return reservation

    def buy_call(self, reservation: Reservation) -> ScriptCall | None:
        """The script call that grants `reservation`'s slot, to send along with a round trip of
        the caller's and hand the answer to `bought`; None if it needs none."""
        if not reservation.route or reservation.holds_slot or reservation.settled:
            return None
        args = self._admit_args(reservation.route, reservation.major, False)
        return ScriptCall(self._admit, self.keys, args)

    def bought(self, reservation: Reservation, answer: int | asyncio.Future[Any] | None) -> None:
        """The answer of `buy_call`'s script (0: granted; None: it did not run), or a future of
        that answer still on its way: the slot is `reservation`'s from now on."""
        if isinstance(answer, asyncio.Future):
            reservation.pending = answer
        elif answer is None or int(answer) != 0:
            return
        reservation.until = time.monotonic() + PREPAID_FOR

    def settle(self, reservation: Reservation) -> bool:
        """The command has ended: its reservation buys nothing more. An unspent slot goes back
        to its allotment if that is still current (a bought one lapses in Redis); True if so."""
        if reservation.settled:
            return False
        reservation.settled = True
        back = (
            not reservation.spent
            and reservation.allotment == self._allot_count
            and reservation.until > time.monotonic()
            and self._allot_used > 0
        )
        if back:
            self._allot_used -= 1
            self.released += 1
        return back

    def _allotted(self) -> float | None:
        """Take a slot of the allotment: the last moment it may be used, or None if none is
        left. Asks for the next allotment when this one runs low: at once when it is empty,
        else a moment later (REFILL_AFTER), after the request that took this slot has left."""
        now = time.monotonic()
        self._allot_asks.append(now)
        while now - self._allot_asks[0] > 1.0:
            self._allot_asks.popleft()
        left = self._allot_granted - self._allot_used
        fresh = now < self._allot_until and now >= self._local_pause
        until = None
        if left > 0 and fresh and not self._redis_state.down:
            self._allot_used += 1
            self.allotted_used += 1
            until = min(self._allot_until, now + PREPAID_FOR)
            left -= 1
        low = left <= self._allot_granted // 2 or self._allot_until - now < ALLOT_FOR / 2
        if low and now >= self._allot_next_ask and self._refill_timer is None:
            if until is None:
                self._start_refill()
            else:
                loop = asyncio.get_running_loop()
                self._refill_timer = loop.call_later(REFILL_AFTER, self._start_refill)
        return until

    def _start_refill(self) -> None:
        self._refill_timer = None
        if self._allot_job is None or self._allot_job.done():
            self._allot_job = asyncio.create_task(self._refill(), name="rest-allotment")

    async def _refill(self) -> None:
        """Give back what is left of the allotment and ask for the next, sized for the rate
        at which slots were asked for in the last second."""
        back, unused = self._allot_first + self._allot_used, self._allot_granted - self._allot_used
        self._allot_granted = self._allot_used = 0  # no slot of it is used from here on
        self._allot_count += 1
        want = min(max(2, math.ceil(len(self._allot_asks) * ALLOT_FOR * 1.5)), self.rate // 4)
        if want < 1 or self._redis_state.down:
            return
        sent = time.monotonic()
        try:
            granted, first = await self._allot(
                keys=self.keys[:3],
                args=[
                    self.rate,
                    int(self.window * 1000),
                    want,
                    int(ALLOT_FOR * 1000),
                    back,
                    unused,
                ],
            )
        except (RedisError, OSError) as exc:
            log.debug("REST limiter: no allotment: %s", exc)
            return
        self._allot_first, self._allot_granted = int(first), int(granted)
        self._allot_until = sent + ALLOT_FOR - ALLOT_SLACK
        # Nothing granted (the window is busy): don't ask again with every call.
        self._allot_next_ask = 0.0 if granted else sent + ALLOT_FOR / 2

    @staticmethod
    async def _spend(reservation: Reservation, route: str, major: str) -> bool:
        """Spend `reservation`'s slot on this request, if it is one for it and still good."""
        if not reservation.holds_slot or (route, major) != (reservation.route, reservation.major):
            return False
        reservation.spent = True  # one request per slot, even if this one is refused
        if reservation.pending is not None:
            answer = await asyncio.shield(reservation.pending)
            if answer is None or int(answer) != 0:
                return False
        return time.monotonic() <= reservation.until

    async def acquire(
        self,
        route: str = "",
        major: str = "",
        *,
        exempt: bool = False,
        reservation: Reservation | None = None,
    ) -> None:
        """Wait for a slot in the shared global window and, when `route` is given and its
        bucket is known, for room in that per-route bucket (without Redis: the local window).

        A command's request (`reservation`) spends the slot reserved for this route, once; one
        in a bucket the command owns takes a slot of the allotment if there is one and skips
        the shared bucket (discord.py tracks it here; no other process sends in it). Neither
        costs a round trip.
        """
        self.calls += 1
        if not exempt and reservation is not None:
            if route and await self._spend(reservation, route, major):
                self.prepaid_used += 1
                self._record(time.monotonic())
                return
            if major and major in reservation.owns and self._allotted() is not None:
                self._record(time.monotonic())
                return
        started = time.monotonic()
        try:
            await self._admitted(self._admit_args(route, major, exempt), exempt)
        finally:
            if self._turn_holder is asyncio.current_task():
                self._turn_holder = None
                self._turn.release()
        self.waited += time.monotonic() - started

    async def _admitted(self, args: list[str | int], exempt: bool) -> None:
        """Wait until the shared window (and the route's bucket) admits this request.

        One task of the process at a time waits for the global window (`_turn`): the others
        queue here instead of asking Redis every time a slot frees, whose burst of round trips
        could fill the connection pool. A full pool is this process's, not an outage: the
        shared window still counts every process, so the request waits for a connection instead
        of falling back to the local window. Back from an outage, for a window's length the
        request also needs room in this process's share (the others may still be on theirs)."""
        counted = False  # already taken from the local window, which records it
        while True:
            if not self._redis_state.should_try():
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
                if self._redis_state.down:
                    await self._rejoin()
                wait_ms = int(await self._admit(keys=self.keys, args=args))
            except MaxConnectionsError:
                await asyncio.sleep(POOL_FULL_WAIT)
                continue
            except (RedisError, OSError) as exc:
                self._redis_state.failed(exc)
                if counted:
                    self._offline.append(time.monotonic())
                else:
                    await self._acquire_local(offline=True)
                return
            self._succeeded()
            if wait_ms == 0:
                if not counted and not exempt:
                    self._record(time.monotonic())
                return
            if wait_ms < 0:  # the route's bucket is empty: no reason to hold the others back
                if self._turn_holder is asyncio.current_task():
                    self._turn_holder = None
                    self._turn.release()
                await asyncio.sleep(-wait_ms / 1000)
                continue
            if self._turn_holder is not asyncio.current_task():
                await self._turn.acquire()
                self._turn_holder = asyncio.current_task()
            await asyncio.sleep(wait_ms / 1000)

    def _succeeded(self) -> None:
        if self._redis_state.down:
            self._rejoined_until = time.monotonic() + self.window
        self._redis_state.succeeded()

    async def _rejoin(self) -> None:
        """Back from an outage: add the requests this process sent on its local window, and
        that are still in the window, to the shared one."""
        now = time.monotonic()
        ages = [int((now - t) * 1000) for t in self._offline if now - t < self.window]
        if ages:
            await self._rejoin_script(keys=self.keys[:2], args=[int(self.window * 1000), *ages])
        self._offline.clear()

    def _record(self, now: float) -> None:
        """A request of this process leaves now: the local window counts it, so that a switch
        to it (Redis unreachable) starts from what this process has just sent."""
        while self._local and now - self._local[0] >= self.window:
            self._local.popleft()
        self._local.append(now)

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
        if self._redis_state.down or (
            no_news
            and (
                owned
                or (self._routes.get(route) == bucket and self._windows.get(window_key, 0.0) > now)
            )
        ):
            return
        try:
            left_ms = await self._learn(
                keys=[self.keys[3]],
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

    async def pause(self, seconds: float) -> None:
        """A global 429: hold every process back for `seconds`."""
        self._local_pause = max(self._local_pause, time.monotonic() + seconds)
        if self._redis_state.down:
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
            if self._local_pause > now:
                await asyncio.sleep(self._local_pause - now)
                continue
            while self._local and now - self._local[0] >= self.window:
                self._local.popleft()
            if len(self._local) < self._local_rate:
                self._local.append(now)
                if offline:
                    self._offline.append(now)
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
        self.round_trips = 0  # for benchmarks
        self._checked = 0.0
        self._refreshing: asyncio.Task[None] | None = None
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
        refreshed in the background, at most once a second, so no REST call waits for it."""
        if not self._checked:
            self.round_trips += 1
            await self._refresh_quietly()
        elif time.monotonic() - self._checked > 1.0 and (
            self._refreshing is None or self._refreshing.done()
        ):
            self.round_trips += 1
            self._refreshing = asyncio.create_task(
                self._refresh_quietly(), name="invalid-request-count"
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
