"""Command throttles: sliding windows in Redis shared by every process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from waits import until

from cluster.embedded import free_port
from ipc.client import Keys
from ipc.ratelimit import GlobalLimiter, Reservation
from ipc.throttle import DECISIONS, Rule, RuleError, Throttle, Verdict


@pytest.mark.parametrize(
    ("text", "count", "per"),
    [("5/10s", 5, 10.0), ("3/1m", 3, 60.0), ("100/1h", 100, 3600.0), ("2/500ms", 2, 0.5)],
)
def test_rules_parse(text: str, count: int, per: float) -> None:
    assert Rule.parse(text) == Rule(count, per)
    assert Rule.parse(str(Rule.parse(text))) == Rule(count, per)  # str() reads back


@pytest.mark.parametrize("text", ["", "5", "five/10s", "0/10s", "5/0s", "5/2d", "5/10x", "1/25h"])
def test_bad_rules_name_what_is_expected(text: str) -> None:
    with pytest.raises(RuleError, match=r"COUNT/WINDOW|count|window"):
        Rule.parse(text)


async def test_a_refused_call_counts_in_no_window(redis: aioredis.Redis, keys: Keys) -> None:
    t = Throttle(redis, keys)
    wide, narrow = ("wide", Rule(10, 60)), ("narrow", Rule(2, 60))
    assert (await t.hit([wide, narrow], "u")).allowed
    assert (await t.hit([wide, narrow], "u")).allowed
    for _ in range(5):
        assert not (await t.hit([wide, narrow], "u")).allowed
    # Only the two admitted calls count in the wide window: 8 more fit.
    admitted = [(await t.hit([wide], "v")).allowed for _ in range(9)]
    assert admitted == [True] * 8 + [False]


async def test_the_user_is_told_once_per_wait(redis: aioredis.Redis, keys: Keys) -> None:
    t = Throttle(redis, keys)
    rule = [("w", Rule(1, 0.5))]
    assert (await t.hit(rule, "u")).allowed
    verdicts = [await t.hit(rule, "u") for _ in range(4)]
    assert [v.allowed for v in verdicts] == [False] * 4
    assert [v.tell for v in verdicts] == [True, False, False, False]
    assert 0 < verdicts[0].retry_after <= 0.5
    await asyncio.sleep(0.6)  # past the 0.5 s window, on Redis's clock: only time moves it
    assert (await t.hit(rule, "u")).allowed  # the window slid on
    refused = await t.hit(rule, "u")
    assert not refused.allowed and refused.tell  # a new wait: told again


async def test_many_processes_share_one_budget(redis_url: str, keys: Keys) -> None:
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(4)]
    try:
        throttles = [Throttle(c, keys) for c in clients]
        rule = [("shared", Rule(25, 60))]
        verdicts = await asyncio.gather(*(t.hit(rule, "u") for t in throttles for _ in range(20)))
    finally:
        for c in clients:
            await c.aclose()
    assert sum(v.allowed for v in verdicts) == 25
    assert sum(v.tell for v in verdicts) == 1


async def test_without_redis_each_process_throttles_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    dead = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    t = Throttle(dead, Keys("x:"))
    rule = [("w", Rule(3, 60))]
    verdicts = [await t.hit(rule, "u") for _ in range(5)]
    await dead.aclose()
    assert [v.allowed for v in verdicts] == [True, True, True, False, False]
    assert [v.tell for v in verdicts[3:]] == [True, False]
    # What the throttles do meanwhile, at INFO; the outage is the process's one WARNING.
    local = [r.levelname for r in caplog.records if "throttles: Redis unreachable" in r.message]
    assert local == ["INFO"]
    warnings = [r.message for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("Redis is unreachable (the throttles: ConnectionError")


async def test_a_prepaid_rest_slot_rides_along_and_is_used_once(
    redis: aioredis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command's throttle check also takes the REST slot for its first message, in the same
    round trip; the request then takes no round trip of its own, and only that request."""
    limiter = GlobalLimiter(redis, keys, rate=3, window=10)
    t = Throttle(redis, keys)
    route = ("POST /channels/{major}/messages", "42")

    async def command() -> tuple[int, int]:
        reservation = Reservation(*route)
        verdict = await t.hit(
            [("user:1", Rule(10, 60))], "1:ping", also=limiter.buy_call(reservation)
        )
        assert verdict.allowed and verdict.also == 0
        limiter.bought(reservation, verdict.also)
        before = limiter.prepaid_used
        await limiter.acquire(*route, reservation=reservation)  # the prepaid slot
        used = limiter.prepaid_used - before
        edit = ("PATCH /channels/{major}/messages/{id}", "42")
        await limiter.acquire(*edit, reservation=reservation)  # a round trip
        return used, limiter.prepaid_used - before

    # Each command runs in its own task, as discord.py runs each message's handlers.
    assert await asyncio.create_task(command()) == (1, 1)
    # Two slots were taken in the shared window (the prepaid one and the edit's), so a third
    # call fits and a fourth has to wait: a prepaid slot counts like any other.
    await limiter.acquire("GET /users/{id}", "")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(limiter.acquire("GET /users/{id}", ""), 0.3)
    # A slot for another channel, or one that lapsed, is not used.
    other = Reservation("POST /channels/{major}/messages", "43")
    limiter.bought(other, 0)
    await limiter.acquire(*route, reservation=other)
    assert limiter.prepaid_used == 1 and not other.spent
    monkeypatch.setattr("ipc.ratelimit.allotment.PREPAID_FOR", -1.0)
    lapsed = Reservation(*route)
    limiter.bought(lapsed, 0)
    await limiter.acquire(*route, reservation=lapsed)
    assert limiter.prepaid_used == 1 and lapsed.spent


