"""Command throttles: sliding windows in Redis, shared by every shard, cluster and pod.

A call is checked against several windows at once (say: this user across all commands, this
user on this command, this guild on this command). One Lua script, on Redis's clock, admits it
only if every window has room, and then counts it in all of them; a refused call counts in none,
so hammering a throttled command doesn't extend the wait. When a call is refused, the same
script sets a short "told" marker, so the user hears about it once per wait, not once per extra
attempt.

Without Redis each process keeps the windows itself (the same rules, per process), logs that
once, and goes back to the shared windows when Redis answers again.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from ipc.client import Degraded, Keys, ScriptCall

log = logging.getLogger(__name__)

_RULE = re.compile(r"^\s*(\d{1,6})\s*/\s*(\d{1,7}(?:\.\d+)?)?\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
MAX_WINDOW = 86_400.0

# KEYS: window 1..n, then the "told" marker.  ARGV: n, then count_i, window_ms_i pairs, then a
# unique member.  Returns {0, 0} when admitted, else {wait ms, 1 if the caller should be told}.
_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local wait = 0
for i = 1, n do
  local count, window = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= count then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    local w = tonumber(oldest[2]) + window - now
    if w > wait then wait = w end
  end
end
if wait > 0 then
  local told = redis.call('SET', KEYS[n + 1], '1', 'NX', 'PX', math.max(1, wait))
  return {wait, told and 1 or 0}
end
local member = ARGV[2 * n + 2]
for i = 1, n do
  redis.call('ZADD', KEYS[i], now, member)
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2 * i + 1]))
end
return {0, 0}
"""


class RuleError(ValueError):
    """A throttle rule can't be read; the message says what is expected."""


@dataclass(frozen=True)
class Rule:
    """At most `count` calls per `per` seconds."""

    count: int
    per: float

    @classmethod
    def parse(cls, text: str) -> Rule:
        """'5/10s', '3/1m', '100/1h', '2/500ms' (a bare number of seconds works too)."""
        m = _RULE.match(text)
        if m is None:
            raise RuleError(
                f"{text!r} is not a throttle rule; expected COUNT/WINDOW such as 5/10s, 3/1m"
            )
        count = int(m.group(1))
        per = float(m.group(2) or 1) * _UNIT[m.group(3)]
        if count < 1:
            raise RuleError(f"{text!r}: the count must be at least 1")
        if not 0.1 <= per <= MAX_WINDOW:
            raise RuleError(f"{text!r}: the window must be between 100ms and 24h")
        return cls(count, per)

    def __str__(self) -> str:
        per = f"{self.per:g}s" if self.per < 60 or self.per % 60 else f"{self.per / 60:g}m"
        return f"{self.count}/{per}"


# Defaults: per user across commands, per user per command, per guild per command.
DEFAULT_USER = Rule(15, 10.0)
DEFAULT_COMMAND = Rule(8, 10.0)
DEFAULT_GUILD = Rule(60, 10.0)


@dataclass(frozen=True)
class Verdict:
    """`retry_after` is 0 when the call may go ahead; `tell` is True for the first refusal of a
    wait (say something to the user) and False for the ones after it (stay quiet)."""

    retry_after: float
    tell: bool
    also: Any = None  # the answer of the script call sent along (`hit(also=...)`), if it ran

    @property
    def allowed(self) -> bool:
        return self.retry_after <= 0


class Throttle:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._hit = redis.register_script(_HIT)
        self._local: dict[str, deque[float]] = {}
        self._local_told: dict[str, float] = {}
        self._redis_state = Degraded(
            log,
            "throttles: Redis unreachable (%s); throttling per process",
            "throttles: Redis is back; shared windows resumed",
        )
        self._seq = 0

    async def hit(
        self, windows: list[tuple[str, Rule]], told_key: str, *, also: ScriptCall | None = None
    ) -> Verdict:
        """Count one call in every window of `windows` (name, rule), or none if any is full.

        Window names are scoped by the caller, e.g. 'user:42', 'cmd:roll:user:42'. `also` is
        another component's script, sent in the same round trip whatever the verdict; its
        answer is `Verdict.also` (None when it didn't run: no Redis, no windows).
        """
        if not windows:
            return Verdict(0.0, False)
        self._seq += 1
        keys = [self.keys("throttle", name) for name, _ in windows]
        keys.append(self.keys("throttle", "told", told_key))
        args: list[str | int] = [len(windows)]
        for _, rule in windows:
            args += [rule.count, max(1, int(rule.per * 1000))]
        args.append(f"{time.time_ns()}:{id(self)}:{self._seq}")
        if not self._redis_state.should_try():
            return self._hit_local(windows, told_key)
        extra = None
        try:
            if also is None:
                wait_ms, told = await self._hit(keys=keys, args=args)
            else:
                (wait_ms, told), extra = await self._hit_with(keys, args, also)
        except (RedisError, OSError) as exc:
            self._redis_state.failed(exc)
            return self._hit_local(windows, told_key)
        self._redis_state.succeeded()
        return Verdict(int(wait_ms) / 1000, bool(told), extra)

    async def _hit_with(
        self, keys: list[str], args: list[str | int], also: ScriptCall
    ) -> tuple[Any, Any]:
        """Both scripts in one pipeline (one round trip, no MULTI). After a Redis restart a
        script may be gone from its cache: only a script that was not found runs again, on its
        own (which loads it); one that ran must not run twice."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(self._hit.sha, len(keys), *keys, *args)
            pipe.evalsha(also.script.sha, len(also.keys), *also.keys, *also.args)
            first, second = await pipe.execute(raise_on_error=False)
        if isinstance(first, NoScriptError):
            first = await self._hit(keys=keys, args=args)
        if isinstance(second, NoScriptError):
            second = await also.script(keys=also.keys, args=also.args)
        for answer in (first, second):
            if isinstance(answer, Exception):
                raise answer
        return first, second

    def _hit_local(self, windows: list[tuple[str, Rule]], told_key: str) -> Verdict:
        now = time.monotonic()
        wait = 0.0
        for name, rule in windows:
            calls = self._local.setdefault(name, deque())
            while calls and now - calls[0] >= rule.per:
                calls.popleft()
            if len(calls) >= rule.count:
                wait = max(wait, calls[0] + rule.per - now)
        if wait > 0:
            tell = self._local_told.get(told_key, 0.0) <= now
            if tell:
                self._local_told[told_key] = now + wait
            return Verdict(wait, tell)
        for name, _ in windows:
            self._local[name].append(now)
        if len(self._local) > 10_000:  # bound memory: drop windows with nothing recent
            for name in [k for k, v in self._local.items() if not v or now - v[-1] > MAX_WINDOW]:
                del self._local[name]
        return Verdict(0.0, False)
