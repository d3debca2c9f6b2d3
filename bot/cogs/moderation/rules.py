"""The pure rules of moderation: durations, flags, who may act on whom, warning thresholds,
and which messages a purge may delete. No Discord, Redis or PostgreSQL here: the cog turns
Discord objects into the plain values these functions take, so every rule is testable alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.user_error import UserError

# Discord's own limits.
MAX_TIMEOUT = timedelta(days=28)  # communication_disabled_until at most 28 days ahead
MAX_BAN_DELETE_DAYS = 7  # delete_message_seconds 0-604800
BULK_DELETE_AGE = timedelta(days=14)  # bulk delete refuses older messages (50034)
BULK_MIN, BULK_MAX = 2, 100  # ids per bulk-delete call
MAX_PURGE = 1000
# Ours.
MAX_REASON = 400  # Discord's audit-log reason header is 512 bytes; leave room
MAX_TEMPBAN = timedelta(days=365)
MAX_THRESHOLDS = 10
MAX_WARN_EXPIRY = timedelta(days=3650)
MAX_SLOWMODE = 21600  # seconds; Discord's rate_limit_per_user cap

_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
_PART = re.compile(r"(\d{1,7})\s*([a-z]+)")


class RuleError(UserError, ValueError):
    """Input a rule can't accept; the message names what was wrong and is safe to show (the
    command handler, bot/errors.py, shows it as it is)."""


def parse_duration(text: str, *, what: str = "duration") -> timedelta:
    """`3d`, `1h30m`, `90s`, `2 weeks`, `1d 12h` -> a timedelta (at least one second)."""
    cleaned = text.strip().lower().replace(",", " ")
    if not cleaned:
        raise RuleError(f"The {what} is empty; write it like `30m`, `3d` or `1h30m`.")
    pos = 0
    total = 0
    for match in _PART.finditer(cleaned):
        if cleaned[pos : match.start()].strip():
            break
        unit = _UNITS.get(match.group(2))
        if unit is None:
            raise RuleError(f"`{match.group(2)}` is not a unit of the {what}; use s, m, h, d or w.")
        total += int(match.group(1)) * unit
        pos = match.end()
    if pos == 0 or cleaned[pos:].strip():
        raise RuleError(
            f"`{text.strip()[:40]}` can't be read as a length of time for the {what}; "
            "write it like `30m`, `3d` or `1h30m`."
        )
    if total <= 0:
        raise RuleError(f"The {what} must be longer than zero.")
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    """`1d 2h`, `30m`, `45s`: the largest two units."""
    seconds = int(value.total_seconds())
    parts: list[str] = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2]) or "0s"


def bounded(value: timedelta, limit: timedelta, *, what: str) -> timedelta:
    if value > limit:
        raise RuleError(f"The {what} can be at most {format_duration(limit)}.")
    return value


# -- reasons and ban options ------------------------------------------------------------------


def check_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    reason = " ".join(reason.split())
    if len(reason) > MAX_REASON:
        raise RuleError(f"The reason can be at most {MAX_REASON} characters.")
    return reason or None


def ban_days(value: str | int | None) -> int:
    if value is None:
        return 0
    try:
        days = int(value)
    except ValueError:
        raise RuleError("`--days` is a whole number of days from 0 to 7.") from None
    if not 0 <= days <= MAX_BAN_DELETE_DAYS:
        raise RuleError("`--days` is a whole number of days from 0 to 7.")
    return days


# -- hierarchy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rank:
    """Who someone is in a server, as the hierarchy rules need it."""

    user_id: int
    top: int  # position of their highest role (0: only @everyone)
    owner: bool = False


def refusal(action: str, actor: Rank, bot: Rank, target: Rank) -> str | None:
    """Why `actor` (through the bot) may not `action` the `target`, naming the rule; None if
    allowed. Discord lets a member act only on members whose highest role is below theirs,
    never on the owner, and the bot is held to the same rule."""
    if target.user_id == actor.user_id:
        return f"You can't {action} yourself."
    if target.user_id == bot.user_id:
        return f"I can't {action} myself."
    if target.owner:
        return f"The server owner can't be {past(action)} by anyone (Discord's rule)."
    if not actor.owner and actor.top <= target.top:
        return (
            f"Your highest role must be above <@{target.user_id}>'s to {action} them "
            "(hierarchy: you rank at or below them)."
        )
    if bot.top <= target.top:
        return (
            f"My highest role must be above <@{target.user_id}>'s to {action} them "
            "(hierarchy: move my role higher in Server Settings → Roles)."
        )
    return None


def role_refusal(
    action: str, actor: Rank, bot: Rank, role_position: int, managed: bool
) -> str | None:
    """Why a role may not be given or taken: it must be below the moderator's and the bot's
    highest role, and not managed by an integration."""
    if managed:
        return (
            "That role is managed by an integration (a bot or a subscription); nobody can "
            + action
            + " it."
        )
    if role_position == 0:
        return "@everyone is not a role one can " + action + "."
    if not actor.owner and role_position >= actor.top:
        return f"That role must be below your highest role for you to {action} it."
    if role_position >= bot.top:
        return f"That role must be below my highest role for me to {action} it."
    return None


_PAST = {
    "ban": "banned",
    "softban": "softbanned",
    "kick": "kicked",
    "warn": "warned",
    "timeout": "timed out",
    "untimeout": "released from a timeout",
    "unban": "unbanned",
    "nick": "renamed",
    "tempban": "banned",
}


def past(action: str) -> str:
    return _PAST.get(action, action + "ed")


# -- warning thresholds ------------------------------------------------------------------------

THRESHOLD_ACTIONS = ("timeout", "kick", "ban")


@dataclass(frozen=True)
class Threshold:
    count: int
    action: str  # timeout, kick, ban
    duration: timedelta | None = None  # timeout (required) or ban (a tempban)

    def describe(self) -> str:
        extra = f" {format_duration(self.duration)}" if self.duration else ""
        return f"{self.count} warnings → {self.action}{extra}"

    def as_json(self) -> dict[str, object]:
        seconds = int(self.duration.total_seconds()) if self.duration else None
        return {"count": self.count, "action": self.action, "seconds": seconds}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Threshold:
        seconds = data.get("seconds")
        return cls(
            int(str(data["count"])),
            str(data["action"]),
            timedelta(seconds=int(str(seconds))) if seconds else None,
        )


def parse_threshold(count: int, action: str, duration: str | None) -> Threshold:
    if not 1 <= count <= 100:
        raise RuleError("The number of warnings is a whole number from 1 to 100.")
    action = action.lower()
    if action not in THRESHOLD_ACTIONS:
        raise RuleError("The action is one of timeout, kick, ban (or `off` to remove).")
    span = None
    if duration:
        if action == "kick":
            raise RuleError("A kick takes no duration.")
        span = parse_duration(duration)
        span = bounded(span, MAX_TIMEOUT if action == "timeout" else MAX_TEMPBAN, what=action)
    elif action == "timeout":
        raise RuleError("A timeout needs a duration, like `settings warnthreshold 3 timeout 1h`.")
    return Threshold(count, action, span)


def with_threshold(
    current: Iterable[Threshold], new: Threshold | None, count: int
) -> list[Threshold]:
    """The thresholds with the one at `count` replaced by `new` (or removed), sorted."""
    kept = [t for t in current if t.count != count]
    if new is not None:
        kept.append(new)
        if len(kept) > MAX_THRESHOLDS:
            raise RuleError(f"At most {MAX_THRESHOLDS} thresholds; remove one first.")
    return sorted(kept, key=lambda t: t.count)


def reached(thresholds: Iterable[Threshold], active_warnings: int) -> Threshold | None:
    """The threshold a new warning reaches: the one whose count is exactly the number of
    active warnings now (so each applies once as warnings accumulate, not at every later
    warning)."""
    for t in thresholds:
        if t.count == active_warnings:
            return t
    return None


# -- purge -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A message a purge looked at."""

    id: int
    author_id: int
    bot: bool
    content: str
    created_at: datetime
    pinned: bool = False


