"""Usage analytics, pure: a command use, how a batch of them becomes rows, spans, and the
figures an admin reads.

A use is counted three ways: per (server, UTC day, command, outcome), per (server, UTC hour,
command, outcome) and per (server, UTC day, member). A batch of uses is folded here into those
rows before it is written, so a busy worker's thousand uses a flush are a few dozen rows in one
statement each.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from bot.user_error import UserError

OUTCOMES = ("ok", "refused", "error")
SPANS = {"7d": 7, "30d": 30, "90d": 90}
KEEP_DAYS = 90  # days of per-day and per-member rows; older ones are rolled up into months
KEEP_HOURS = 8  # days of per-hour rows
HOUR_DAYS = 7  # days shown by hour (within KEEP_HOURS)
LEVELS = " ▁▂▃▄▅▆▇█"  # an hour's uses against the busiest hour shown


class SpanError(UserError):
    pass


def parse_span(text: str) -> int:
    """Days in '7d', '30d' or '90d' (also '7', '30', '90')."""
    span = text.strip().lower()
    if span.isdigit():
        span += "d"
    if span not in SPANS:
        raise SpanError(f"`{span[:20]}` is not a span I keep: use 7d, 30d or 90d.")
    return SPANS[span]


@dataclass(frozen=True, slots=True)
class Use:
    guild_id: int  # 0: a direct message
    command: str
    outcome: str  # one of OUTCOMES
    user_id: int
    latency_ms: int
    at: float  # epoch seconds


DayKey = tuple[int, date, str, str]
HourKey = tuple[int, datetime, str, str]
UserKey = tuple[int, date, int]


@dataclass
class Rows:
    """A batch of uses folded: (uses, summed latency) per key."""

    days: dict[DayKey, list[int]] = field(default_factory=dict)
    hours: dict[HourKey, list[int]] = field(default_factory=dict)
    users: Counter[UserKey] = field(default_factory=Counter)


def fold(uses: list[Use]) -> Rows:
    rows = Rows()
    for u in uses:
        at = datetime.fromtimestamp(u.at, UTC)
        day = at.date()
        hour = at.replace(minute=0, second=0, microsecond=0)
        d = rows.days.setdefault((u.guild_id, day, u.command, u.outcome), [0, 0])
        d[0] += 1
        d[1] += u.latency_ms
        h = rows.hours.setdefault((u.guild_id, hour, u.command, u.outcome), [0, 0])
        h[0] += 1
        h[1] += u.latency_ms
        rows.users[(u.guild_id, day, u.user_id)] += 1
    return rows


@dataclass(frozen=True)
class CommandFigures:
    command: str
    uses: int
    errors: int
    refused: int
    avg_ms: float


@dataclass(frozen=True)
class Figures:
    """What `analytics` shows for a span ending today (UTC)."""

    first: date
    last: date
    per_day: list[int]  # uses per day, first to last
    top: list[CommandFigures]
    uses: int
    refused: int
    errors: int
    active_users: int
    # uses per UTC hour over the last HOUR_DAYS days to `last`, 24 a day, oldest first
    per_hour: list[int] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.errors / self.uses if self.uses else 0.0

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    @property
    def hour_days(self) -> list[date]:
        """The days `per_hour` covers, 24 entries each."""
        return [self.last - timedelta(days=HOUR_DAYS - 1 - i) for i in range(HOUR_DAYS)]


def hours_start(last: date) -> datetime:
    """The first hour `per_hour` counts: midnight UTC HOUR_DAYS - 1 days before `last`."""
    first = last - timedelta(days=HOUR_DAYS - 1)
    return datetime(first.year, first.month, first.day, tzinfo=UTC)


def hour_series(last: date, counted: dict[datetime, int]) -> list[int]:
    start = hours_start(last)
    return [counted.get(start + timedelta(hours=i), 0) for i in range(HOUR_DAYS * 24)]


def hour_lines(f: Figures) -> list[str]:
    """One line a day, `MM-DD ` then a character per UTC hour from 00 to 23, its height the
    hour's uses against the busiest hour shown (blank: none)."""
    if not f.per_hour:
        return []
    most = max(f.per_hour) or 1
    out = []
    for i, day in enumerate(f.hour_days):
        row = f.per_hour[i * 24 : (i + 1) * 24]
        marks = "".join(
            LEVELS[0] if n == 0 else LEVELS[max(1, round(n / most * (len(LEVELS) - 1)))]
            for n in row
        )
        out.append(f"{day.strftime('%m-%d')} {marks}")
    return out


def day_series(first: date, last: date, counted: dict[date, int]) -> list[int]:
    n = (last - first).days + 1
    return [counted.get(first + timedelta(days=i), 0) for i in range(n)]


def to_csv(f: Figures) -> str:
    """The figures as CSV: one row per day, then one per command, then one per UTC hour of
    the last HOUR_DAYS days."""
    lines = ["day,uses"]
    lines += [f"{d.isoformat()},{n}" for d, n in zip(f.days, f.per_day, strict=True)]
    lines.append("")
    lines.append("command,uses,refused,errors,avg_ms")
    for c in f.top:
        name = c.command.replace('"', '""')
        lines.append(f'"{name}",{c.uses},{c.refused},{c.errors},{c.avg_ms:.0f}')
    if f.per_hour:
        start = hours_start(f.last)
        lines.append("")
        lines.append("hour_utc,uses")
        for i, n in enumerate(f.per_hour):
            lines.append(f"{(start + timedelta(hours=i)).strftime('%Y-%m-%dT%H:00Z')},{n}")
    return "\n".join(lines) + "\n"
