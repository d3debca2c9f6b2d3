"""`GlobalLimiter`, the REST limiter that the bot's middleware (bot/rest_limits.py) and command
gate (bot/gate.py) call: one object over the package's parts (its docstring has the whole)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis

from ipc.client import Degraded, Keys, ScriptCall
from ipc.ratelimit.admission import Admission
from ipc.ratelimit.allotment import Allotment, Reservation
from ipc.ratelimit.buckets import Buckets


class GlobalLimiter:
    """The shared global window, per-route buckets, allotments and the local fallback (the
    package's docstring), behind one object: it names the Redis keys and composes the parts,
    `admission` (the shared window, the pause of a global 429, the local window while Redis is
    unreachable), `allotment` (slots granted ahead, and commands' reservations of them) and
    `buckets` (what responses' headers say, shared when it is news).
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
        self.admission = Admission(
            redis, self.keys, self.bucket_prefix, rate=rate, window=self.window, clusters=clusters
        )
        self.allotment = Allotment(redis, self.admission)
        self.buckets = Buckets(redis, self.keys[3], self.bucket_prefix, self.admission.redis_state)
        # What a response's `X-RateLimit-*` headers (or a bucket 429) said, shared when it is
        # news: the buckets' own method, with no layer of the facade's on every response.
        self.learn = self.buckets.learn
        self.waited = 0.0  # seconds spent waiting, for metrics and benchmarks
        self.calls = 0
        self.prepaid_used = 0

    @property
    def _redis_state(self) -> Degraded:
        """Whether Redis is reachable, as the limiter sees it (the shared window's): tests read
        it as they read the other components' `_redis_state`."""
        return self.admission.redis_state

    @property
    def allotted_used(self) -> int:
        """Slots taken from allotments, for benchmarks and tests."""
        return self.allotment.taken

    @property
    def released(self) -> int:
        """Allotted slots a command reserved and gave back unspent."""
        return self.allotment.released

    @property
    def learned(self) -> int:
        """Round trips spent sharing bucket news."""
        return self.buckets.learned

    def reserve(
        self, route: str = "", major: str = "", *, owns: tuple[str, ...] = ()
    ) -> Reservation:
        """A command's `Reservation` for its first request to `route`/`major`, and the buckets
        it owns (`Allotment.reserve`)."""
        return self.allotment.reserve(route, major, owns)

    def buy_call(self, reservation: Reservation) -> ScriptCall | None:
        """The script call that grants `reservation`'s slot, to send along with a round trip of
        the caller's and hand the answer to `bought`; None if it needs none."""
        if not reservation.route or reservation.holds_slot or reservation.settled:
            return None
        return self.admission.call(reservation.route, reservation.major)

    def bought(self, reservation: Reservation, answer: int | asyncio.Future[Any] | None) -> None:
        """`buy_call`'s answer, or a future of it: the slot is `reservation`'s from now on
        (`Allotment.bought`)."""
        self.allotment.bought(reservation, answer)

    def settle(self, reservation: Reservation) -> bool:
        """The command has ended: an unspent allotted slot goes back (`Allotment.settle`);
        True if so."""
        return self.allotment.settle(reservation)

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
            if route and await self.allotment.spend(reservation, route, major):
                self.prepaid_used += 1
                self.admission.record(time.monotonic())
                return
            if major and major in reservation.owns and self.allotment.take() is not None:
                self.admission.record(time.monotonic())
                return
        started = time.monotonic()
        await self.admission.admit(route, major, exempt)
        self.waited += time.monotonic() - started

    async def pause(self, seconds: float) -> None:
        """A global 429: hold every process back for `seconds` (`Admission.pause`)."""
        await self.admission.pause(seconds)
