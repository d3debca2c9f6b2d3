"""Reading what a user typed: durations, zones and times (repeats, lead times and the prefix
command's options are in `options.py`).

Pure: no Discord, no database, no clock (the caller passes `now`). Every error is a
`ParseError` whose message names the token that could not be used, so the cog can pass it to
the user as it is.

Local times are resolved in a zone (`zoneinfo`); the daylight-saving rules are deliberate:

- a local time that does not exist (the hour skipped when clocks go forward) is refused when
  the user typed it, with the shifted time as a suggestion; a repeat that lands in such a gap
  fires at the same instant, which reads one hour later on the clock (see `resolve_local`);
- a local time that happens twice (clocks go back) means the first of the two; an explicit
  UTC offset picks either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from bot.user_error import UserError

MINUTE, HOUR, DAY, WEEK = 60, 3600, 86400, 7 * 86400

UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": MINUTE,
    "min": MINUTE,
    "mins": MINUTE,
    "minute": MINUTE,
    "minutes": MINUTE,
    "h": HOUR,
    "hr": HOUR,
    "hrs": HOUR,
    "hour": HOUR,
    "hours": HOUR,
    "d": DAY,
    "day": DAY,
    "days": DAY,
    "w": WEEK,
    "wk": WEEK,
    "wks": WEEK,
    "week": WEEK,
    "weeks": WEEK,
}
_COMPOUND = re.compile(r"(?:\d+[a-z]+)+")
_PART = re.compile(r"(\d+)([a-z]+)")
NUMBER = re.compile(r"\d+")
CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# A date with a time in one token: 2026-12-05T19:30, optionally with seconds, fraction, offset.
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?",
    re.IGNORECASE,
)
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)", re.IGNORECASE)
# Longest duration we accept anywhere (a sanity bound; the callers' limits are tighter).
_MAX_DURATION = 400 * DAY


class ParseError(UserError, ValueError):
    """Input that can't be used; the message is for the user and names the bad token (the
    command handler shows it as it is: a UserError)."""


def clean(token: str) -> str:
    return token if len(token) <= 40 else token[:40] + "…"


# -- durations ---------------------------------------------------------------------------------


def duration_token(token: str) -> int | None:
    """Seconds in a one-token duration (`30m`, `1h30m`, `2d`), or None if it isn't one."""
    t = token.lower()
    if not _COMPOUND.fullmatch(t):
        return None
    total = 0
    for number, unit in _PART.findall(t):
        if unit not in UNITS:
            raise ParseError(
                f"`{clean(token)}`: unknown unit `{unit}`; use s, m, h, d or w (e.g. `1h30m`)."
            )
        total += int(number) * UNITS[unit]
        if total > _MAX_DURATION:
            raise ParseError(f"`{clean(token)}` is too long a time.")
    return total


def take_duration(tokens: list[str], start: int) -> tuple[int, int]:
    """Read a duration from `tokens[start:]`: `2h`, `1d 30m`, `2 hours 5 min`, `1h30m`.

    Returns (seconds, tokens used); (0, 0) when `tokens[start]` doesn't begin a duration."""
    total, i = 0, start
    while i < len(tokens):
        word = tokens[i].lower()
        if word == "and" and i > start and i + 1 < len(tokens):
            i += 1
            continue
        seconds = duration_token(word)
        if seconds is not None:
            total += seconds
            i += 1
            continue
        if NUMBER.fullmatch(word) and i + 1 < len(tokens):
            unit = tokens[i + 1].lower().rstrip(",")
            if unit in UNITS:
                total += int(word) * UNITS[unit]
                i += 2
                continue
        break
    if total > _MAX_DURATION:
        raise ParseError(f"`{clean(' '.join(tokens[start:i]))}` is too long a time.")
    if i > start and tokens[i - 1].lower() == "and":
        i -= 1
    return total, i - start


