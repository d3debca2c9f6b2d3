"""Reading a reminder's options: repeats, lead times, targets, and the prefix command's text
(`in 2h Session --before 30m --repeat weekly --to players`) split into the fields the slash
command has as options (`Raw`).

Pure, like `parsing.py` (times and durations), whose `ParseError` every error here is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from bot.cogs.reminders.parsing import (
    CLOCK,
    DATE,
    DAY,
    HOUR,
    NUMBER,
    UNITS,
    ParseError,
    When,
    clean,
    duration_token,
    parse_duration,
    take_duration,
    take_when,
)

# -- repeats and lead times -----------------------------------------------------------------------


@dataclass(frozen=True)
class Repeat:
    """Every `every` hours (fixed instants) or days (the same wall time in the zone)."""

    unit: str  # "hour" or "day"
    every: int

    @property
    def seconds(self) -> int:
        return self.every * (HOUR if self.unit == "hour" else DAY)

    def describe(self) -> str:
        if self.unit == "day" and self.every % 7 == 0:
            n, name = self.every // 7, "week"
        else:
            n, name = self.every, self.unit
        return f"every {name}" if n == 1 else f"every {n} {name}s"


MIN_REPEAT = HOUR
MAX_REPEAT = 365 * DAY
_NAMED_REPEATS = {
    "hourly": Repeat("hour", 1),
    "daily": Repeat("day", 1),
    "weekly": Repeat("day", 7),
    "fortnightly": Repeat("day", 14),
    "biweekly": Repeat("day", 14),
}


def parse_repeat(text: str) -> Repeat:
    """`daily`, `weekly`, `hourly`, `every 2 days`, `every week`, `12h`, `2d`, `1w`.

    Whole days (and weeks) keep the wall time in the reminder's zone across daylight-saving
    changes; hours are fixed intervals. At least an hour, at most a year."""
    raw = text.strip()
    t = raw.lower()
    if t in _NAMED_REPEATS:
        return _NAMED_REPEATS[t]
    words = t.split()
    if words and words[0] == "every":
        words = words[1:]
        if len(words) == 1 and words[0] in UNITS:
            words = ["1", words[0]]
    if not words:
        raise ParseError(
            f"`{clean(raw) or 'repeat'}`: say how often, e.g. `daily`, `weekly` or `every 2 days`."
        )
    try:
        seconds = parse_duration(" ".join(words))
    except ParseError:
        raise ParseError(
            f"`{clean(raw)}` is not a repeat; write `daily`, `weekly`, `hourly`, "
            "`every 2 days` or `12h`."
        ) from None
    if seconds < MIN_REPEAT:
        raise ParseError(f"`{clean(raw)}` repeats too often; at least an hour apart.")
    if seconds > MAX_REPEAT:
        raise ParseError(f"`{clean(raw)}` is too long between repeats; at most a year.")
    if seconds % DAY == 0:
        return Repeat("day", seconds // DAY)
    if seconds % HOUR == 0:
        return Repeat("hour", seconds // HOUR)
    raise ParseError(f"`{clean(raw)}`: repeats go by whole hours or days (e.g. `12h`, `2d`).")


MAX_LEADS = 5
MAX_LEAD = 30 * DAY


def take_lead(tokens: list[str], i: int) -> tuple[int, int]:
    """One lead time at tokens[i]: `30m`, `1h30m`, `0`, or `2 hours`. Unlike `take_duration`,
    `30m 6h` is two lead times, not one of 6h30m. Returns (seconds, tokens used)."""
    word = tokens[i].strip(",").lower()
    if word in ("0", "now"):
        return 0, 1
    seconds = duration_token(word)
    if seconds is not None:
        return seconds, 1
    if NUMBER.fullmatch(word) and i + 1 < len(tokens):
        unit = tokens[i + 1].strip(",").lower()
        if unit in UNITS:
            return int(word) * UNITS[unit], 2
    return 0, 0


def parse_leads(tokens: list[str]) -> tuple[int, ...]:
    """Lead times such as `30m 6h 1d` (`0` means at the time itself), largest first."""
    leads: list[int] = []
    i = 0
    while i < len(tokens):
        seconds, used = take_lead(tokens, i)
        if used == 0:
            raise ParseError(
                f"`{clean(tokens[i])}` is not a lead time; write e.g. `--before 30m 6h 1d`."
            )
        shown = " ".join(tokens[i : i + used])
        if seconds > MAX_LEAD:
            raise ParseError(f"Lead time `{clean(shown)}` is too long; at most 30 days.")
        if seconds in leads:
            raise ParseError(f"Lead time `{clean(shown)}` is given twice.")
        leads.append(seconds)
        i += used
    if not leads:
        raise ParseError("`--before` needs lead times, e.g. `--before 30m 6h 1d`.")
    if len(leads) > MAX_LEADS:
        raise ParseError(f"At most {MAX_LEADS} lead times.")
    return tuple(sorted(leads, reverse=True))


# -- the prefix command's text ------------------------------------------------------------------

TARGETS = ("me", "channel", "players")
VIAS = ("dm", "channel")
OPTIONS = (
    "--before",
    "--repeat",
    "--times",
    "--until",
    "--to",
    "--dm",
    "--here",
)
_ALIASES = {
    "before": "before",
    "lead": "before",
    "leads": "before",
    "repeat": "repeat",
    "every": "repeat",
    "times": "times",
    "count": "times",
    "until": "until",
    "to": "to",
    "for": "to",
    "dm": "dm",
    "here": "here",
    "via": "via",
}


@dataclass
class Raw:
    """A reminder as typed, before it is checked: the same fields as the slash options."""

    when: str = ""
    message: str = ""
    before: str | None = None
    repeat: str | None = None
    times: str | None = None
    until: str | None = None
    to: str | None = None
    via: str | None = None
    # Tokens of `when` as read from the prefix text (so the time is parsed once).
    when_tokens: list[str] = field(default_factory=list)


def _is_option(token: str) -> bool:
    return token.startswith("--") and len(token) > 2 and token[2].isalpha()


def split_prefix_text(text: str, now: datetime, zone: str) -> tuple[When, Raw]:
    """`in 2h Session at Ann's --before 30m --repeat weekly --times 6 --to players --dm`.

    The time comes first; options (`--name value`) may come anywhere after it; everything
    else is the message, its spacing kept."""
    spans = [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    words = [s[0] for s in spans]
    if not words:
        raise ParseError(
            "Missing the time and the message: e.g. `remind in 2h Check the oven` "
            "or `remind 2026-12-05 19:30 Session --before 1d 30m`."
        )
    if _is_option(words[0]):
        raise ParseError(f"Start with the time, then the message; `{clean(words[0])}` came first.")
    when, used = take_when(words, now, zone)
    raw = Raw(when=" ".join(words[:used]), when_tokens=words[:used])
    runs: list[tuple[int, int]] = []
    i = used
    while i < len(words):
        token = words[i]
        if not _is_option(token):
            start = spans[i][1]
            while i < len(words) and not _is_option(words[i]):
                i += 1
            runs.append((start, spans[i - 1][2]))
            continue
        name, _, inline = token[2:].partition("=")
        key = _ALIASES.get(name.lower())
        if key is None:
            raise ParseError(
                f"Unknown option `{clean(token)}`; options are " + ", ".join(OPTIONS) + "."
            )
        i += 1
        values: list[str] = [inline] if inline else []
        if key in ("dm", "here"):
            if inline:
                raise ParseError(f"`--{name}` takes no value.")
            _set_once(raw, "via", "dm" if key == "dm" else "channel", token)
            continue
        if not inline:
            i, values = _option_values(key, words, i)
        if not values:
            raise ParseError(f"`--{name}` needs a value, e.g. {_EXAMPLE[key]}.")
        _set_once(raw, key, " ".join(values), token)
    raw.message = " ".join(text[a:b] for a, b in runs)
    return when, raw


_EXAMPLE = {
    "before": "`--before 30m 6h 1d`",
    "repeat": "`--repeat weekly`",
    "times": "`--times 10`",
    "until": "`--until 2027-03-01`",
    "to": "`--to players`",
    "via": "`--via dm`",
}


def _option_values(key: str, words: list[str], i: int) -> tuple[int, list[str]]:
    """The tokens an option takes, starting at words[i]; returns (next index, values)."""
    if i >= len(words) or _is_option(words[i]):
        return i, []
    if key == "before":
        values = []
        while i < len(words) and not _is_option(words[i]):
            _, used = take_lead(words, i)
            if used == 0:
                break
            values.extend(words[i : i + used])
            i += used
        if not values:
            raise ParseError(
                f"`{clean(words[i])}` is not a lead time; write e.g. `--before 30m 6h 1d`."
            )
        return i, values
    if key == "repeat":
        first = words[i].lower()
        if first == "every":
            _, used = take_duration(words, i + 1)
            if used == 0 and i + 1 < len(words) and words[i + 1].lower() in UNITS:
                used = 1
            return i + 1 + used, words[i : i + 1 + used]
        if first in _NAMED_REPEATS:
            return i + 1, [words[i]]
        _, used = take_duration(words, i)
        return i + max(used, 1), words[i : i + max(used, 1)]
    if key == "until":
        if DATE.fullmatch(words[i]) and i + 1 < len(words) and CLOCK.fullmatch(words[i + 1]):
            return i + 2, words[i : i + 2]
        return i + 1, [words[i]]
    return i + 1, [words[i]]


def _set_once(raw: Raw, key: str, value: str, token: str) -> None:
    if getattr(raw, key) is not None:
        raise ParseError(f"`{clean(token)}` is given twice.")
    setattr(raw, key, value)


def parse_times(text: str) -> int:
    t = text.strip()
    if not t.isdigit():
        raise ParseError(f"`{clean(t)}` is not a number of times; write e.g. `--times 10`.")
    return int(t)


def parse_target(text: str) -> str:
    t = text.strip().lower()
    if t in ("me", "myself", "self"):
        return "me"
    if t in ("channel", "here", "everyone"):
        return "channel"
    if t in ("players", "party", "table", "group"):
        return "players"
    raise ParseError(f"`{clean(text)}` is not a target; use `me`, `channel` or `players`.")


def parse_via(text: str) -> str:
    t = text.strip().lower()
    if t in ("dm", "dms", "pm", "direct"):
        return "dm"
    if t in ("channel", "here"):
        return "channel"
    raise ParseError(f"`{clean(text)}` is not a delivery; use `dm` or `channel`.")