async def test_a_refused_call_still_answers_the_script_sent_along(
    redis: aioredis.Redis, keys: Keys
) -> None:
    limiter = GlobalLimiter(redis, keys, rate=50)
    t = Throttle(redis, keys)
    rule = [("user:9", Rule(1, 60))]
    call = limiter.buy_call(Reservation("POST /channels/{major}/messages", "7"))
    assert call is not None
    assert (await t.hit(rule, "9:x", also=call)).allowed
    refused = await t.hit(rule, "9:x", also=call)
    assert not refused.allowed and refused.also == 0
    # After Redis forgets its scripts (a restart), both are loaded again and still answer.
    await redis.script_flush()
    again = await t.hit([("user:10", Rule(1, 60))], "10:x", also=call)
    assert again.allowed and again.also == 0
    # Only one of them forgotten: the one that ran is not run again (the call would count
    # twice in its window, and be refused by its own first run).
    await redis.script_flush()
    assert (await t.hit([("user:11", Rule(2, 60))], "11:x")).allowed  # reloads only this one
    once = await t.hit([("user:11", Rule(2, 60))], "11:x", also=call)
    assert once.allowed and once.also == 0
    assert not (await t.hit([("user:11", Rule(2, 60))], "11:x")).allowed


# -- decided here: windows this process holds ------------------------------------------------


@contextlib.asynccontextmanager
async def processes(redis_url: str, keys: Keys, n: int) -> AsyncIterator[list[Throttle]]:
    """`n` started throttles, each with its own Redis client, as `n` worker processes."""
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(n)]
    throttles = [Throttle(c, keys) for c in clients]
    try:
        for t in throttles:
            await t.start()
        yield throttles
    finally:
        for t in throttles:
            await t.close()
        for c in clients:
            await c.aclose()


async def settled(*throttles: Throttle) -> None:
    """Wait for the counts sent to Redis in the background."""
    for t in throttles:
        await t._counts.drain()


async def calls(t: Throttle, rule: list[tuple[str, Rule]], told: str, n: int) -> list[Verdict]:
    """`n` calls, each after the one before has been counted in Redis (a user's commands are
    further apart than a round trip)."""
    out = []
    for _ in range(n):
        out.append(await t.hit(rule, told))
        await settled(t)
    return out


