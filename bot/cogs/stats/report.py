"""Reports, the pure part: periods and their due times, a report's figures, the chart's series,
`stats history`'s argument.

A **period** is a server's local day (`daily:2026-12-03`) or week from Monday
(`weekly:2026-11-30`); its report is due at the server's `report_hour`, local time, on the day
after it ends. The period's name is the job's key (with the server), so a report is sent once
per server per period whichever cluster schedules it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.user_error import UserError

KINDS = ("daily", "weekly")
CHART_DAYS = 30
MAX_HISTORY = 365
KEEP_DAYS = 400  # day rows older than this are pruned
CATCH_UP = timedelta(days=2)  # after a longer outage, missed periods are skipped but the last


class StatsInputError(UserError):
    pass


@dataclass(frozen=True)
class Period:
    kind: str  # daily or weekly
    start: date  # its first local day
    due_at: datetime  # UTC

    @property
    def days(self) -> int:
        return 1 if self.kind == "daily" else 7

    @property
    def end(self) -> date:
        """Its last local day."""
        return self.start + timedelta(days=self.days - 1)

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.start.isoformat()}"

    def label(self) -> str:
        if self.kind == "daily":
            return self.start.strftime("%A %d %B %Y")
        return f"week of {self.start.strftime('%d %B %Y')}"


def check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise StatsInputError(
            f"`{name}` is not a time zone I know; use a name like `Europe/Paris` or `UTC`."
        ) from None
    return name


def period(kind: str, start: date, tz: str, hour: int) -> Period:
    days = 1 if kind == "daily" else 7
    local = datetime.combine(start + timedelta(days=days), time(hour), ZoneInfo(tz))
    return Period(kind, start, local.astimezone(UTC))


def next_period(kind: str, tz: str, hour: int, now: datetime) -> Period:
    """The first period of `kind` whose report is due after `now`."""
    today = now.astimezone(ZoneInfo(tz)).date()
    if kind == "daily":
        start = today - timedelta(days=1)
        step = timedelta(days=1)
    else:
        start = today - timedelta(days=today.weekday() + 7)
        step = timedelta(days=7)
    p = period(kind, start, tz, hour)
    while p.due_at <= now:
        start += step
        p = period(kind, start, tz, hour)
    return p


def following(p: Period, tz: str, hour: int, now: datetime) -> Period:
    """The period after `p`; after an outage longer than CATCH_UP, the latest one already due
    instead (each missed period is not worth a late report of its own)."""
    nxt = period(p.kind, p.start + timedelta(days=p.days), tz, hour)
    if now - nxt.due_at > CATCH_UP:
        latest = next_period(p.kind, tz, hour, now)
        nxt = period(p.kind, latest.start - timedelta(days=p.days), tz, hour)
    return nxt


def parse_period_name(name: str) -> tuple[str, date]:
    kind, _, day = name.partition(":")
    return kind, date.fromisoformat(day)


@dataclass(frozen=True)
class DayRow:
    day: date
    joins: int = 0
    leaves: int = 0
    bans: int = 0
    messages: int = 0
    peak_online: int | None = None
    members: int | None = None


@dataclass(frozen=True)
class Figures:
    joins: int
    leaves: int
    bans: int
    net: int
    peak_online: int | None
    messages: int
    messages_per_day: float
    members: int | None  # at the end of the period (the last count seen)
    top_channels: list[tuple[int, int]]  # (channel id, messages), most first
    banned: list[str]  # names


def figures(
    rows: list[DayRow],
    days: int,
    channels: dict[int, int],
    banned: list[str],
    *,
    top: int = 5,
) -> Figures:
    joins = sum(r.joins for r in rows)
    leaves = sum(r.leaves for r in rows)
    messages = sum(r.messages for r in rows)
    peaks = [r.peak_online for r in rows if r.peak_online is not None]
    members = next(
        (
            r.members
            for r in sorted(rows, key=lambda r: r.day, reverse=True)
            if r.members is not None
        ),
        None,
    )
    ranked = sorted(channels.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return Figures(
        joins=joins,
        leaves=leaves,
        bans=sum(r.bans for r in rows),
        net=joins - leaves,
        peak_online=max(peaks) if peaks else None,
        messages=messages,
        messages_per_day=messages / max(1, days),
        members=members,
        top_channels=ranked,
        banned=banned,
    )


@dataclass(frozen=True)
class Series:
    days: list[date]
    members: list[int | None]  # carried forward from the last day with a count
    messages: list[int]


def series(rows: list[DayRow], last: date, days: int = CHART_DAYS) -> Series:
    by_day = {r.day: r for r in rows}
    span = [last - timedelta(days=days - 1 - i) for i in range(days)]
    members: list[int | None] = []
    known: int | None = None
    earlier = [r for r in rows if r.day < span[0] and r.members is not None]
    if earlier:
        known = max(earlier, key=lambda r: r.day).members
    for d in span:
        row = by_day.get(d)
        if row is not None and row.members is not None:
            known = row.members
        members.append(known)
    messages = [by_day[d].messages if d in by_day else 0 for d in span]
    return Series(span, members, messages)


_HISTORY = re.compile(r"^\s*(\d{1,3})\s*(d|days?|w|weeks?)?\s*$", re.IGNORECASE)


def parse_history(text: str) -> int:
    """`90d`, `12w`, `30`: a number of days, 1 to 365."""
    m = _HISTORY.match(text or "")
    if not m:
        raise StatsInputError(f"`{text}` is not a span; write it like `90d` or `12w`.")
    n = int(m.group(1)) * (7 if (m.group(2) or "d").lower().startswith("w") else 1)
    if not 1 <= n <= MAX_HISTORY:
        raise StatsInputError(f"The span must be 1 to {MAX_HISTORY} days, not {n}.")
    return n


def fmt(n: int | None) -> str:
    return "unknown" if n is None else f"{n:,}"
