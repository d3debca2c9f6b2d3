"""The shard bookkeeping behind fatal-close recovery: which closes count, within which window,
and that FAILED stays FAILED. (tests/e2e/test_shard_closes.py runs it against the sandbox.)"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import discord
import pytest

from bot.dpy.shard_hooks import fatal_close_code
from bot.shards import FATAL_CLOSES, FatalClosePolicy, GuildArrivals, ShardState, ShardTracker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr("bot.shards.time.monotonic", c)
    return c


def test_a_shard_is_complete_when_the_last_listed_guild_arrives() -> None:
    arrivals = GuildArrivals(ShardTracker((0, 1)), list)
    assert not arrivals.expect(0, {10, 11, 12})
    assert not arrivals.expect(1, {20})
    assert not arrivals.arrived(0, 10)
    assert not arrivals.arrived(0, 99)  # not listed by this shard's READY: not counted
    assert not arrivals.arrived(0, 20)  # another shard's guild
    assert not arrivals.arrived(0, 11)
    assert arrivals.arrived(0, 12)
    assert not arrivals.arrived(0, 12)  # complete once
    assert arrivals.arrived(1, 20)


def test_a_ready_with_no_guilds_is_complete_at_once() -> None:
    assert GuildArrivals(ShardTracker((3,)), list).expect(3, set())


def test_a_disconnect_forgets_the_count_and_a_new_ready_starts_over() -> None:
    arrivals = GuildArrivals(ShardTracker((0, 1)), list)
    arrivals.expect(0, {10, 11})
    arrivals.arrived(0, 10)
    arrivals.forget(0)
    assert not arrivals.arrived(0, 11)  # discord.py's own shard_ready covers this session
    arrivals.expect(0, {10, 11})  # the new session's READY lists both again
    assert not arrivals.arrived(0, 11)
    assert arrivals.arrived(0, 10)


def test_the_tracker_follows_ready_the_listed_guilds_and_a_disconnect() -> None:
    """As dispatch feeds it: READY (discord.py has added the listed guilds, unavailable), then
    each GUILD_CREATE; an older guild of the shard that READY didn't list is not waited for."""
    tracker = ShardTracker((0, 1))
    guilds = [
        SimpleNamespace(id=10, shard_id=0, unavailable=True),
        SimpleNamespace(id=11, shard_id=0, unavailable=True),
        SimpleNamespace(id=12, shard_id=0, unavailable=False),  # not in this READY
        SimpleNamespace(id=20, shard_id=1, unavailable=True),
    ]
    arrivals = GuildArrivals(tracker, lambda: guilds)
    arrivals.on("shard_connect", 0)
    assert tracker.states[0] == ShardState.CONNECTING and tracker.was_ready(0)
    arrivals.on("guild_available", guilds[0])
    assert tracker.states[0] == ShardState.CONNECTING
    arrivals.on("guild_available", guilds[1])
    assert tracker.states[0] == ShardState.READY
    assert tracker.states[1] == ShardState.STARTING
    arrivals.on("shard_disconnect", 0)
    assert tracker.states[0] == ShardState.DISCONNECTED


def test_ready_once_is_remembered_through_disconnects() -> None:
    tracker = ShardTracker((0, 1))
    assert not tracker.was_ready(0)
    tracker.got_ready(0)  # READY arrived; guilds still coming
    tracker.update(0, ShardState.DISCONNECTED)
    assert tracker.was_ready(0) and not tracker.was_ready(1)
    tracker.update(1, ShardState.READY)
    assert tracker.was_ready(1)
    tracker.got_ready(7)  # not a shard of this worker
    assert not tracker.was_ready(7)


def test_the_third_fatal_close_within_the_window_fails_the_shard(clock: Clock) -> None:
    tracker = ShardTracker((0, 1), FatalClosePolicy(max_closes=3, window=600))
    assert tracker.fatal_close(0) == 1
    clock.now += 599
    assert tracker.fatal_close(0) == 2
    assert [tracker.states[0], tracker.fatal_close(0), tracker.states[0]] == [
        ShardState.STARTING,
        3,
        ShardState.FAILED,
    ]
    assert tracker.states[1] == ShardState.STARTING  # its sibling is not touched


def test_closes_older_than_the_window_are_forgotten(clock: Clock) -> None:
    tracker = ShardTracker((0,), FatalClosePolicy(max_closes=3, window=600))
    tracker.fatal_close(0)
    tracker.fatal_close(0)
    clock.now += 601
    assert tracker.fatal_close(0) == 1
    assert tracker.states[0] == ShardState.STARTING


def test_failed_stays_failed(clock: Clock) -> None:
    tracker = ShardTracker((0,), FatalClosePolicy(max_closes=1))
    tracker.update(0, ShardState.CONNECTING)
    tracker.fatal_close(0)
    # The disconnect event that follows the close, and the hung-shard watch, come after.
    for state in (ShardState.DISCONNECTED, ShardState.STARTING, ShardState.READY):
        tracker.update(0, state)
    assert tracker.states[0] == ShardState.FAILED
    clock.now += 10_000
    assert tracker.stuck(1) == [] and not tracker.all_ready()


def test_backoff_grows_with_the_closes_and_stays_in_bounds() -> None:
    policy = FatalClosePolicy(base_delay=1, max_delay=60)
    for closes, ceiling in ((1, 1), (2, 2), (3, 4), (10, 60)):
        delays = [policy.delay(closes) for _ in range(200)]
        assert all(0.5 <= d <= ceiling for d in delays)
    assert max(policy.delay(10) for _ in range(200)) > 4


def closed(code: int) -> discord.ConnectionClosed:
    return discord.ConnectionClosed(cast(Any, None), shard_id=0, code=code)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (closed(4004), 4004),
        (closed(4013), 4013),
        (discord.PrivilegedIntentsRequired(0), 4014),
        (closed(4000), None),  # discord.py resumes
        (closed(1000), None),
        (OSError("reset"), None),
        (None, None),
    ],
)
def test_fatal_close_codes(error: BaseException | None, code: int | None) -> None:
    assert fatal_close_code(error) == code
    assert code is None or code in FATAL_CLOSES