async def window_count(redis: aioredis.Redis, keys: Keys, name: str) -> int:
    return int(await redis.zcard(keys("throttle", name)))


async def test_a_member_back_after_a_few_minutes_is_still_decided_here(
    redis: aioredis.Redis, redis_url: str, keys: Keys
) -> None:
    """A hold outlives its 10 s window by five minutes, in Redis and in the process: a member
    whose next command comes after a pause of a few minutes costs no round trip."""
    rule = [("user:3", Rule(5, 10))]
    async with processes(redis_url, keys, 1) as (a,):
        await calls(a, rule, "3:ping", 2)
        assert (a.asked_redis, a.decided_here) == (1, 1)
        ttl = await redis.pttl(keys("throttle", "holder", "user:3"))
        assert 240_000 < ttl <= 300_000
        # Four minutes later, as the process sees it: still held.
        held = a._held[keys("throttle", "user:3")]
        held.until -= 240
        held.base_until -= 240
        assert (await a.hit(rule, "3:ping")).allowed
        assert (a.asked_redis, a.decided_here) == (1, 2)


def decisions(where: str) -> float:
    return float(DECISIONS.labels("", where)._value.get())  # type: ignore[attr-defined]


async def test_verdicts_reach_the_decisions_metric_when_counted(redis_url: str, keys: Keys) -> None:
    """Verdicts are counted in plain integers on the command's path and added to
    `guildhouse_throttle_decisions_total` by `count_decisions` (the bot calls it once a second
    and as it closes): each verdict once, by where it was made."""
    rule = [("user:8", Rule(10, 60))]
    async with processes(redis_url, keys, 1) as (a,):
        here, redis_ = decisions("here"), decisions("redis")
        await calls(a, rule, "8:ping", 3)
        assert (a.asked_redis, a.decided_here) == (1, 2)
        assert (decisions("here"), decisions("redis")) == (here, redis_)  # not yet added
        a.count_decisions()
        assert (decisions("here"), decisions("redis")) == (here + 2, redis_ + 1)
        a.count_decisions()  # nothing new: nothing added twice
        await calls(a, rule, "8:ping", 1)
        a.count_decisions()
        assert (decisions("here"), decisions("redis")) == (here + 3, redis_ + 1)


async def test_a_held_window_is_decided_here_and_still_counted_in_redis(
    redis: aioredis.Redis, redis_url: str, keys: Keys
) -> None:
    rule = [("user:1", Rule(10, 60)), ("cmd:ping:guild:5", Rule(10, 60))]
    async with processes(redis_url, keys, 2) as (a, b):
        assert all(v.allowed for v in await calls(a, rule, "1:ping", 5))
        # The first call asked Redis and made `a` the holder; the next four were decided here.
        assert (a.asked_redis, a.decided_here) == (1, 4)
        # A call while the one before is still on its way to Redis asks Redis, after it.
        assert (await a.hit(rule, "1:ping")).allowed
        assert (await a.hit(rule, "1:ping")).allowed
        assert (a.asked_redis, a.decided_here) == (2, 5)
        await settled(a)
        assert await window_count(redis, keys, "user:1") == 7  # all counted in Redis
        # Another process shares the budget: it gets the 3 that are left, and takes the
        # windows over, so `a` asks Redis again, which refuses.
        verdicts = await calls(b, rule, "1:ping", 4)
        assert [v.allowed for v in verdicts] == [True] * 3 + [False]
        assert b.decided_here == 2  # b held them after its first call
        await until("the lost-window messages reach `a`", lambda: not a._held)
        refused = await a.hit(rule, "1:ping")
        assert not refused.allowed and not refused.tell  # b's user was already told
        assert (a.asked_redis, a.decided_here) == (3, 5)
        await settled(a, b)
        assert await window_count(redis, keys, "user:1") == 10
        assert a.overshoot == b.overshoot == 0


