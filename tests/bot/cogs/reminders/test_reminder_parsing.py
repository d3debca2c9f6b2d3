"""Reading reminder times: relative, absolute, local in a zone, daylight-saving edges, lead
times, repeats, the prefix syntax; every error names the token that was wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cogs.reminders import options, parsing, plan
from bot.cogs.reminders.options import Repeat
from bot.cogs.reminders.parsing import ParseError

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # 13:00 in Berlin (CET, +01:00)
BERLIN = "Europe/Berlin"


def when(text: str, zone: str = BERLIN, now: datetime = NOW) -> parsing.When:
    return parsing.parse_when(text, now, zone)


# -- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2h", 7200),
        ("1d 30m", 86400 + 1800),
        ("1h30m", 5400),
        ("90m", 5400),
        ("2 hours", 7200),
        ("1 hour and 30 min", 5400),
        ("1w", 7 * 86400),
        ("45s", 45),
        ("2D 3H", 2 * 86400 + 3 * 3600),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parsing.parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "named"),
    [("2x", "`2x`: unknown unit `x`"), ("soon", "`soon` is not a duration"), ("5y", "`5y`")],
)
def test_bad_durations_name_the_token(text: str, named: str) -> None:
    with pytest.raises(ParseError, match=None) as err:
        parsing.parse_duration(text)
    assert named in str(err.value)


def test_absurd_duration_is_refused() -> None:
    with pytest.raises(ParseError, match="too long"):
        parsing.parse_duration("999999d")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(45, "45s"), (65, "1m 5s"), (7500, "2h 5m"), (7505, "2h 5m"), (90000, "1d 1h"), (0, "0s")],
)
def test_format_duration(seconds: int, text: str) -> None:
    assert parsing.format_duration(seconds) == text


# -- relative and absolute times ----------------------------------------------------------------


def test_relative_time() -> None:
    w = when("in 1d 30m")
    assert w.at == NOW + timedelta(days=1, minutes=30)
    assert w.zone == BERLIN and w.local == datetime(2026, 3, 2, 13, 30)


def test_relative_without_in() -> None:
    assert when("2h").at == NOW + timedelta(hours=2)


def test_iso_with_offset_is_absolute_whatever_the_zone() -> None:
    a = when("2026-12-05T19:30+01:00", zone="America/New_York")
    b = when("2026-12-05T18:30:00Z")
    assert a.at == b.at == datetime(2026, 12, 5, 18, 30, tzinfo=UTC)
    # The wall time is kept in the user's zone (for day-based repeats).
    assert a.local == datetime(2026, 12, 5, 13, 30)


def test_date_time_offset_as_separate_tokens() -> None:
    w, used = parsing.take_when(["2026-12-05", "19:30", "+01:00", "x"], NOW, "UTC")
    assert used == 3 and w.at == datetime(2026, 12, 5, 18, 30, tzinfo=UTC)


def test_local_time_in_the_users_zone() -> None:
    winter = when("2026-12-05 19:30")
    summer = when("2026-07-05T19:30")
    assert winter.at == datetime(2026, 12, 5, 18, 30, tzinfo=UTC)  # CET +01:00
    assert summer.at == datetime(2026, 7, 5, 17, 30, tzinfo=UTC)  # CEST +02:00


def test_zone_named_after_the_time_wins() -> None:
    w = when("2026-12-05 19:30 America/New_York")
    assert w.at == datetime(2026, 12, 6, 0, 30, tzinfo=UTC)
    assert w.zone == "America/New_York"
    assert when("2026-12-05 19:30 utc").at == datetime(2026, 12, 5, 19, 30, tzinfo=UTC)


def test_clock_time_is_the_next_one() -> None:
    assert when("19:30").at == datetime(2026, 3, 1, 18, 30, tzinfo=UTC)  # later today
    assert when("at 09:00").at == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # passed: tomorrow
    assert when("tomorrow 19:30").at == datetime(2026, 3, 2, 18, 30, tzinfo=UTC)
    assert when("today 14:00").at == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("2026-02-30 10:00", "`2026-02-30` is not a date"),
        ("2026-13-01 10:00", "`2026-13-01` is not a date"),
        ("25:00", "`25:00` is not a time of day"),
        ("12:61", "`12:61` is not a time of day"),
        ("2026-12-05", "`2026-12-05` needs a time too"),
        ("whenever", "`whenever` is not a time I understand"),
        ("in soon", "`soon` is not a duration"),
        ("in", "`in` needs a duration"),
        ("tomorrow", "`tomorrow` needs a time"),
        ("at", "`at` needs a time"),
        ("2026-12-05 19:30 Mars/Olympus", "`Mars/Olympus` is not a timezone"),
        ("2026-12-05T19:30+99:00", "`2026-12-05T19:30+99:00` is not an ISO 8601 time"),
        ("in 2h later", "`later` after the time"),
    ],
)
def test_bad_times_name_the_token(text: str, named: str) -> None:
    with pytest.raises(ParseError) as err:
        when(text)
    assert named in str(err.value)


# -- daylight saving -----------------------------------------------------------------------------


def test_nonexistent_local_time_is_refused_with_a_suggestion() -> None:
    # 2026-03-29: Berlin skips from 02:00 to 03:00.
    with pytest.raises(ParseError) as err:
        when("2026-03-29 02:30")
    text = str(err.value)
    assert "`2026-03-29 02:30` doesn't exist in Europe/Berlin" in text and "03:30" in text


def test_ambiguous_local_time_takes_the_first_and_says_how_to_get_the_second() -> None:
    # 2026-10-25: Berlin goes back from 03:00 CEST to 02:00 CET; 02:30 happens twice.
    w = when("2026-10-25 02:30")
    assert w.at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, the first
    (note,) = w.notes
    assert "happens twice" in note and "`2026-10-25T02:30+01:00`" in note
    second = when("2026-10-25T02:30+01:00")
    assert second.at - w.at == timedelta(hours=1)


def test_resolve_local_gap_shifts_by_the_gap() -> None:
    r = parsing.resolve_local(datetime(2026, 3, 29, 2, 30), BERLIN)
    assert r.shifted and r.at == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST
    ok = parsing.resolve_local(datetime(2026, 3, 29, 3, 30), BERLIN)
    assert not ok.shifted and ok.at == r.at


def test_resolve_local_in_other_hemisphere() -> None:
    # Sydney: DST ends 2026-04-05 03:00 -> 02:00; 02:30 is ambiguous there.
    r = parsing.resolve_local(datetime(2026, 4, 5, 2, 30), "Australia/Sydney")
    assert r.ambiguous and r.at == datetime(2026, 4, 4, 15, 30, tzinfo=UTC)  # +11:00 first


# -- zones ---------------------------------------------------------------------------------------


def test_zone_names_are_canonicalised() -> None:
    assert parsing.canonical_zone("europe/berlin") == BERLIN
    assert parsing.canonical_zone(" UTC ") == "UTC"


def test_unknown_zone_suggests_close_names() -> None:
    with pytest.raises(ParseError) as err:
        parsing.canonical_zone("Europe/Berln")
    assert "`Europe/Berln` is not a timezone" in str(err.value)
    assert "`Europe/Berlin`" in str(err.value)


def test_zone_autocomplete() -> None:
    found = parsing.zone_names_matching("new_y")
    assert "America/New_York" in found and len(found) <= 25


# -- repeats and lead times -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "repeat"),
    [
        ("daily", Repeat("day", 1)),
        ("weekly", Repeat("day", 7)),
        ("hourly", Repeat("hour", 1)),
        ("every 2 days", Repeat("day", 2)),
        ("every week", Repeat("day", 7)),
        ("every 2 weeks", Repeat("day", 14)),
        ("12h", Repeat("hour", 12)),
        ("2d", Repeat("day", 2)),
        ("48h", Repeat("day", 2)),
        ("1w", Repeat("day", 7)),
    ],
)
def test_repeats(text: str, repeat: Repeat) -> None:
    assert options.parse_repeat(text) == repeat


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("30m", "`30m` repeats too often; at least an hour"),
        ("every 59 minutes", "`every 59 minutes` repeats too often"),
        ("90m", "`90m`: repeats go by whole hours or days"),
        ("sometimes", "`sometimes` is not a repeat"),
        ("400d", "`400d` is too long between repeats"),
        ("every", "`every`: say how often"),
    ],
)
def test_bad_repeats_name_the_token(text: str, named: str) -> None:
    with pytest.raises(ParseError) as err:
        options.parse_repeat(text)
    assert named in str(err.value)


def test_repeat_describe() -> None:
    assert Repeat("day", 7).describe() == "every week"
    assert Repeat("day", 14).describe() == "every 2 weeks"
    assert Repeat("day", 3).describe() == "every 3 days"
    assert Repeat("hour", 1).describe() == "every hour"


def test_leads_are_separate_and_sorted() -> None:
    assert options.parse_leads(["30m", "6h", "1d"]) == (86400, 21600, 1800)
    assert options.parse_leads(["0", "15m"]) == (900, 0)
    assert options.parse_leads(["2", "hours", "1h30m"]) == (7200, 5400)


@pytest.mark.parametrize(
    ("tokens", "named"),
    [
        ("30m soon", "`soon` is not a lead time"),
        ("1h 60m", "Lead time `60m` is given twice"),
        ("31d", "Lead time `31d` is too long"),
        ("1m 2m 3m 4m 5m 6m", "At most 5 lead times"),
    ],
)
def test_bad_leads_name_the_token(tokens: str, named: str) -> None:
    with pytest.raises(ParseError) as err:
        options.parse_leads(tokens.split())
    assert named in str(err.value)


# -- the prefix syntax ---------------------------------------------------------------------------


def test_prefix_text_splits_time_message_and_options() -> None:
    w, raw = options.split_prefix_text(
        "2026-12-05 19:30 Session at Ann's\nbring dice --before 1d 30m --repeat weekly "
        "--times 6 --to players",
        NOW,
        BERLIN,
    )
    assert w.at == datetime(2026, 12, 5, 18, 30, tzinfo=UTC)
    assert raw.message == "Session at Ann's\nbring dice"
    assert (raw.before, raw.repeat, raw.times, raw.to) == ("1d 30m", "weekly", "6", "players")


def test_options_may_sit_inside_the_message() -> None:
    _, raw = options.split_prefix_text("in 2h feed --dm the cat", NOW, BERLIN)
    assert raw.message == "feed the cat" and raw.via == "dm"


def test_option_forms() -> None:
    _, raw = options.split_prefix_text(
        "in 2h x --every 2 days --until 2026-06-01 --here --before=30m", NOW, BERLIN
    )
    assert (raw.repeat, raw.until, raw.via, raw.before) == (
        "2 days",
        "2026-06-01",
        "channel",
        "30m",
    )
    _, raw = options.split_prefix_text("in 2h x --until 2026-06-01 18:00 --repeat 12h", NOW, BERLIN)
    assert (raw.until, raw.repeat) == ("2026-06-01 18:00", "12h")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("", "Missing the time and the message"),
        ("--dm in 2h x", "`--dm` came first"),
        ("in 2h x --soon", "Unknown option `--soon`"),
        ("in 2h x --dm --dm", "`--dm` is given twice"),
        ("in 2h x --before", "`--before` needs a value"),
        ("in 2h x --before soon", "`soon` is not a lead time"),
        ("in 2h x --dm=yes", "`--dm` takes no value"),
        ("in 2h x --to", "`--to` needs a value"),
    ],
)
def test_bad_prefix_text_names_the_token(text: str, named: str) -> None:
    with pytest.raises(ParseError) as err:
        options.split_prefix_text(text, NOW, BERLIN)
    assert named in str(err.value)


def test_until_a_date_means_the_end_of_that_day_locally() -> None:
    end = parsing.parse_until("2026-06-01", NOW, BERLIN)
    assert end == datetime(2026, 6, 1, 21, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fn", "text", "named"),
    [
        (options.parse_target, "gm", "`gm` is not a target"),
        (options.parse_via, "pigeon", "`pigeon` is not a delivery"),
        (options.parse_times, "many", "`many` is not a number of times"),
    ],
)
def test_bad_option_values_name_the_token(fn: object, text: str, named: str) -> None:
    assert callable(fn)
    with pytest.raises(ParseError) as err:
        fn(text)
    assert named in str(err.value)


# -- anything at all --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "9999-12-31 23:59 America/New_York x",
        "0001-01-01 00:00 Asia/Tokyo x",
        "9999-12-31T23:59-12:00 x",
        "0001-01-01T00:00+14:00 x",
    ],
)
def test_calendar_ends_are_refused_not_overflowed(text: str) -> None:
    with pytest.raises(ParseError, match="out of range"):
        options.split_prefix_text(text, NOW, BERLIN)


_PIECES = st.sampled_from(
    [
        "in",
        "at",
        "tomorrow",
        "2h",
        "1d",
        "30m",
        "0",
        "19:30",
        "25:61",
        "2026-12-05",
        "2026-02-30",
        "9999-12-31",
        "0001-01-01T00:00+14:00",
        "2026-12-05T19:30Z",
        "+01:00",
        "Europe/Berlin",
        "UTC",
        "Mars/Base",
        "--before",
        "--repeat",
        "weekly",
        "every",
        "--times",
        "3",
        "--until",
        "--to",
        "players",
        "--dm",
        "--here",
        "--x",
        "and",
        "hours",
        "x",
        "",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES | st.text(max_size=8), max_size=10))
def test_any_text_reads_or_raises_parse_error_only(pieces: list[str]) -> None:
    text = " ".join(pieces)
    try:
        w, raw = options.split_prefix_text(text, NOW, BERLIN)
        plan.build(raw, now=NOW, zone=BERLIN, in_guild=True, when=w)
    except ParseError as exc:
        assert str(exc)
