"""Pure leveling rules: the level curve, multipliers, XP amounts, streaks, reward roles, and
the leaderboard's UTC period boundaries."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.cogs.leveling import rules
from ipc.leaderboard import PeriodError, period_end, period_start, period_tag


def test_level_curve_is_mee6s() -> None:
    assert [rules.xp_for_next(level) for level in range(4)] == [100, 155, 220, 295]
    assert rules.total_xp_for(0) == 0
    assert rules.total_xp_for(1) == 100
    assert rules.total_xp_for(5) == 1150
    assert rules.total_xp_for(10) == 4675
    assert rules.total_xp_for(50) == 268375


@given(st.integers(min_value=0, max_value=500))
def test_total_is_the_sum_of_steps(level: int) -> None:
    assert rules.total_xp_for(level + 1) - rules.total_xp_for(level) == rules.xp_for_next(level)


@given(st.integers(min_value=0, max_value=10**8))
def test_level_for_inverts_the_curve(xp: int) -> None:
    level = rules.level_for(xp)
    assert rules.total_xp_for(level) <= xp
    assert level == rules.MAX_LEVEL or xp < rules.total_xp_for(level + 1)


def test_level_boundaries() -> None:
    assert rules.level_for(99) == 0 and rules.level_for(100) == 1
    assert rules.level_for(254) == 1 and rules.level_for(255) == 2
    assert rules.level_for(-5) == 0


def test_progress() -> None:
    p = rules.progress(300)
    assert (p.level, p.xp, p.into_level, p.needed) == (2, 300, 45, 220)
    assert rules.bar(0.5, 10) == "█████░░░░░"


def test_multipliers() -> None:
    chans = {10: 2.0, 20: 0.0, 30: 0.5}
    roles = {1: 1.5, 2: 3.0, 3: 0.0}
    assert rules.multiplier(99, None, [], chans, roles) == 1.0
    assert rules.multiplier(10, None, [], chans, roles) == 2.0
    assert rules.multiplier(10, None, [1, 2], chans, roles) == 6.0  # the largest role counts
    assert rules.multiplier(20, None, [2], chans, roles) == 0.0  # no-XP channel
    assert rules.multiplier(10, None, [2, 3], chans, roles) == 0.0  # a no-XP role wins
    assert rules.multiplier(99, 30, [], chans, roles) == 0.5  # the category's multiplier
    assert rules.multiplier(10, 30, [], chans, roles) == 2.0  # the channel's own wins


def test_message_xp_in_range_and_scaled() -> None:
    rng = random.Random(1)
    amounts = {rules.message_xp(15, 25, 1.0, rng) for _ in range(2000)}
    assert amounts == set(range(15, 26))
    assert all(30 <= rules.message_xp(15, 25, 2.0, rng) <= 50 for _ in range(100))
    assert rules.message_xp(15, 25, 0.0, rng) == 0


def test_streaks() -> None:
    today = date(2026, 3, 1)
    days = [today - timedelta(days=i) for i in (1, 2, 3, 5)]
    assert rules.streak_length(days, today) == 4  # today counts, then 3 back, gap at 4
    assert rules.streak_length([], today) == 1
    assert rules.current_streak(days, today) == 3  # not active today yet: up to yesterday
    assert rules.current_streak([today - timedelta(days=2)], today) == 0
    # Across a month edge (leap year February).
    feb = [date(2024, 2, 28), date(2024, 2, 29)]
    assert rules.streak_length(feb, date(2024, 3, 1)) == 3


def test_achievements_reached_and_reward_roles() -> None:
    assert [a.key for a in rules.reached("level", 10)] == ["level_5", "level_10"]
    assert rules.reached("streak", 2) == []
    assert rules.reward_roles({5: 50, 10: 100, 20: 200}, 12) == (100, [50])
    assert rules.reward_roles({5: 50}, 4) == (None, [])
    assert rules.reward_roles({5: 7, 10: 7}, 10) == (7, [])


def test_period_boundaries_utc() -> None:
    # Sunday 2026-03-01 23:30 at UTC-2 is Monday 2026-03-02 01:30 UTC.
    when = datetime(2026, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    assert period_start("day", when) == datetime(2026, 3, 2, tzinfo=UTC)
    assert period_start("week", when) == datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
    assert period_start("month", when) == datetime(2026, 3, 1, tzinfo=UTC)
    assert period_start("alltime", when) is None
    assert period_tag("day", when) == "d20260302"
    assert period_tag("week", when) == "w20260302"
    assert period_tag("month", when) == "m202603"
    assert period_tag("alltime", when) == "all"


def test_weeks_start_on_monday_across_month_and_year_edges() -> None:
    sunday = datetime(2026, 1, 4, 12, tzinfo=UTC)
    assert period_start("week", sunday) == datetime(2025, 12, 29, tzinfo=UTC)
    assert period_tag("week", sunday) == "w20251229"
    assert period_end("week", sunday) == datetime(2026, 1, 5, tzinfo=UTC)
    assert period_start("month", sunday) == datetime(2026, 1, 1, tzinfo=UTC)


def test_month_ends() -> None:
    assert period_end("month", datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == datetime(
        2027, 1, 1, tzinfo=UTC
    )
    assert period_end("month", datetime(2024, 2, 29, tzinfo=UTC)) == datetime(
        2024, 3, 1, tzinfo=UTC
    )
    assert period_end("day", datetime(2024, 2, 28, 5, tzinfo=UTC)) == datetime(
        2024, 2, 29, tzinfo=UTC
    )
    last_second = datetime(2026, 4, 30, 23, 59, 59, tzinfo=UTC)
    assert period_tag("month", last_second) == "m202604"
    assert period_tag("month", last_second + timedelta(seconds=1)) == "m202605"


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_every_moment_is_inside_its_periods(naive: datetime) -> None:
    when = naive.replace(tzinfo=UTC)
    for period in ("day", "week", "month"):
        start, end = period_start(period, when), period_end(period, when)
        assert start is not None and end is not None
        assert start <= when < end
    assert period_start("week", when).weekday() == 0  # type: ignore[union-attr]


def test_unknown_period_is_named() -> None:
    with pytest.raises(PeriodError, match="'year' is not a period"):
        period_start("year", datetime.now(UTC))