async def test_a_full_tally_asks_redis_which_refuses_and_tells_once(
    redis_url: str, keys: Keys
) -> None:
    rule = [("user:2", Rule(3, 0.5))]
    async with processes(redis_url, keys, 1) as (t,):
        assert all(v.allowed for v in await calls(t, rule, "2:x", 3))
        verdicts = await calls(t, rule, "2:x", 3)
        assert [(v.allowed, v.tell) for v in verdicts] == [(False, True)] + [(False, False)] * 2
        assert t.decided_here == 2 and t.asked_redis == 4
        await asyncio.sleep(0.6)  # the window slid on (Redis's clock: only time moves it)
        assert (await t.hit(rule, "2:x")).allowed


async def test_processes_racing_on_one_user_overshoot_by_what_they_count(
    redis: aioredis.Redis, redis_url: str, keys: Keys
) -> None:
    """All four hold-or-ask at once: whatever passes beyond the limit is counted as overshoot
    (Redis counts every admitted call), and only a call per process can slip through."""
    rule = [("user:3", Rule(25, 60))]
    async with processes(redis_url, keys, 4) as throttles:
        first = await asyncio.gather(*(t.hit(rule, "3:x") for t in throttles))
        verdicts = await asyncio.gather(*(t.hit(rule, "3:x") for t in throttles for _ in range(20)))
        await settled(*throttles)
        admitted = sum(v.allowed for v in [*first, *verdicts])
        overshoot = sum(t.overshoot for t in throttles)
        assert admitted == 25 + overshoot
        assert overshoot <= len(throttles)
        assert await window_count(redis, keys, "user:3") == admitted
        assert sum(v.tell for v in verdicts) == 1


async def test_a_dropped_subscription_forgets_every_window_held(
    redis: aioredis.Redis, redis_url: str, keys: Keys
) -> None:
    rule = [("user:4", Rule(100, 60))]
    async with processes(redis_url, keys, 1) as (t,):
        await calls(t, rule, "4:x", 2)
        assert t.decided_here == 1
        # A dropped connection (or a restarted Redis) may have lost a lost-window message.
        await redis.client_kill_filter(_type="pubsub", skipme=True)
        await until("the dropped subscription makes `t` forget its windows", lambda: not t._held)
        await t.hit(rule, "4:x")
        assert t.asked_redis == 2
        await until("`t` subscribed again", lambda: t._listening)
        if not t._held:  # the call above came before that, so it took no hold: this one does
            await calls(t, rule, "4:x", 1)
        await calls(t, rule, "4:x", 1)  # deciding here resumes
        assert t.decided_here == 2


async def test_a_rest_slot_asked_for_with_a_call_decided_here(
    redis: aioredis.Redis, redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # How the slot travels, not how fresh it must be: a slot is good for 50 ms after it was
    # asked for, and on a loaded machine the background count's answer can take longer, so
    # the request would (rightly) take a new slot. The freshness limit has its own test above.
    monkeypatch.setattr("ipc.ratelimit.allotment.PREPAID_FOR", 5.0)
    limiter = GlobalLimiter(redis, keys, rate=50)
    route = ("POST /channels/{major}/messages", "8")
    rule = [("user:5", Rule(10, 60))]
    async with processes(redis_url, keys, 1) as (t,):

        async def command() -> tuple[Any, int]:
            reservation = Reservation(*route)
            verdict = await t.hit(rule, "5:ping", also=limiter.buy_call(reservation))
            limiter.bought(reservation, verdict.also)
            await limiter.acquire(*route, reservation=reservation)
            return verdict.also, limiter.prepaid_used

        first, used = await asyncio.create_task(command())
        assert first == 0 and used == 1  # asked Redis: the answer came with the verdict
        second, used = await asyncio.create_task(command())
        assert isinstance(second, asyncio.Future) and await second == 0
        assert used == 2  # decided here: the slot came with the background count
        assert await redis.zcard(keys("rest", "global", "window")) == 2
