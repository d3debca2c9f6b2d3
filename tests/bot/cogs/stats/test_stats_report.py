"""Report periods, figures, the chart's series and PNG, the day tallies (pure)."""

from __future__ import annotations

import io
import sys
from datetime import UTC, date, datetime, timedelta

import pytest

from bot.cogs.stats import report
from bot.cogs.stats.report import DayRow, StatsInputError
from bot.cogs.stats.tally import DayClock, Tallies


def test_the_next_daily_report_is_yesterdays_until_its_hour_then_todays() -> None:
    before = datetime(2026, 12, 4, 7, 59, tzinfo=UTC)  # 08:59 in Paris
    p = report.next_period("daily", "Europe/Paris", 9, before)
    assert p.name == "daily:2026-12-03"
    assert p.due_at == datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    after = report.next_period("daily", "Europe/Paris", 9, p.due_at)
    assert after.name == "daily:2026-12-04"


def test_weeks_start_on_monday_and_are_due_the_next_monday() -> None:
    p = report.next_period("weekly", "UTC", 9, datetime(2026, 12, 4, 12, tzinfo=UTC))
    assert p.start == date(2026, 11, 30) and p.start.weekday() == 0
    assert p.due_at == datetime(2026, 12, 7, 9, tzinfo=UTC)
    assert p.end == date(2026, 12, 6)


def test_after_a_long_outage_the_missed_periods_but_the_last_are_skipped() -> None:
    p = report.period("daily", date(2026, 12, 1), "UTC", 9)
    soon = p.due_at + timedelta(hours=1)
    assert report.following(p, "UTC", 9, soon).start == date(2026, 12, 2)
    later = datetime(2026, 12, 20, 12, tzinfo=UTC)
    nxt = report.following(p, "UTC", 9, later)
    assert nxt.start == date(2026, 12, 19)  # due today at 9: sent late, then the 20th on time
    assert nxt.due_at <= later


def test_figures_sum_the_days_and_rank_channels() -> None:
    rows = [
        DayRow(
            date(2026, 12, 1), joins=5, leaves=2, bans=1, messages=100, peak_online=40, members=503
        ),
        DayRow(date(2026, 12, 2), joins=1, leaves=4, messages=50, peak_online=55, members=500),
    ]
    f = report.figures(rows, 2, {10: 5, 11: 90, 12: 55}, ["Spammer#1"], top=2)
    assert (f.joins, f.leaves, f.net, f.bans) == (6, 6, 0, 1)
    assert f.peak_online == 55 and f.members == 500
    assert f.messages_per_day == 75
    assert f.top_channels == [(11, 90), (12, 55)]


def test_the_series_carries_the_member_count_forward() -> None:
    rows = [
        DayRow(date(2026, 11, 1), members=90),
        DayRow(date(2026, 12, 2), members=100, messages=7),
    ]
    s = report.series(rows, date(2026, 12, 3), days=5)
    assert s.days[0] == date(2026, 11, 29) and s.days[-1] == date(2026, 12, 3)
    assert s.members == [90, 90, 90, 100, 100]
    assert s.messages == [0, 0, 0, 7, 0]


@pytest.mark.parametrize(("text", "days"), [("90d", 90), ("12w", 84), ("30", 30), ("7 days", 7)])
def test_history_spans(text: str, days: int) -> None:
    assert report.parse_history(text) == days


@pytest.mark.parametrize("text", ["0d", "400d", "soon", "-3d", ""])
def test_bad_history_spans_are_refused(text: str) -> None:
    with pytest.raises(StatsInputError):
        report.parse_history(text)


def test_a_zone_must_exist() -> None:
    assert report.check_zone("Europe/Paris") == "Europe/Paris"
    with pytest.raises(StatsInputError, match="Mars/Olympus"):
        report.check_zone("Mars/Olympus")


