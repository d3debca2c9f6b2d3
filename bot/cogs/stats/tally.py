"""Figures counted in a worker's memory and written to PostgreSQL in batches (pure).

Chat reaches the statistics from the light path (bot/chat_light_path.py) as it does leveling:
a message is one dictionary increment here, never a write. Every `FLUSH_EVERY` seconds the
worker takes what was counted (`Tallies.take`) and adds it to the day rows in one statement
(store.flush); a flush that fails puts its figures back (`Tallies.put_back`) for the next one.
A worker killed between flushes loses what it counted since the last one (at most that many
seconds of counts): statistics are not a ledger.

Days are the server's own (its time zone): `DayClock` turns an instant into the server's date,
remembering when that date ends so a message costs no time-zone arithmetic.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

FLUSH_EVERY = 30.0  # seconds


@dataclass
class DayTally:
    joins: int = 0
    leaves: int = 0
    bans: int = 0
    messages: int = 0
    peak_online: int | None = None
    members: int | None = None
    channels: Counter[int] = field(default_factory=Counter)
    banned: list[tuple[int, str]] = field(default_factory=list)  # (user id, name)

    def merge(self, other: DayTally) -> None:
        self.joins += other.joins
        self.leaves += other.leaves
        self.bans += other.bans
        self.messages += other.messages
        self.channels.update(other.channels)
        self.banned.extend(other.banned)
        if other.peak_online is not None:
            self.peak_online = max(self.peak_online or 0, other.peak_online)
        if self.members is None:
            self.members = other.members


Key = tuple[int, date]  # (guild id, the server's local date)


class Tallies:
    """What happened per server per day since the last flush."""

    def __init__(self) -> None:
        self._open: dict[Key, DayTally] = {}

    def _at(self, guild_id: int, day: date) -> DayTally:
        tally = self._open.get((guild_id, day))
        if tally is None:
            tally = self._open[(guild_id, day)] = DayTally()
        return tally

    def message(self, guild_id: int, channel_id: int, day: date) -> None:
        tally = self._at(guild_id, day)
        tally.messages += 1
        tally.channels[channel_id] += 1

    def join(self, guild_id: int, day: date, members: int | None) -> None:
        tally = self._at(guild_id, day)
        tally.joins += 1
        if members is not None:
            tally.members = members

    def leave(self, guild_id: int, day: date, members: int | None) -> None:
        tally = self._at(guild_id, day)
        tally.leaves += 1
        if members is not None:
            tally.members = members

    def ban(self, guild_id: int, day: date, user_id: int, name: str) -> None:
        tally = self._at(guild_id, day)
        tally.bans += 1
        tally.banned.append((user_id, name))

    def seen(self, guild_id: int, day: date, *, members: int | None, online: int | None) -> None:
        """A count read from Discord (GUILD_CREATE, `with_counts`)."""
        tally = self._at(guild_id, day)
        if members is not None:
            tally.members = members
        if online is not None:
            tally.peak_online = max(tally.peak_online or 0, online)

    def take(self) -> dict[Key, DayTally]:
        out, self._open = self._open, {}
        return out

    def put_back(self, taken: dict[Key, DayTally]) -> None:
        for key, tally in taken.items():
            newer = self._open.get(key)
            if newer is None:
                self._open[key] = tally
            else:
                # Figures that arrived since win for the last-seen counts.
                members = newer.members
                newer.members = None
                tally.merge(newer)
                if members is not None:
                    tally.members = members
                self._open[key] = tally

    def __len__(self) -> int:
        return len(self._open)


def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


_UTC = ZoneInfo("UTC")


class DayClock:
    """Each server's local date at an instant, with the end of that date cached per zone (most
    servers share UTC, so a server without a zone of its own costs nothing here)."""

    def __init__(self) -> None:
        self._zones: dict[int, ZoneInfo] = {}  # only servers that chose a zone
        # zone -> (its date, when that date starts and ends, as epoch seconds)
        self._days: dict[ZoneInfo, tuple[date, float, float]] = {}

    def set_zone(self, guild_id: int, tz: str) -> None:
        zone = ZoneInfo(tz)
        if zone == _UTC:
            self._zones.pop(guild_id, None)
        else:
            self._zones[guild_id] = zone

    def zone_of(self, guild_id: int) -> ZoneInfo:
        return self._zones.get(guild_id, _UTC)

    def day(self, guild_id: int, now: float) -> date:
        tz = self.zone_of(guild_id)
        cached = self._days.get(tz)
        if cached is not None and cached[1] <= now < cached[2]:
            return cached[0]
        today = datetime.fromtimestamp(now, tz).date()
        starts = datetime.combine(today, datetime.min.time(), tz)
        ends = datetime.combine(today + timedelta(days=1), datetime.min.time(), tz)
        self._days[tz] = (today, starts.timestamp(), ends.timestamp())
        return today
