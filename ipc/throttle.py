"""Command throttles: sliding windows in Redis, shared by every shard, cluster and pod.

A call is checked against several windows at once (say: this user across all commands, this
user on this command, this guild on this command). One Lua script, on Redis's clock, admits it
only if every window has room, and then counts it in all of them; a refused call counts in none,
so hammering a throttled command doesn't extend the wait. When a call is refused, the same
script sets a short "told" marker, so the user hears about it once per wait, not once per extra
attempt.

Decided here when nobody else counts (`start()` turns this on): most windows only ever see one
process (a guild's commands all arrive on the shard that owns it; most users use the bot in one
guild at a time), and asking Redis for each call would put a round trip on every command. So the
script also makes the process that counted a call the window's holder. While a process holds
every window of a call and its own tally shows room in each, it admits the call without waiting:
it counts the call locally and sends it to Redis in the background, where it counts like any
other. A call from another process takes the window over, and the script tells the old holder
on its own channel (`throttle:lost:<holder>`), which forgets the window and asks Redis next
time. A tally that shows no room also asks Redis, so a refusal, and what the user is told, is
always Redis's verdict. The tally can only over-count: what Redis had counted when it handed the
window over is kept until all of it has left the window.

The cost: two processes that see the same user within about a round trip of each other (well
under a millisecond on a local network) may both admit a call the shared window would have
refused; the background count then finds the window over its limit, and
`guildhouse_throttle_overshoot_total` counts it. Losing the subscription (Redis restarted, the
connection dropped) makes the process forget every window it held.

Without Redis each process keeps the windows itself (the same rules, per process), says so
once at INFO (the outage's one WARNING is the process's: `ipc.client.redis_outage`), and goes
back to the shared windows when Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import NoScriptError, RedisError

from ipc.batch import Batcher
from ipc.client import Degraded, Keys, ScriptCall, process_cluster
from ipc.subscriber import Subscriber, Subscription

log = logging.getLogger(__name__)

_RULE = re.compile(r"^\s*(\d{1,6})\s*/\s*(\d{1,7}(?:\.\d+)?)?\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
MAX_WINDOW = 86_400.0

DECISIONS = Counter(
    "guildhouse_throttle_decisions_total",
    "Command throttle verdicts, by where they were made: here (this process held every "
    "window of the call) or redis (a round trip).",
    ["cluster", "where"],
)
OVERSHOOT = Counter(
    "guildhouse_throttle_overshoot_total",
    "Calls admitted here that Redis, counting them afterwards, found over a window's limit "
    "(another process admitted the same user within a round trip).",
    ["cluster"],
)

# KEYS: window 1..n, holder 1..n, then the "told" marker.  ARGV: n, then count_i, window_ms_i
# pairs, then a unique member, this process's id, the shortest hold (ms), the lost-channel
# prefix.
# Returns {0, 0, count_1..count_n} when admitted (each window's count with this call), else
# {wait ms, 1 if the caller should be told}. An admitted call makes this process the holder of
# its windows, and tells a previous holder that it lost them.
_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local wait = 0
local counts = {}
for i = 1, n do
  local count, window = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  counts[i] = redis.call('ZCARD', KEYS[i])
  if counts[i] >= count then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    local w = tonumber(oldest[2]) + window - now
    if w > wait then wait = w end
  end
end
if wait > 0 then
  local told = redis.call('SET', KEYS[2 * n + 1], '1', 'NX', 'PX', math.max(1, wait))
  return {wait, told and 1 or 0}
end
local member, me = ARGV[2 * n + 2], ARGV[2 * n + 3]
local out = {0, 0}
for i = 1, n do
  local window = tonumber(ARGV[2 * i + 1])
  redis.call('ZADD', KEYS[i], now, member)
  redis.call('PEXPIRE', KEYS[i], window)
  local held = redis.call('GET', KEYS[n + i])
  if held and held ~= me then
    redis.call('PUBLISH', ARGV[2 * n + 5] .. held, KEYS[i])
  end
  redis.call('SET', KEYS[n + i], me, 'PX', math.max(window, tonumber(ARGV[2 * n + 4])))
  out[i + 2] = counts[i] + 1
end
return out
"""

