"""What a reminder is and when it fires: the checked `Plan` built from what the user typed, the
`Series` of its event times (repeats), and the next delivery after one has fired.

Pure (the caller passes `now`). A reminder has an event time (the session), one delivery per
lead time before it (`--before 1d 30m`; no lead times means one at the time itself), and
optionally repeats: each repeat of the event gets the same lead times again.

Repeats by whole days keep the wall time in the reminder's zone: a weekly 19:00 Europe/Berlin
stays at 19:00 across a daylight-saving change (occurrence k is the first wall time plus k*N
days, resolved in the zone; see `parsing.resolve_local` for gaps and overlaps). Repeats by
hours are fixed intervals in absolute time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.cogs.reminders import options, parsing
from bot.cogs.reminders.options import Raw, Repeat
from bot.cogs.reminders.parsing import DAY, ParseError, When

MAX_MESSAGE = 1000
MAX_AHEAD = 366 * DAY  # nothing further ahead than this (a year, with a day for leap years)
MAX_TIMES = 500  # occurrences of a repeat
ACTIVE_LIMIT = 25  # active reminders per user
# A delivery this much after its time says so ("late by ...").
LATE_AFTER = 60


@dataclass(frozen=True)
class Series:
    """The timing of a reminder, as stored."""

    first_at: datetime  # the first event (aware)
    local_at: datetime  # its naive wall time in `zone`
    zone: str
    leads: tuple[int, ...]  # seconds before each event, largest first
    repeat: Repeat | None = None
    times: int | None = None  # events in all; None: until `until`
    until: datetime | None = None  # no event after this

    def event_at(self, k: int) -> datetime:
        """The instant of event k (0 is the first)."""
        if k == 0 or self.repeat is None:
            return self.first_at
        if self.repeat.unit == "hour":
            return self.first_at + timedelta(hours=k * self.repeat.every)
        local = self.local_at + timedelta(days=k * self.repeat.every)
        return parsing.resolve_local(local, self.zone).at

    def in_range(self, k: int) -> bool:
        if k == 0:
            return True
        if self.repeat is None:
            return False
        if self.times is not None and k >= self.times:
            return False
        return not (self.until is not None and self.event_at(k) > self.until)

    def next_delivery(self, k: int, lead: int, now: datetime) -> tuple[int, datetime] | None:
        """After the delivery of event k at `lead` fired: the next event index and the fire time
        for the same lead, skipping events whose time for this lead has already passed (a
        reminder missed while the bot was down fires once, late, not once per missed repeat).
        None when the series is over."""
        if self.repeat is None:
            return None
        step = self.repeat.seconds
        # Jump close to `now` directly (a long outage must not mean a long loop), then step.
        behind = (now - self.first_at).total_seconds() + lead
        nxt = max(k + 1, int(behind // step) - 1)
        for _ in range(10_000):
            if not self.in_range(nxt):
                return None
            fire = self.event_at(nxt) - timedelta(seconds=lead)
            if fire > now:
                return nxt, fire
            nxt += 1
        return None


@dataclass(frozen=True)
class Plan:
    """A reminder checked and ready to store."""

    message: str
    series: Series
    target: str  # me, channel, players
    via: str  # dm, channel
    notes: tuple[str, ...] = ()

    def first_fires(self) -> list[tuple[int, datetime]]:
        """(lead, fire time) of event 0's deliveries, earliest first."""
        first = self.series.first_at
        return sorted(
            ((lead, first - timedelta(seconds=lead)) for lead in self.series.leads),
            key=lambda x: x[1],
        )


def build(
    raw: Raw,
    *,
    now: datetime,
    zone: str,
    in_guild: bool,
    when: When | None = None,
    zone_is_default: bool = False,
) -> Plan:
    """Check a typed reminder (`raw`, from prefix text or slash options) into a `Plan`.

    ParseError naming what was wrong otherwise: times in the past or more than a year ahead,
    lead times that would fire in the past, empty or overlong messages, repeats too often,
    unknown targets."""
    now = now.astimezone(UTC)
    if when is None:
        if not raw.when.strip():
            raise ParseError("Missing the time: write e.g. `in 2h` or `2026-12-05 19:30`.")
        when = parsing.parse_when(raw.when, now, zone)
    message = raw.message.strip()
    if not message:
        raise ParseError("Missing the message: what should I remind you of?")
    if len(message) > MAX_MESSAGE:
        raise ParseError(
            f"The message is {len(message)} characters long; at most {MAX_MESSAGE}, please."
        )
    _check_time(raw, when, now)
    leads = _leads(raw, when, now)
    repeat, times, until = _repeat(raw, when, now, zone)
    target, via = _target_and_via(raw, in_guild)
    series = Series(
        first_at=when.at,
        local_at=when.local,
        zone=when.zone,
        leads=leads,
        repeat=repeat,
        times=times,
        until=until,
    )
    notes = list(when.notes)
    if zone_is_default and not _relative_only(raw, when, now):
        notes.append("Times are in UTC for you; set your zone with `timezone set Europe/Berlin`.")
    return Plan(message=message, series=series, target=target, via=via, notes=tuple(notes))


