"""Plans and repeats: limits and refusals, weekly reminders across daylight-saving changes,
the next delivery after one fired (skipping repeats missed while the bot was down)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cogs.reminders import options, parsing, plan
from bot.cogs.reminders.options import Raw, Repeat
from bot.cogs.reminders.parsing import ParseError
from bot.cogs.reminders.plan import Series

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BERLIN = "Europe/Berlin"


def planned(text: str, *, in_guild: bool = True, now: datetime = NOW, zone: str = BERLIN):
    w, raw = options.split_prefix_text(text, now, zone)
    return plan.build(raw, now=now, zone=zone, in_guild=in_guild, when=w)


def refused(text: str, **kw: object) -> str:
    with pytest.raises(ParseError) as err:
        planned(text, **kw)  # type: ignore[arg-type]
    return str(err.value)


def test_simple_plan() -> None:
    p = planned("in 2h Check the oven")
    assert p.message == "Check the oven"
    assert p.target == "me" and p.via == "channel"
    assert p.first_fires() == [(0, NOW + timedelta(hours=2))]


def test_lead_times_each_fire_once_before_the_event() -> None:
    p = planned("2026-12-05 19:30 Session --before 1d 6h 30m")
    event = datetime(2026, 12, 5, 18, 30, tzinfo=UTC)
    assert p.first_fires() == [
        (86400, event - timedelta(days=1)),
        (21600, event - timedelta(hours=6)),
        (1800, event - timedelta(minutes=30)),
    ]
    assert "Fires 1d before, 6h before, 30m before." in plan.describe(p)


def test_dm_is_the_default_outside_servers() -> None:
    assert planned("in 2h x", in_guild=False).via == "dm"
    assert planned("in 2h x --dm").via == "dm"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("2026-02-01 10:00 x", "`2026-02-01 10:00` is in the past (28d 3h ago)"),
        ("in 0s x", "`in 0s` is in the past"),
        ("in 367d x", "`in 367d` is more than a year ahead"),
        ("in 2h x --before 3h", "Lead time `3h` would be in the past: the time is only 2h away"),
        ("in 2h", "Missing the message"),
        ("in 2h x --times 4", "`times` only goes with a repeat"),
        ("in 2h x --until 2026-04-01", "`until` only goes with a repeat"),
        ("in 2h x --repeat daily --times 1", "`1` times: a repeat runs 2 to 500 times"),
        ("in 2h x --repeat daily --times 501", "`501` times"),
        ("in 2h x --repeat daily --until 2026-02-01", "`until 2026-02-01` is before the first"),
        ("in 2h x --repeat daily --until 2027-06-01", "`until 2027-06-01` is more than a year"),
        ("in 2h x --to channel --dm", "`to channel` is posted in the channel"),
        ("in 2h x --to players --dm", "Players are reminded in the channel"),
    ],
)
def test_refusals_name_what_was_wrong(text: str, named: str) -> None:
    assert named in refused(text)


def test_message_length_limit() -> None:
    assert "1001 characters long; at most 1000" in refused("in 2h " + "x" * 1001)
    assert len(planned("in 2h " + "x" * 1000).message) == 1000


def test_only_me_outside_servers() -> None:
    assert "`to players` only works in a server" in refused("in 2h x --to players", in_guild=False)
    assert "`--here` only works in a server" in refused("in 2h x --here", in_guild=False)


def test_unbounded_repeat_ends_a_year_ahead() -> None:
    p = planned("in 2h x --repeat daily")
    assert p.series.until == NOW + timedelta(days=366)


def test_default_zone_note() -> None:
    w, raw = options.split_prefix_text("2026-12-05 19:30 x", NOW, "UTC")
    p = plan.build(raw, now=NOW, zone="UTC", in_guild=True, when=w, zone_is_default=True)
    assert any("timezone set" in n for n in p.notes)
    w, raw = options.split_prefix_text("in 2h x", NOW, "UTC")
    p = plan.build(raw, now=NOW, zone="UTC", in_guild=True, when=w, zone_is_default=True)
    assert p.notes == ()  # a relative time doesn't depend on the zone


def test_slash_fields_build_the_same_plan() -> None:
    prefix = planned("2026-12-05 19:30 Session --before 1d --repeat weekly --times 3")
    raw = Raw(when="2026-12-05 19:30", message="Session", before="1d", repeat="weekly", times="3")
    slash = plan.build(raw, now=NOW, zone=BERLIN, in_guild=True)
    assert slash == prefix


# -- repeats across daylight saving -------------------------------------------------------------


def weekly_berlin(first_local: datetime, times: int | None = None) -> Series:
    at = parsing.resolve_local(first_local, BERLIN).at
    return Series(
        first_at=at,
        local_at=first_local,
        zone=BERLIN,
        leads=(0,),
        repeat=Repeat("day", 7),
        times=times,
    )


def test_weekly_1900_berlin_stays_1900_across_both_changes() -> None:
    s = weekly_berlin(datetime(2026, 3, 21, 19, 0))  # CET; DST starts 2026-03-29
    walls = [s.event_at(k).astimezone(ZoneInfo(BERLIN)) for k in range(33)]
    assert all((w.hour, w.minute) == (19, 0) for w in walls)
    assert walls[0].utcoffset() == timedelta(hours=1)
    assert walls[2].utcoffset() == timedelta(hours=2)  # 2026-04-04, summer time
    assert walls[32].utcoffset() == timedelta(hours=1)  # 2026-10-31, winter again
    # So the instants are not 7*24h apart at the changes.
    assert s.event_at(2) - s.event_at(1) == timedelta(days=7, hours=-1)


def test_hourly_repeats_are_fixed_intervals() -> None:
    first = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)  # 01:00 CET, an hour before the change
    s = Series(first, datetime(2026, 3, 29, 1, 0), BERLIN, (0,), Repeat("hour", 1))
    assert [s.event_at(k) - first for k in range(3)] == [timedelta(hours=h) for h in range(3)]


def test_daily_repeat_through_a_gap_fires_at_the_shifted_time_once() -> None:
    # Daily 02:30 Berlin: on 2026-03-29 02:30 doesn't exist; that day it fires at 03:30 CEST,
    # and the next day at 02:30 again (each occurrence from the first wall time, no drift).
    s = Series(
        parsing.resolve_local(datetime(2026, 3, 28, 2, 30), BERLIN).at,
        datetime(2026, 3, 28, 2, 30),
        BERLIN,
        (0,),
        Repeat("day", 1),
    )
    walls = [s.event_at(k).astimezone(ZoneInfo(BERLIN)).strftime("%d %H:%M") for k in range(3)]
    assert walls == ["28 02:30", "29 03:30", "30 02:30"]


def test_daily_repeat_through_an_overlap_fires_once_at_the_first() -> None:
    s = Series(
        parsing.resolve_local(datetime(2026, 10, 24, 2, 30), BERLIN).at,
        datetime(2026, 10, 24, 2, 30),
        BERLIN,
        (0,),
        Repeat("day", 1),
    )
    assert s.event_at(1) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert s.event_at(2) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)  # 02:30 CET


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"]


@settings(max_examples=200, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1)),
    every=st.sampled_from([1, 2, 7, 14]),
    k=st.integers(min_value=0, max_value=60),
)
def test_day_repeats_keep_the_wall_time_unless_it_does_not_exist(
    zone: str, start: datetime, every: int, k: int
) -> None:
    start = start.replace(second=0, microsecond=0)
    first = parsing.resolve_local(start, zone)
    s = Series(first.at, start, zone, (0,), Repeat("day", every))
    wall = s.event_at(k).astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    expected = start + timedelta(days=k * every)
    if parsing.resolve_local(expected, zone).shifted:
        assert timedelta(0) < wall - expected <= timedelta(hours=1)
    else:
        assert wall == expected


# -- the next delivery ---------------------------------------------------------------------------


def test_next_delivery_same_lead_next_week() -> None:
    s = weekly_berlin(datetime(2026, 3, 7, 19, 0), times=3)
    now = s.first_at - timedelta(minutes=29)  # the 30m-before one of event 0 just fired
    nxt = s.next_delivery(0, 1800, now)
    assert nxt == (1, s.event_at(1) - timedelta(minutes=30))


def test_next_delivery_ends_with_the_count_and_until() -> None:
    s = weekly_berlin(datetime(2026, 3, 7, 19, 0), times=3)
    assert s.next_delivery(1, 0, s.event_at(1)) == (2, s.event_at(2))
    assert s.next_delivery(2, 0, s.event_at(2)) is None
    bounded = Series(s.first_at, s.local_at, BERLIN, (0,), Repeat("day", 7), until=s.event_at(1))
    assert bounded.next_delivery(0, 0, s.first_at) == (1, s.event_at(1))
    assert bounded.next_delivery(1, 0, s.event_at(1)) is None


def test_repeats_missed_while_down_are_skipped_to_the_next_future_one() -> None:
    s = Series(NOW, NOW.replace(tzinfo=None), "UTC", (0,), Repeat("hour", 1))
    late_now = NOW + timedelta(hours=5, minutes=10)  # event 0 fires 5h late
    assert s.next_delivery(0, 0, late_now) == (6, NOW + timedelta(hours=6))


def test_one_off_has_no_next() -> None:
    s = Series(NOW, NOW.replace(tzinfo=None), "UTC", (0,))
    assert s.next_delivery(0, 0, NOW) is None


def test_long_outage_jump_is_fast_and_exact() -> None:
    s = Series(NOW, NOW.replace(tzinfo=None), "UTC", (0,), Repeat("hour", 1))
    later = NOW + timedelta(days=300, minutes=1)
    assert s.next_delivery(0, 0, later) == (300 * 24 + 1, NOW + timedelta(days=300, hours=1))
