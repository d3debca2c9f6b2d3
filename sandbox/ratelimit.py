"""Discord's REST rate limits, enforced as Discord does.

https://discord.com/developers/docs/topics/rate-limits: per-route buckets keyed by the route
and its major parameter (channel, guild, webhook), reported in the `X-RateLimit-*` header set;
a global limit of 50 requests per second per bot (interaction callbacks exempt); 429s with a
JSON body (`message`, `retry_after`, `global`) and a `Via` header; and a ban of the token after
10,000 invalid (401, 403, 429) requests within 10 minutes. All windows are configurable.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Bucket:
    limit: int
    window: float
    remaining: int
    reset_at: float

    def take(self, now: float) -> float:
        """Take one request; 0 if allowed, else seconds to wait."""
        if now >= self.reset_at:
            self.remaining = self.limit
            self.reset_at = now + self.window
        if self.remaining <= 0:
            return self.reset_at - now
        self.remaining -= 1
        return 0.0


@dataclass
class Fault:
    count: int
    status: int
    is_global: bool = False
    retry_after: float = 1.0


@dataclass
class Limits:
    global_limit: int = 50
    global_window: float = 1.0
    route_limit: int = 5
    route_window: float = 5.0
    invalid_limit: int = 10_000
    invalid_window: float = 600.0
    ban_seconds: float = 3600.0


@dataclass
class Decision:
    allowed: bool
    headers: dict[str, str]
    body: dict[str, Any] | None = None
    scope: str = ""


@dataclass
class RateLimiter:
    limits: Limits = field(default_factory=Limits)
    buckets: dict[str, Bucket] = field(default_factory=dict)
    global_times: deque[float] = field(default_factory=deque)
    all_times: deque[float] = field(default_factory=deque)
    invalid_times: deque[float] = field(default_factory=deque)
    banned_until: float = 0.0
    forced: dict[str, Fault] = field(default_factory=dict)  # route ("*": any) -> fault
    stats: dict[str, Any] = field(
        default_factory=lambda: {
            "requests_by_route": Counter(),
            "max_per_second": 0,
            "rate_limited": Counter(),
            "invalid_requests": 0,
            "banned": False,
            "requests": 0,
        }
    )

    @staticmethod
    def bucket_hash(route: str) -> str:
        return hashlib.sha1(route.encode()).hexdigest()[:16]  # noqa: S324 - an id, not a secret

    def _window_peak(self, now: float) -> None:
        self.all_times.append(now)
        while self.all_times and now - self.all_times[0] >= 1.0:
            self.all_times.popleft()
        self.stats["max_per_second"] = max(self.stats["max_per_second"], len(self.all_times))

    def check(self, route: str, major: str, *, exempt_global: bool) -> Decision:
        now = time.time()
        self.stats["requests"] += 1
        self.stats["requests_by_route"][route] += 1
        if now < self.banned_until:
            return Decision(
                False,
                {"Retry-After": str(int(self.banned_until - now))},
                {
                    "message": "You are being blocked from accessing our API "
                    "temporarily due to exceeding our rate limits frequently.",
                    "code": 40062,
                },
                scope="ban",
            )
        if not exempt_global:
            self._window_peak(now)
            window = self.limits.global_window
            while self.global_times and now - self.global_times[0] >= window:
                self.global_times.popleft()
            if len(self.global_times) >= self.limits.global_limit:
                retry = window - (now - self.global_times[0])
                self.stats["rate_limited"]["global"] += 1
                return Decision(
                    False,
                    {
                        "Retry-After": str(max(1, int(retry + 0.999))),
                        "X-RateLimit-Global": "true",
                        "X-RateLimit-Scope": "global",
                    },
                    {
                        "message": "You are being rate limited.",
                        "retry_after": round(retry, 3),
                        "global": True,
                        "code": 0,
                    },
                    scope="global",
                )
            self.global_times.append(now)
        key = f"{route}:{major}"
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = Bucket(
                self.limits.route_limit,
                self.limits.route_window,
                self.limits.route_limit,
                now + self.limits.route_window,
            )
            self.buckets[key] = bucket
        wait = bucket.take(now)
        headers = {
            "X-RateLimit-Limit": str(bucket.limit),
            "X-RateLimit-Remaining": str(max(0, bucket.remaining)),
            "X-RateLimit-Reset": f"{bucket.reset_at:.3f}",
            "X-RateLimit-Reset-After": f"{max(0.0, bucket.reset_at - now):.3f}",
            "X-RateLimit-Bucket": self.bucket_hash(route),
        }
        if wait > 0:
            self.stats["rate_limited"]["user"] += 1
            headers.update(
                {"Retry-After": str(max(1, int(wait + 0.999))), "X-RateLimit-Scope": "user"}
            )
            return Decision(
                False,
                headers,
                {
                    "message": "You are being rate limited.",
                    "retry_after": round(wait, 3),
                    "global": False,
                    "code": 0,
                },
                scope="user",
            )
        return Decision(True, headers)

    def record_status(self, status: int) -> None:
        if status not in (401, 403, 429):
            return
        now = time.time()
        self.stats["invalid_requests"] += 1
        self.invalid_times.append(now)
        while self.invalid_times and now - self.invalid_times[0] > self.limits.invalid_window:
            self.invalid_times.popleft()
        if len(self.invalid_times) >= self.limits.invalid_limit:
            self.banned_until = now + self.limits.ban_seconds
            self.stats["banned"] = True

    def forced_status(self, route: str) -> Fault | None:
        """A status the faults API asked this route to answer with, for the next requests."""
        for key in (route, "*"):
            fault = self.forced.get(key)
            if fault is not None and fault.count > 0:
                fault.count -= 1
                return fault
        return None