def _check_time(raw: Raw, when: When, now: datetime) -> None:
    shown = raw.when.strip() or "the time"
    if when.at <= now:
        ago = parsing.format_duration((now - when.at).total_seconds())
        raise ParseError(f"`{shown}` is in the past ({ago} ago); pick a time in the future.")
    if when.at - now > timedelta(seconds=MAX_AHEAD):
        raise ParseError(f"`{shown}` is more than a year ahead; at most a year, please.")


def _leads(raw: Raw, when: When, now: datetime) -> tuple[int, ...]:
    if raw.before is None:
        return (0,)
    leads = options.parse_leads(raw.before.split())
    for lead in leads:
        if when.at - timedelta(seconds=lead) <= now:
            ahead = parsing.format_duration((when.at - now).total_seconds())
            raise ParseError(
                f"Lead time `{parsing.format_duration(lead)}` would be in the past: "
                f"the time is only {ahead} away."
            )
    return leads


def _repeat(
    raw: Raw, when: When, now: datetime, zone: str
) -> tuple[Repeat | None, int | None, datetime | None]:
    """The repeat, its number of times and its end (a year from now at the latest)."""
    repeat = options.parse_repeat(raw.repeat) if raw.repeat is not None else None
    times = None
    if raw.times is not None:
        if repeat is None:
            raise ParseError("`times` only goes with a repeat, e.g. `--repeat weekly --times 6`.")
        times = options.parse_times(raw.times)
        if not 2 <= times <= MAX_TIMES:
            raise ParseError(f"`{raw.times}` times: a repeat runs 2 to {MAX_TIMES} times.")
    until = None
    if raw.until is not None:
        if repeat is None:
            raise ParseError("`until` only goes with a repeat, e.g. `--repeat daily --until ...`.")
        until = parsing.parse_until(raw.until, now, zone)
        if until <= when.at:
            raise ParseError(f"`until {raw.until}` is before the first time; nothing would repeat.")
        if until - now > timedelta(seconds=MAX_AHEAD):
            raise ParseError(f"`until {raw.until}` is more than a year ahead; at most a year.")
    if repeat is not None:
        # Unbounded repeats end a year from now: nothing is scheduled further ahead than that.
        horizon = now + timedelta(seconds=MAX_AHEAD)
        until = horizon if until is None else min(until, horizon)
    return repeat, times, until


def _target_and_via(raw: Raw, in_guild: bool) -> tuple[str, str]:
    target = options.parse_target(raw.to) if raw.to is not None else "me"
    via = options.parse_via(raw.via) if raw.via is not None else ("channel" if in_guild else "dm")
    if not in_guild:
        if target != "me":
            raise ParseError(f"`to {target}` only works in a server channel.")
        if raw.via is not None and via == "channel":
            raise ParseError("`--here` only works in a server channel; in DMs I remind by DM.")
        via = "dm"
    if target == "channel" and via == "dm":
        raise ParseError("A reminder `to channel` is posted in the channel, not by DM.")
    if target == "players" and via == "dm":
        raise ParseError(
            "Players are reminded in the channel, each mentioned; leave out `--dm` for them."
        )
    return target, via


def _relative_only(raw: Raw, when: When, now: datetime) -> bool:
    words = (raw.when or "").split()
    return bool(words) and (
        words[0].lower() == "in" or parsing.take_duration(words, 0)[1] == len(words)
    )


def describe(plan: Plan) -> str:
    """One paragraph confirming what was set (times as Discord timestamps)."""
    s = plan.series
    at = int(s.first_at.timestamp())
    local = s.first_at.astimezone(ZoneInfo(s.zone))
    who = {
        "me": "you",
        "channel": "this channel",
        "players": "the players of this channel's table",
    }[plan.target]
    how = "by DM" if plan.via == "dm" else "in this channel"
    parts = [f"<t:{at}:F> (<t:{at}:R>, {local:%H:%M} {s.zone}), to {who} {how}."]
    if s.leads != (0,):
        parts.append("Fires " + ", ".join(_lead_text(lead) for lead in s.leads) + ".")
    if s.repeat is not None:
        end = ""
        if s.times is not None:
            end = f", {s.times} times"
        elif s.until is not None:
            end = f", until <t:{int(s.until.timestamp())}:D>"
        parts.append(f"Repeats {s.repeat.describe()}{end}.")
    return " ".join(parts)


def _lead_text(lead: int) -> str:
    return "at the time" if lead == 0 else f"{parsing.format_duration(lead)} before"
