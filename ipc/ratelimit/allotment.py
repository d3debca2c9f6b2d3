"""This process's allotment of the shared window, refilled in the background, and the
`Reservation`s it prepays for commands' answers (the package's docstring has the whole)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ipc.ratelimit.admission import Admission

log = logging.getLogger("ipc.ratelimit")  # the package's one logger (admission.py)

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

# An allotment is good for this long (s): a slot of it is an entry of the shared window that
# counts for ALLOT_FOR + the window, so a long allotment holds capacity that a short one frees.
ALLOT_FOR = 0.25
ALLOT_SLACK = 0.01  # stop using an allotment this long before Redis's end of it

# A prepaid slot is good for this long after Redis granted it. The shared window is `margin`
# (10 %) longer than Discord's, which covers a slot granted this long before its request leaves.
PREPAID_FOR = 0.05

# A refill that is not urgent starts this long (s) after the slot that called for it was taken:
# its round trip then runs after that slot's request has been sent and answered, not beside it
# (at 5 ms it fell in the slowest answers). Half the allotment, or half its time, is left then.
REFILL_AFTER = 0.02


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
    allotment: int = -1  # the allotment the slot came from (Allotment's count), or -1
    spent: bool = False
    settled: bool = False

    @property
    def holds_slot(self) -> bool:
        return (self.until > 0 or self.pending is not None) and not (self.spent or self.settled)


class Allotment:
    """Slots of the shared window granted to this process ahead (`_ALLOT`), so that commands'
    requests leave without a round trip each, and the `Reservation`s of commands' answers.

    The current allotment: members first..first+granted-1 of the window, `used` of them taken,
    good until `until` (monotonic); `count` says which one is current (a `Reservation`'s
    `allotment`). Taking a slot (`take`) asks for the next allotment when this one runs low,
    in the background, one refill in flight at a time. No slot is taken while Redis is
    unreachable or a global 429's pause holds (`admission`'s).
    """

    def __init__(self, redis: aioredis.Redis, admission: Admission) -> None:
        self.admission = admission  # the shared window the slots are of
        self._allot = redis.register_script(_ALLOT)
        self.first = 0
        self.count = 0
        self.granted = 0
        self.used = 0
        self.until = 0.0
        self._job: asyncio.Task[None] | None = None
        self._refill_timer: asyncio.TimerHandle | None = None
        self._next_ask = 0.0
        self._asks: deque[float] = deque()  # when slots were asked for, the last second
        self.taken = 0  # slots taken, for benchmarks and tests
        self.released = 0  # slots a command reserved and gave back unspent

    def reserve(self, route: str, major: str, owns: tuple[str, ...]) -> Reservation:
        """A command's `Reservation`: a slot of the allotment for its first request to
        `route`/`major` if one is left (else a refill is on its way and `buy_call` can buy
        one; no `route`: nothing to prepay), and the buckets it owns (`owns`: its channel and
        guild, on this process's shards, where no other process answers). Allotted slots skip
        the shared per-route bucket, as owned buckets do."""
        reservation = Reservation(route, major, owns)
        if route:
            until = self.take()
            if until is not None:
                reservation.until, reservation.allotment = until, self.count
        return reservation

    @staticmethod
    def bought(reservation: Reservation, answer: int | asyncio.Future[Any] | None) -> None:
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
            and reservation.allotment == self.count
            and reservation.until > time.monotonic()
            and self.used > 0
        )
        if back:
            self.used -= 1
            self.released += 1
        return back

    @staticmethod
    async def spend(reservation: Reservation, route: str, major: str) -> bool:
        """Spend `reservation`'s slot on this request, if it is one for it and still good."""
        if not reservation.holds_slot or (route, major) != (reservation.route, reservation.major):
            return False
        reservation.spent = True  # one request per slot, even if this one is refused
        if reservation.pending is not None:
            answer = await asyncio.shield(reservation.pending)
            if answer is None or int(answer) != 0:
                return False
        return time.monotonic() <= reservation.until

    def take(self) -> float | None:
        """Take a slot of the allotment: the last moment it may be used, or None if none is
        left. Asks for the next allotment when this one runs low: at once when it is empty,
        else a moment later (REFILL_AFTER), after the request that took this slot has left."""
        now = time.monotonic()
        self._asks.append(now)
        while now - self._asks[0] > 1.0:
            self._asks.popleft()
        left = self.granted - self.used
        fresh = now < self.until and now >= self.admission.paused_until
        until = None
        if left > 0 and fresh and not self.admission.redis_state.down:
            self.used += 1
            self.taken += 1
            until = min(self.until, now + PREPAID_FOR)
            left -= 1
        low = left <= self.granted // 2 or self.until - now < ALLOT_FOR / 2
        if low and now >= self._next_ask:
            if until is None:  # empty: the refill starts now, even if one was to start later
                if self._refill_timer is not None:
                    self._refill_timer.cancel()
                self._start_refill()
            elif self._refill_timer is None:
                loop = asyncio.get_running_loop()
                self._refill_timer = loop.call_later(REFILL_AFTER, self._start_refill)
        return until

    def _start_refill(self) -> None:
        self._refill_timer = None
        if self._job is None or self._job.done():
            self._job = asyncio.create_task(self._refill(), name="rest-allotment")

    async def _refill(self) -> None:
        """Give back what is left of the allotment and ask for the next, sized for the rate
        at which slots were asked for in the last second."""
        back, unused = self.first + self.used, self.granted - self.used
        self.granted = self.used = 0  # no slot of it is used from here on
        self.count += 1
        shared = self.admission
        want = min(max(2, math.ceil(len(self._asks) * ALLOT_FOR * 1.5)), shared.rate // 4)
        if want < 1 or shared.redis_state.down:
            return
        sent = time.monotonic()
        try:
            granted, first = await self._allot(
                keys=shared.keys[:3],
                args=[
                    shared.rate,
                    int(shared.window * 1000),
                    want,
                    int(ALLOT_FOR * 1000),
                    back,
                    unused,
                ],
            )
        except (RedisError, OSError) as exc:
            log.debug("REST limiter: no allotment: %s", exc)
            return
        self.first, self.granted = int(first), int(granted)
        self.until = sent + ALLOT_FOR - ALLOT_SLACK
        # Nothing granted (the window is busy): don't ask again with every call.
        self._next_ask = 0.0 if granted else sent + ALLOT_FOR / 2
