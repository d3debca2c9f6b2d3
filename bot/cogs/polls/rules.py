"""Polls, pure: reading `poll "Question?" "A" "B" [--duration 1d] [--multiple]
[--anonymous]`, the vote rule, and what the poll message shows."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import datetime

from bot.user_error import UserError

MIN_OPTIONS, MAX_OPTIONS = 2, 10
MAX_QUESTION, MAX_OPTION = 200, 80
DEFAULT_DURATION = 86400
MIN_DURATION, MAX_DURATION = 60, 30 * 86400
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)([mhdw])")


class PollError(UserError):
    pass


@dataclass(frozen=True)
class Spec:
    question: str
    options: list[str]
    duration: int  # seconds
    multiple: bool
    anonymous: bool


def parse_poll_id(text: str) -> int:
    """'12' or '#12': a poll's number as its footer shows it."""
    raw = text.strip().removeprefix("#")
    if not raw.isdigit() or not 0 < int(raw) < 2**63:
        raise PollError(f"`{text.strip()[:20]}` is not a poll's number: use the #N in its footer.")
    return int(raw)


def parse_duration(text: str) -> int:
    """'90m', '1d', '2h30m' in seconds, between a minute and 30 days."""
    text = text.strip().lower()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise PollError(f"`{text[:20]}` is not a duration: use e.g. 30m, 12h, 1d or 1w.")
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if not MIN_DURATION <= seconds <= MAX_DURATION:
        raise PollError("A poll runs from 1 minute to 30 days.")
    return seconds


def parse(text: str) -> Spec:
    """The poll a command's text asks for, or PollError naming what is wrong."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise PollError(
            f"Couldn't read the poll ({exc}): put the question and each option in quotes."
        ) from exc
    multiple = anonymous = False
    duration = DEFAULT_DURATION
    plain: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w == "--multiple":
            multiple = True
        elif w == "--anonymous":
            anonymous = True
        elif w == "--duration":
            if i + 1 >= len(words):
                raise PollError("`--duration` needs a value, e.g. `--duration 1d`.")
            duration = parse_duration(words[i + 1])
            i += 1
        elif w.startswith("--"):
            raise PollError(
                f"`{w[:20]}` is not an option: use --duration, --multiple, --anonymous."
            )
        else:
            plain.append(" ".join(w.split()))
        i += 1
    if not plain:
        raise PollError('Ask something: `poll "Pizza or tacos?" "Pizza" "Tacos"`.')
    question, options = plain[0], plain[1:]
    if not question or len(question) > MAX_QUESTION:
        raise PollError(f"The question must be 1 to {MAX_QUESTION} characters.")
    if not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
        raise PollError(
            f"A poll has {MIN_OPTIONS} to {MAX_OPTIONS} options ({len(options)} given);"
            " put each in quotes."
        )
    for o in options:
        if not o or len(o) > MAX_OPTION:
            raise PollError(f"Each option must be 1 to {MAX_OPTION} characters.")
    if len({o.lower() for o in options}) != len(options):
        raise PollError("Two options are the same.")
    return Spec(question, options, duration, multiple, anonymous)


def bar(count: int, total: int, width: int = 12) -> str:
    filled = round(width * count / total) if total else 0
    return "█" * filled + "░" * (width - filled)


def lines(options: list[str], counts: list[int]) -> list[str]:
    total = sum(counts)
    out = []
    for i, (o, c) in enumerate(zip(options, counts, strict=True)):
        share = f"{c / total:.0%}" if total else "0%"
        out.append(f"**{i + 1}. {o}**\n`{bar(c, total)}` {c} ({share})")
    return out


def footer(multiple: bool, anonymous: bool, closes_at: datetime, closed: bool) -> str:
    kind = "Choose any" if multiple else "Choose one"
    shown = "anonymous" if anonymous else "votes are visible to the poll's staff"
    when = (
        f"closed {closes_at:%Y-%m-%d %H:%M} UTC"
        if closed
        else f"closes {closes_at:%Y-%m-%d %H:%M} UTC"
    )
    return f"{kind} · {shown} · {when}"