def test_the_chart_is_a_png_of_the_stated_size() -> None:
    from PIL import Image

    from bot import charts

    def render(s: report.Series, title: str) -> bytes:
        labels = [d.isoformat() for d in s.days]
        return charts.columns(labels, s.messages, title, line=s.members)

    rows = [
        DayRow(date(2026, 12, 1) - timedelta(days=i), messages=i * 10, members=500 - i)
        for i in range(30)
    ]
    png = render(report.series(rows, date(2026, 12, 1)), "Test server: 30 days")
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    assert img.size == (charts.WIDTH, charts.HEIGHT)
    # An empty server draws too.
    assert Image.open(io.BytesIO(render(report.series([], date(2026, 12, 1)), "x")))


def test_loading_the_cog_modules_does_not_load_pillow() -> None:
    import subprocess

    code = (
        "import sys; import bot.cogs.stats.cog, bot.cogs.stats.reports; print('PIL' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_tallies_count_and_put_back() -> None:
    t = Tallies()
    d = date(2026, 12, 4)
    for _ in range(3):
        t.message(1, 10, d)
    t.join(1, d, 501)
    t.ban(1, d, 99, "Spammer")
    t.seen(1, d, members=None, online=40)
    taken = t.take()
    assert len(t) == 0
    t.message(1, 11, d)
    t.seen(1, d, members=510, online=20)
    t.put_back(taken)  # the flush failed: nothing is lost, the newer member count wins
    again = t.take()[(1, d)]
    assert again.messages == 4 and dict(again.channels) == {10: 3, 11: 1}
    assert again.joins == 1 and again.banned == [(99, "Spammer")]
    assert again.members == 510 and again.peak_online == 40


def test_days_are_the_servers_own() -> None:
    clock = DayClock()
    clock.set_zone(1, "Pacific/Auckland")
    instant = datetime(2026, 12, 4, 12, tzinfo=UTC).timestamp()  # 01:00 on the 5th there
    assert clock.day(1, instant) == date(2026, 12, 5)
    assert clock.day(2, instant) == date(2026, 12, 4)
    assert clock.day(1, instant + 23 * 3600) == date(2026, 12, 6)
    assert clock.day(1, instant) == date(2026, 12, 5)  # an earlier instant is not the cache's
    assert clock.day(2, instant + 12 * 3600) == date(2026, 12, 5)
    clock.set_zone(2, "UTC")
    assert clock.zone_of(2).key == "UTC"
    assert clock.day(2, instant - 13 * 3600) == date(2026, 12, 3)


def test_the_pure_cores_import_no_discord_redis_or_asyncpg() -> None:
    import subprocess

    code = (
        "import sys; import bot.cogs.stats.counters, bot.cogs.stats.tally, "
        "bot.cogs.stats.report, bot.charts; "
        "print(sorted(m for m in ('discord', 'redis', 'asyncpg', 'aiohttp') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _figures(banned: list[str]) -> report.Figures:
    return report.Figures(
        joins=0,
        leaves=0,
        bans=len(banned),
        net=0,
        peak_online=None,
        messages=0,
        messages_per_day=0.0,
        members=None,
        top_channels=[],
        banned=banned,
    )


def test_a_long_ban_list_is_named_in_part_and_attached_whole() -> None:
    from bot.cogs.stats import reports

    names = [f"raider{n}" for n in range(reports.MAX_BAN_NAMES + 5)]
    f = _figures(names)
    (bans,) = [x for x in reports.embed_of("Daily", f, {}).fields if x.name == "Bans"]
    assert bans.value is not None and "raider0, raider1" in bans.value
    assert f"raider{reports.MAX_BAN_NAMES}" not in bans.value
    assert bans.value.endswith("and 5 more (all in bans.txt)")
    attached = reports.bans_file(f)
    assert attached is not None and attached.filename == "bans.txt"
    assert attached.fp.read().decode().splitlines() == names


def test_a_short_ban_list_is_all_in_the_embed() -> None:
    from bot.cogs.stats import reports

    f = _figures(["a_*star*", "b"])
    (bans,) = [x for x in reports.embed_of("Daily", f, {}).fields if x.name == "Bans"]
    assert bans.value == "2: a\\_\\*star\\*, b"
    assert reports.bans_file(f) is None