@dataclass(frozen=True)
class PurgeFilter:
    user_id: int | None = None
    bots: bool = False
    contains: str | None = None

    def matches(self, m: Candidate) -> bool:
        if m.pinned:
            return False
        if self.user_id is not None and m.author_id != self.user_id:
            return False
        if self.bots and not m.bot:
            return False
        return not (self.contains and self.contains.lower() not in m.content.lower())


@dataclass(frozen=True)
class PurgePlan:
    batches: list[list[int]]  # bulk-delete calls (2-100 ids each)
    single: list[int]  # a lone young message: deleted on its own (bulk needs 2)
    too_old: int  # matched, but older than 14 days: skipped


def plan_purge(
    messages: Iterable[Candidate], filt: PurgeFilter, limit: int, now: datetime
) -> PurgePlan:
    """Which of `messages` (newest first) to delete, at most `limit` matching ones, in
    bulk-delete calls of at most 100; matching messages 14 days old or older are counted,
    not deleted (Discord refuses them in bulk; one by one would cost a call each)."""
    young: list[int] = []
    too_old = 0
    # A margin so a message doesn't turn 14 days old between planning and the call.
    cutoff = now - BULK_DELETE_AGE + timedelta(minutes=1)
    taken = 0
    for m in messages:
        if taken >= limit:
            break
        if not filt.matches(m):
            continue
        taken += 1
        if m.created_at <= cutoff:
            too_old += 1
        else:
            young.append(m.id)
    batches = [young[i : i + BULK_MAX] for i in range(0, len(young), BULK_MAX)]
    single: list[int] = []
    if batches and len(batches[-1]) < BULK_MIN:
        single = batches.pop()
    return PurgePlan(batches, single, too_old)