def parse_duration(text: str) -> int:
    """A whole string as a duration, e.g. `1d 30m`; ParseError naming it otherwise."""
    tokens = text.split()
    if not tokens:
        raise ParseError("Missing a duration such as `30m` or `2h`.")
    seconds, used = take_duration(tokens, 0)
    if used != len(tokens):
        bad = tokens[used]
        raise ParseError(f"`{clean(bad)}` is not a duration; write e.g. `30m`, `2h` or `1d`.")
    return seconds


def format_duration(seconds: float) -> str:
    """`2h 5m`, `1d 3h`, `3m 20s`, `45s`: the two largest non-zero units."""
    s = max(0, round(seconds))
    parts = []
    for name, size in (("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{name}")
            s %= size
    return " ".join(parts[:2]) or "0s"


# -- zones and local times -----------------------------------------------------------------------

_ZONES: dict[str, str] | None = None


def _zone_names() -> dict[str, str]:
    global _ZONES  # noqa: PLW0603 - a cache of the system's zone list, built once
    if _ZONES is None:
        _ZONES = {name.lower(): name for name in available_timezones()}
        _ZONES.setdefault("utc", "UTC")
    return _ZONES


def canonical_zone(name: str) -> str:
    """The zone's proper name (`europe/berlin` -> `Europe/Berlin`); ParseError if unknown."""
    wanted = name.strip()
    found = _zone_names().get(wanted.lower())
    if found is None:
        import difflib

        close = difflib.get_close_matches(wanted.lower(), list(_zone_names()), n=3, cutoff=0.75)
        hint = (
            " Did you mean " + " or ".join(f"`{_zone_names()[c]}`" for c in close) + "?"
            if close
            else ""
        )
        raise ParseError(
            f"`{clean(wanted)}` is not a timezone I know.{hint} "
            "Use a name like `Europe/Berlin`, `America/New_York` or `UTC`."
        )
    try:
        ZoneInfo(found)
    except (ZoneInfoNotFoundError, ValueError):
        raise ParseError(f"`{clean(wanted)}` is not a timezone I know.") from None
    return found


def zone_names_matching(text: str, limit: int = 25) -> list[str]:
    """Zone names containing `text` (for slash autocomplete)."""
    t = text.lower().replace(" ", "_")
    names = sorted(n for low, n in _zone_names().items() if t in low)
    return names[:limit]


@dataclass(frozen=True)
class Resolved:
    """A wall time in a zone, pinned to one instant."""

    at: datetime  # aware, UTC
    shifted: bool = False  # the wall time did not exist (clocks went forward); see resolve_local
    ambiguous: bool = False  # the wall time happened twice (clocks went back); the first is used


def resolve_local(local: datetime, zone: str) -> Resolved:
    """The instant a naive wall time `local` in `zone` stands for.

    Nonexistent (in a spring-forward gap): the instant the wall time would have been with the
    offset in force before the change, which reads one gap later on the clock (02:30 in a gap
    from 02:00 to 03:00 becomes 03:30). Ambiguous (in a fall-back overlap): the first of the two
    (fold=0, the offset before the change)."""
    tz = ZoneInfo(zone)
    first = local.replace(tzinfo=tz, fold=0)
    second = local.replace(tzinfo=tz, fold=1)
    at = first.astimezone(UTC)
    back = at.astimezone(tz).replace(tzinfo=None)
    if back != local:
        return Resolved(at, shifted=True)
    ambiguous = first.utcoffset() != second.utcoffset()
    return Resolved(at, ambiguous=ambiguous)


# -- absolute and relative times ----------------------------------------------------------------


@dataclass(frozen=True)
class When:
    at: datetime  # aware, UTC
    zone: str  # the zone the wall time below is kept in (day-based repeats use it)
    local: datetime  # naive wall time of `at` in `zone`
    notes: tuple[str, ...] = ()


def _parse_clock(token: str) -> time | None:
    m = CLOCK.fullmatch(token)
    if not m:
        return None
    hour, minute, second = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ParseError(f"`{clean(token)}` is not a time of day; write e.g. `19:30`.")
    return time(hour, minute, second)


def _parse_date(token: str) -> date:
    try:
        return date.fromisoformat(token)
    except ValueError:
        raise ParseError(f"`{clean(token)}` is not a date; write e.g. `2026-12-05`.") from None


def _with_offset(token: str) -> datetime:
    try:
        value = datetime.fromisoformat(token.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ParseError(
            f"`{clean(token)}` is not an ISO 8601 time; write e.g. `2026-12-05T19:30+01:00`."
        ) from None
    return value


def _local_when(local: datetime, zone: str, typed: str) -> When:
    r = resolve_local(local, zone)
    if r.shifted:
        suggestion = r.at.astimezone(ZoneInfo(zone)).strftime("%H:%M")
        raise ParseError(
            f"`{clean(typed)}` doesn't exist in {zone}: the clocks go forward that night. "
            f"Pick another time, e.g. {suggestion}."
        )
    notes: tuple[str, ...] = ()
    if r.ambiguous:
        first = local.replace(tzinfo=ZoneInfo(zone), fold=0).strftime("%z")
        second = local.replace(tzinfo=ZoneInfo(zone), fold=1).strftime("%z")
        stamp = local.strftime("%Y-%m-%dT%H:%M")
        notes = (
            f"{local:%H:%M} happens twice that night in {zone} (the clocks go back); "
            f"I took the first ({_fmt_offset(first)}). "
            f"Write `{stamp}{_fmt_offset(second)}` for the second.",
        )
    return When(r.at, zone, local, notes)


def _fmt_offset(raw: str) -> str:
    return f"{raw[:3]}:{raw[3:]}" if len(raw) == 5 else raw


def take_when(tokens: list[str], now: datetime, zone: str) -> tuple[When, int]:
    """Read a time from the start of `tokens`; returns (when, tokens used).

    See `_take_when` for the forms; dates at the ends of the calendar are refused, not
    overflowed."""
    try:
        return _take_when(tokens, now, zone)
    except OverflowError:
        shown = " ".join(tokens[:2])
        raise ParseError(f"`{clean(shown)}` is out of range; pick a time within a year.") from None


def _take_when(tokens: list[str], now: datetime, zone: str) -> tuple[When, int]:
    """Read a time from the start of `tokens`; returns (when, tokens used).

    Forms: `in 2h`, `in 1d 30m`, `2h` (relative); `2026-12-05T19:30+01:00` or `...Z` (absolute,
    ISO 8601 with offset); `2026-12-05 19:30`, `2026-12-05T19:30` (local, in `zone`, or in a zone
    named right after: `2026-12-05 19:30 Europe/Berlin`); `19:30`, `at 19:30`, `today 19:30`,
    `tomorrow 19:30` (the next such time)."""
    if not tokens:
        raise ParseError("Missing the time: write e.g. `in 2h` or `2026-12-05 19:30`.")
    i = 0
    head = tokens[0].lower()
    if head == "in":
        seconds, used = take_duration(tokens, 1)
        if used == 0:
            bad = tokens[1] if len(tokens) > 1 else ""
            if not bad:
                raise ParseError("`in` needs a duration after it, e.g. `in 2h` or `in 1d 30m`.")
            raise ParseError(
                f"`{clean(bad)}` is not a duration; write e.g. `in 2h` or `in 1d 30m`."
            )
        return _relative(seconds, now, zone), 1 + used
    seconds, used = take_duration(tokens, 0)
    if used:
        return _relative(seconds, now, zone), used
    if head in ("at", "on"):
        i = 1
        if len(tokens) < 2:
            raise ParseError(f"`{tokens[0]}` needs a time after it, e.g. `at 19:30`.")
        head = tokens[1].lower()
    tz = ZoneInfo(zone)
    local_now = now.astimezone(tz).replace(tzinfo=None)
    if head in ("today", "tomorrow"):
        clock = _parse_clock(tokens[i + 1]) if i + 1 < len(tokens) else None
        if clock is None:
            raise ParseError(f"`{tokens[i]}` needs a time after it, e.g. `{head} 19:30`.")
        day = local_now.date() + timedelta(days=1 if head == "tomorrow" else 0)
        zone, extra = _zone_after(tokens, i + 2, zone)
        local = datetime.combine(day, clock)
        return _local_when(local, zone, f"{tokens[i]} {tokens[i + 1]}"), i + 2 + extra
    token = tokens[i]
    m = _DATETIME.fullmatch(token)
    if m and m.group("offset"):
        value = _with_offset(token)
        at = value.astimezone(UTC)
        return When(at, zone, at.astimezone(tz).replace(tzinfo=None)), i + 1
    if m:
        local = _with_offset(token)
        zone, extra = _zone_after(tokens, i + 1, zone)
        return _local_when(local, zone, token), i + 1 + extra
    if DATE.fullmatch(token):
        day = _parse_date(token)
        clock = _parse_clock(tokens[i + 1]) if i + 1 < len(tokens) else None
        if clock is None:
            raise ParseError(f"`{clean(token)}` needs a time too, e.g. `{token} 19:30`.")
        used = i + 2
        if used < len(tokens) and _OFFSET.fullmatch(tokens[used]):
            value = _with_offset(f"{token}T{tokens[i + 1]}{tokens[used]}")
            at = value.astimezone(UTC)
            return When(at, zone, at.astimezone(tz).replace(tzinfo=None)), used + 1
        zone, extra = _zone_after(tokens, used, zone)
        return _local_when(datetime.combine(day, clock), zone, f"{token} {tokens[i + 1]}"), (
            used + extra
        )
    clock = _parse_clock(token)
    if clock is not None:
        zone, extra = _zone_after(tokens, i + 1, zone)
        local_now = now.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
        local = datetime.combine(local_now.date(), clock)
        if local <= local_now:
            local += timedelta(days=1)
        return _local_when(local, zone, token), i + 1 + extra
    if re.fullmatch(r"\d{4}-\S*", token):
        raise ParseError(f"`{clean(token)}` is not a date; write e.g. `2026-12-05 19:30`.")
    raise ParseError(
        f"`{clean(token)}` is not a time I understand; write e.g. `in 2h`, `19:30`, "
        "`2026-12-05 19:30` or `2026-12-05T19:30+01:00`."
    )


def _zone_after(tokens: list[str], i: int, zone: str) -> tuple[str, int]:
    """A zone name right after a local time (`... 19:30 Europe/Berlin`, `... 19:30 UTC`)."""
    if i < len(tokens):
        token = tokens[i]
        if "/" in token or token.upper() == "UTC":
            if token.lower() in _zone_names():
                return canonical_zone(token), 1
            if "/" in token:
                canonical_zone(token)  # raises, naming the token
    return zone, 0


def _relative(seconds: int, now: datetime, zone: str) -> When:
    at = now.astimezone(UTC) + timedelta(seconds=seconds)
    return When(at, zone, at.astimezone(ZoneInfo(zone)).replace(tzinfo=None))


def parse_when(text: str, now: datetime, zone: str) -> When:
    """A whole string as a time (the slash command's `when`)."""
    tokens = text.split()
    when, used = take_when(tokens, now, zone)
    if used != len(tokens):
        raise ParseError(
            f"`{clean(tokens[used])}` after the time is not part of a time; "
            "put the message in `message`."
        )
    return when


def parse_until(text: str, now: datetime, zone: str) -> datetime:
    """The end of a repeat: a date (through the end of that day, local) or a time."""
    tokens = text.split()
    if len(tokens) == 1 and DATE.fullmatch(tokens[0]):
        day = _parse_date(tokens[0])
        end = datetime.combine(day, time(23, 59, 59))
        return resolve_local(end, zone).at
    try:
        when, used = take_when(tokens, now, zone)
    except ParseError as exc:
        raise ParseError(f"`--until`: {exc}") from None
    if used != len(tokens):
        raise ParseError(f"`{clean(tokens[used])}` is not part of the `--until` time.")
    return when.at