# A call admitted by its holder, counted afterwards. KEYS: window 1..n, holder 1..n.
# ARGV: n, count_i / window_ms_i pairs, a unique member, this process's id, the shortest hold.
# Returns {over, held_1..held_n}: over is 1 if a window now holds more than its count; held_i
# is 1 while this process still holds window i (its hold is renewed), else 0.
_RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local member, me = ARGV[2 * n + 2], ARGV[2 * n + 3]
local out = {0}
for i = 1, n do
  local count, window = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  redis.call('ZADD', KEYS[i], now, member)
  redis.call('PEXPIRE', KEYS[i], window)
  if redis.call('ZCARD', KEYS[i]) > count then out[1] = 1 end
  if redis.call('GET', KEYS[n + i]) == me then
    redis.call('PEXPIRE', KEYS[n + i], math.max(window, tonumber(ARGV[2 * n + 4])))
    out[i + 1] = 1
  else
    out[i + 1] = 0
  end
end
return out
"""

# A hold lasts as long as its window, and at least this long (s) after the holder's last call:
# a user's commands are often more than a window apart, and an empty window held is still
# decided here. Five minutes, not one: a member who comes back after a pause of a few minutes
# is the common case, and each return that found its hold lapsed paid a round trip on the
# command's path (0.6-1.2 ms on the benchmark machine, the slowest part of the prefix tail).
# A holder key is about 100 bytes in Redis, so the cost is Redis memory: about 300 bytes per
# member active in the last five minutes (three windows a call).
HOLD_AT_LEAST = 300.0
# A hold is trusted until this long before Redis would let it lapse (clock rates, scheduling).
HOLD_SLACK = 0.05
# Bound the windows a process remembers holding; the oldest are forgotten first.
MAX_HELD = 100_000
# A call decided here is counted in Redis this long (s) after it, with the others of that
# moment: by then the command's answer has usually left (a count sent at once ran ahead of it).
# Not longer: while its count lingers, a window takes no other call decided here (at most one
# call per window on its way from a process), and at 20 ms, 80 slash commands a second, 294 of
# 1,558 checks found a window still counting and asked Redis, which cost more at the p99 than
# the count's round trip beside the slowest answers (bench/README.md). A REST slot
# riding with a count is waited for, so that count leaves at once, and a call that must ask
# Redis while a count of its windows lingers sends it first (`flush`).
COUNT_AFTER = 0.003


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


class Verdict(NamedTuple):
    """`retry_after` is 0 when the call may go ahead; `tell` is True for the first refusal of a
    wait (say something to the user) and False for the ones after it (stay quiet).

    A named tuple, as `_Count` is: one of each is made on every command's path, and a frozen
    dataclass's constructor costs several times a tuple's."""

    retry_after: float
    tell: bool
    also: Any = None  # the answer of the script call sent along (`hit(also=...)`), if it ran

    @property
    def allowed(self) -> bool:
        return self.retry_after <= 0


class _Count(NamedTuple):
    """A call admitted here, on its way to Redis, and the script sent with it."""

    windows: list[str]  # the windows' keys
    rules: list[tuple[str, Rule]]  # their names and rules
    also: ScriptCall | None
    answer: asyncio.Future[Any] | None


def _hold(rule: Rule) -> float:
    return max(rule.per, HOLD_AT_LEAST)


@dataclass(slots=True)
class _Held:
    """A window this process holds: what it knows of the window's calls, as an upper bound.

    Small, since a busy process holds many (up to MAX_HELD) for HOLD_AT_LEAST each: slots and
    a list (about 230 bytes a window by tracemalloc; with a dict and a deque it was 1,100)."""

    rule: Rule
    base: int  # calls in the window when Redis handed it over (this process's call included)
    base_until: float  # monotonic: by then every call in `base` has left the window
    until: float  # monotonic: the hold is trusted until then
    mine: list[float] = field(default_factory=list)  # calls admitted here since, oldest first

    def room(self, now: float) -> bool:
        mine = self.mine
        if mine and now - mine[0] >= self.rule.per:  # a few at most: the rule's count bounds it
            gone = next((i for i, t in enumerate(mine) if now - t < self.rule.per), len(mine))
            del mine[:gone]
        base = self.base if now < self.base_until else 0
        return base + len(mine) < self.rule.count


class Throttle:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._hit = redis.register_script(_HIT)
        self._record = redis.register_script(_RECORD)
        self._local: dict[str, deque[float]] = {}
        self._local_told: dict[str, float] = {}
        self._redis_state = Degraded(
            log,
            "throttles: Redis unreachable (%s); throttling per process",
            "throttles: Redis is back; shared windows resumed",
            what="the throttles",
        )
        self._seq = 0
        self.me = uuid.uuid4().hex[:16]
        self._lost_prefix = keys("throttle", "lost", "")
        self._held: dict[str, _Held] = {}  # Redis key of a window -> what this process knows
        self._listening = False  # decide here only while the lost-channel is subscribed
        self._subscription: Subscription | None = None
        # Counts on their way to Redis, with the windows they count in.
        # A count lingers a moment (COUNT_AFTER), so its round trip follows the command's
        # answer out of the process instead of running ahead of it.
        self._counts: Batcher[_Count, None] = Batcher(
            self._count, linger=COUNT_AFTER, name="throttle-counts"
        )
        self._counting: set[str] = set()  # their windows
        self._window_prefix = keys("throttle", "")  # a window's key is this and its name
        self.decided_here = 0  # verdicts made here and in Redis: `count_decisions`, tests
        self.asked_redis = 0
        self._decisions_counted = {"here": 0, "redis": 0}  # what the metric has of them
        self.overshoot = 0

    # -- deciding here ---------------------------------------------------------------------

    async def start(self) -> None:
        """Listen for lost windows, which lets this process decide calls on windows it holds.
        Without it every call asks Redis. The channel is one of the process's one pub/sub
        connection (ipc/subscriber.py), which reconnects and logs the outage."""
        if self._subscription is None:
            self._subscription = await Subscriber.of(self.redis).subscribe(
                self._lost_prefix + self.me,
                self._on_lost_window,
                on_subscribed=self._on_subscribed,
                on_lost=self._drop_holds,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscription.subscribed(), 5)

    async def close(self) -> None:
        """Stop listening; wait for the counts still on their way to Redis."""
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
        self._drop_holds()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._counts.drain(), 5)

    def _drop_holds(self) -> None:
        self._listening = False
        self._held.clear()

    def _on_subscribed(self) -> None:
        # The first subscription, or one renewed after a dropped connection: what was
        # published meanwhile is lost, so start over.
        self._held.clear()
        self._listening = True

    def _on_lost_window(self, _: str, data: bytes) -> None:
        self._held.pop(data.decode(), None)

    def _decide_here(self, keys: list[str], windows: list[tuple[str, Rule]], now: float) -> bool:
        """Admit the call here if this process holds every window and each has room."""
        if not self._listening or self._redis_state.down:
            return False
        held = []
        for key, (_, rule) in zip(keys, windows, strict=False):
            if key in self._counting:  # one call at a time on its way from here, per window
                return False
            h = self._held.get(key)
            if h is None or h.until <= now or h.rule != rule or not h.room(now):
                return False
            held.append(h)
        for h in held:
            h.mine.append(now)
        return True

    def _take_holds(
        self, keys: list[str], windows: list[tuple[str, Rule]], counts: list[Any], sent: float
    ) -> None:
        if not self._listening:
            return
        received = time.monotonic()
        if len(self._held) >= MAX_HELD:
            stale = [k for k, h in self._held.items() if h.until <= received]
            for k in stale or list(self._held)[: MAX_HELD // 10]:
                del self._held[k]
        for key, (_, rule), count in zip(keys, windows, counts, strict=False):
            before = self._held.get(key)
            self._held[key] = _Held(
                rule,
                base=int(count),
                base_until=received + rule.per,
                until=sent + _hold(rule) - HOLD_SLACK,
                # Calls admitted here may still be on their way to Redis, so not in `count`:
                # keep them (counted twice at worst, which only asks Redis sooner).
                mine=before.mine if before is not None and before.rule == rule else [],
            )

    def _script_input(
        self, window_keys: list[str], windows: list[tuple[str, Rule]]
    ) -> tuple[list[str], list[str | int]]:
        """The hit and record scripts' keys (windows, then holders) and arguments, for one
        call in these windows."""
        self._seq += 1
        keys = [*window_keys, *(self.keys("throttle", "holder", name) for name, _ in windows)]
        args: list[str | int] = [len(windows)]
        for _, rule in windows:
            args += [rule.count, max(1, int(rule.per * 1000))]
        args += [f"{time.time_ns()}:{self.me}:{self._seq}", self.me, int(HOLD_AT_LEAST * 1000)]
        return keys, args

    def _count_later(
        self, window_keys: list[str], windows: list[tuple[str, Rule]], also: ScriptCall | None
    ) -> asyncio.Future[Any] | None:
        """Send a call admitted here to Redis (and `also` with it) in the background, with
        whatever else is on its way. Returns a future of `also`'s answer (None if it could not
        run)."""
        answer: asyncio.Future[Any] | None = None
        if also is not None:
            answer = asyncio.get_running_loop().create_future()
        self._counting.update(window_keys)
        # A REST slot riding along is waited for: the count leaves at once.
        self._counts.push(_Count(window_keys, windows, also, answer), at_once=also is not None)
        return answer

    async def _count(self, counts: list[_Count]) -> list[None]:
        """Counts of calls admitted here, in one round trip; renews or drops the holds."""
        sent = time.monotonic()
        calls: list[ScriptCall] = []
        for c in counts:
            calls.append(ScriptCall(self._record, *self._script_input(c.windows, c.rules)))
            if c.also is not None:
                calls.append(c.also)
        answers: list[Any] | None = None
        try:
            answers = await self._run(calls)
        except (RedisError, OSError) as exc:
            self._redis_state.failed(exc)
            self._held.clear()
        except Exception:  # whatever it was, the holds can't be trusted, and callers wait
            log.exception("throttles: background counts failed")
            self._held.clear()
        at = 0
        for c in counts:
            self._counting.difference_update(c.windows)
            record = answers[at] if answers is not None else None
            at += 1
            if c.also is not None:
                if c.answer is not None and not c.answer.done():
                    c.answer.set_result(answers[at] if answers is not None else None)
                at += 1
            if record is not None:
                self._counted(c.windows, record, sent)
        return [None] * len(counts)

    def _counted(self, windows: list[str], record: list[Any], sent: float) -> None:
        over, *held = record
        if int(over):
            self.overshoot += 1
            OVERSHOOT.labels(process_cluster()).inc()
        for key, still in zip(windows, held, strict=True):
            h = self._held.get(key)
            if h is None:
                continue
            if int(still):
                h.until = max(h.until, sent + _hold(h.rule) - HOLD_SLACK)
            else:
                del self._held[key]

    def count_decisions(self) -> None:
        """Add the verdicts made since the last call to `guildhouse_throttle_decisions_total`.
        Counted in plain integers on the command's path and added here (the bot does, once a
        second and as it closes): a multiprocess counter's increment takes a lock and writes
        its file, a few microseconds on every command."""
        counted = self._decisions_counted
        for where, total in (("here", self.decided_here), ("redis", self.asked_redis)):
            if total > counted[where]:
                DECISIONS.labels(process_cluster(), where).inc(total - counted[where])
                counted[where] = total

    # -- the verdict -------------------------------------------------------------------------

    async def hit(
        self, windows: list[tuple[str, Rule]], told_key: str, *, also: ScriptCall | None = None
    ) -> Verdict:
        """Count one call in every window of `windows` (name, rule), or none if any is full.

        Window names are scoped by the caller, e.g. 'user:42', 'cmd:roll:user:42'. `also` is
        another component's script, sent in the same round trip whatever the verdict; its
        answer is `Verdict.also` (None when it didn't run: no Redis, no windows). When the call
        is decided here, `also` goes to Redis with its count, and `Verdict.also` is a future
        of its answer.
        """
        if not windows:
            return Verdict(0.0, False)
        prefix = self._window_prefix
        window_keys = [prefix + name for name, _ in windows]
        now = time.monotonic()
        if self._decide_here(window_keys, windows, now):
            self.decided_here += 1
            # The script's keys and arguments are built when the count is sent, off the path.
            return Verdict(0.0, False, self._count_later(window_keys, windows, also))
        if not self._redis_state.should_try():
            return self._hit_local(windows, told_key)
        self.asked_redis += 1
        # Calls admitted here and still on their way would be missing from Redis's count.
        if not self._counting.isdisjoint(window_keys):
            await self._counts.flush()
        keys, args = self._script_input(window_keys, windows)
        keys.append(self.keys("throttle", "told", told_key))
        args.append(self._lost_prefix)
        hit = ScriptCall(self._hit, keys, args)
        try:
            answers = await self._run([hit] if also is None else [hit, also])
        except (RedisError, OSError) as exc:
            self._redis_state.failed(exc)
            self._held.clear()
            return self._hit_local(windows, told_key)
        self._redis_state.succeeded()
        wait_ms, told, *counts = answers[0]
        if int(wait_ms) == 0:
            self._take_holds(window_keys, windows, counts, now)
        return Verdict(int(wait_ms) / 1000, bool(told), answers[1] if also else None)

    async def _run(self, calls: list[ScriptCall]) -> list[Any]:
        """The scripts in one round trip (a pipeline without MULTI when more than one). After
        a Redis restart a script may be gone from its cache: only a script that was not found
        runs again, on its own (which loads it); one that ran must not run twice."""
        if len(calls) == 1:
            c = calls[0]
            return [await c.script(keys=c.keys, args=c.args)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in calls:
                pipe.evalsha(c.script.sha, len(c.keys), *c.keys, *c.args)
            answers = list(await pipe.execute(raise_on_error=False))
        for i, (c, answer) in enumerate(zip(calls, answers, strict=True)):
            if isinstance(answer, NoScriptError):
                answers[i] = await c.script(keys=c.keys, args=c.args)
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return answers

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
