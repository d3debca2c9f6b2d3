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

    @property
    def error_rate(self) -> float:
        return self.errors / self.uses if self.uses else 0.0

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]


def day_series(first: date, last: date, counted: dict[date, int]) -> list[int]:
    n = (last - first).days + 1
    return [counted.get(first + timedelta(days=i), 0) for i in range(n)]


def to_csv(f: Figures) -> str:
    """The figures as CSV: one row per day, then one per command."""
    lines = ["day,uses"]
    lines += [f"{d.isoformat()},{n}" for d, n in zip(f.days, f.per_day, strict=True)]
    lines.append("")
    lines.append("command,uses,refused,errors,avg_ms")
    for c in f.top:
        name = c.command.replace('"', '""')
        lines.append(f'"{name}",{c.uses},{c.refused},{c.errors},{c.avg_ms:.0f}')
    return "\n".join(lines) + "\n"
