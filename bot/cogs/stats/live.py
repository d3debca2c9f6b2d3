"""The worker's live statistics: counts per server, counter channels renamed through the pacer,
day tallies flushed in batches, and the slow poll of Discord's approximate counts.

**Counts without the member cache.** Members: GUILD_CREATE's `member_count`, which discord.py
keeps current on GUILD_MEMBER_ADD/REMOVE (the members intent, with the member cache and
chunking off). Online: `approximate_presence_count` of `GET /guilds/{id}?with_counts=true`
(never the presences intent), which also corrects the member count. Both are read every
`poll` seconds (10 minutes) for the servers with counter channels or reports on this worker, one at
a time. Bans: one paginated read of the ban list (1,000 a page) when a server with a bans
counter becomes available, then GUILD_BAN_ADD/REMOVE.

**Renames and the shared REST limit: a budget.** Renames go out from one task per worker, at
most `budget` a second (1), each through the shared REST window like any call. With the
default 50 calls a second for the whole bot, a worker's renames take at most 2 % of it, so
commands are never starved even when every server's counters change at once; the renames wait
instead (the pacer keeps only each channel's latest name, so waiting costs nothing but time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from bot import outages
from bot.cogs.stats import store
from bot.cogs.stats.counters import Counter, Rename, RenamePacer, render
from bot.cogs.stats.tally import FLUSH_EVERY, DayClock, Tallies

if TYPE_CHECKING:
    from bot.chat_light_path import Chat
    from bot.config import StatsConfig
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tuning:
    """Statistics' timings, from the settings (STATS_*, validated by the launcher; tests
    shrink the windows the way the sandbox's --window-scale does)."""

    rename_window: float = 600.0  # STATS_RENAME_WINDOW: Discord's 2 renames per 10 minutes
    settle: float = 10.0  # STATS_SETTLE: how long a burst may go on before its rename
    budget: float = 1.0  # STATS_RENAME_BUDGET: renames a second, per worker
    poll: float = 600.0  # STATS_POLL: seconds between reads of the approximate counts
    flush: float = FLUSH_EVERY  # STATS_FLUSH: seconds between writes of the day tallies

    @classmethod
    def of(cls, config: StatsConfig) -> Tuning:
        return cls(
            rename_window=config.rename_window,
            settle=config.settle,
            budget=config.rename_budget,
            poll=config.poll,
            flush=config.flush,
        )


@dataclass
class _Counter:
    guild_id: int
    kind: Counter
    channel_id: int
    template: str


class LiveStats:
    """Counts, counter channels and tallies of the servers on this worker's shards."""

    def __init__(self, bot: Guildhouse, tuning: Tuning | None = None) -> None:
        self.bot = bot
        self.tuning = tuning or Tuning.of(bot.config.stats)
        self.pacer = RenamePacer(window=self.tuning.rename_window, settle=self.tuning.settle)
        self.tallies = Tallies()
        self.days = DayClock()
        self.counts: dict[int, dict[Counter, int]] = {}
        self.counters: dict[tuple[int, Counter], _Counter] = {}
        self.renames_made = 0
        self.renames_refused = 0
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.reporting: set[int] = set()  # servers with reports (polled for peak online)

    # -- start and stop --------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._rename_loop(), name="stats-renames"),
            asyncio.create_task(self._flush_loop(), name="stats-flush"),
            asyncio.create_task(self._poll_loop(), name="stats-poll"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.flush()

    # -- servers ---------------------------------------------------------------------------

    async def load(self, guilds: list[discord.Guild]) -> None:
        """Read the counters and settings of these servers (as they become available)."""
        ids = [g.id for g in guilds]
        if not ids:
            return
        for s in await store.all_settings(self.bot.pool, ids):
            self.configured(s)
        rows = await store.counters(self.bot.pool, ids)
        for row in rows:
            self.adopt(row)
        now = time.time()
        for g in guilds:
            # Only servers that use statistics keep anything here at start: a worker's memory
            # per server is what `bench memory` measures.
            if g.member_count is not None and self.uses_stats(g.id):
                day = self.days.day(g.id, now)
                self.tallies.seen(g.id, day, members=g.member_count, online=None)
                self.set_count(g.id, Counter.MEMBERS, g.member_count)
        for g in guilds:
            if (g.id, Counter.BANS) in self.counters:
                await self.read_bans(g)

    def configured(self, s: store.Settings) -> None:
        """A server's settings: its day clock, and whether its reports want peak online."""
        self.days.set_zone(s.guild_id, s.tz)
        if s.report_channel_id is not None:
            self.reporting.add(s.guild_id)
        else:
            self.reporting.discard(s.guild_id)

    def adopt(self, row: store.CounterRow) -> None:
        kind = Counter(row.kind)
        for key, c in list(self.counters.items()):
            if c.channel_id == row.channel_id and key != (row.guild_id, kind):
                del self.counters[key]
        old = self.counters.get((row.guild_id, kind))
        if old is not None and old.channel_id != row.channel_id:
            self.pacer.forget(old.channel_id)
        self.counters[(row.guild_id, kind)] = _Counter(
            row.guild_id, kind, row.channel_id, row.template
        )
        self.pacer.track(row.channel_id, row.shown, row.renames)
        count = self.counts.get(row.guild_id, {}).get(kind)
        if count is not None:
            self._want(row.guild_id, kind, count)

    def drop_guild(self, guild_id: int) -> None:
        for key in [k for k in self.counters if k[0] == guild_id]:
            self.pacer.forget(self.counters.pop(key).channel_id)

    def forget_channel(self, channel_id: int) -> None:
        for key in [k for k, c in self.counters.items() if c.channel_id == channel_id]:
            del self.counters[key]
        self.pacer.forget(channel_id)

    async def read_bans(self, guild: discord.Guild) -> int | None:
        """Count the server's bans (one paginated read); None if the bot may not read them."""
        try:
            n = 0
            async for _ in guild.bans(limit=None):
                n += 1
        except discord.Forbidden:
            return None
        except discord.HTTPException as exc:
            log.warning("stats: reading the bans of %d failed: %s", guild.id, exc)
            return None
        self.set_count(guild.id, Counter.BANS, n)
        return n

    async def count_now(self, g: discord.Guild, kind: Counter) -> int | None:
        """The count as known, else read from Discord now (None: it won't say)."""
        counts = self.counts.get(g.id, {})
        if kind in counts:
            return counts[kind]
        if kind is Counter.BANS:
            return await self.read_bans(g)
        polled = await self.poll(g.id)
        if polled is None:
            return g.member_count if kind is Counter.MEMBERS else None
        return polled[0] if kind is Counter.MEMBERS else polled[1]

    # -- counts ----------------------------------------------------------------------------

    def uses_stats(self, guild_id: int) -> bool:
        return guild_id in self.reporting or any(
            (guild_id, kind) in self.counters for kind in Counter
        )

    def set_count(self, guild_id: int, kind: Counter, count: int) -> None:
        """A count to show; kept only for a server with that counter (others' member counts
        are discord.py's `member_count`)."""
        if (guild_id, kind) not in self.counters:
            self.counts.get(guild_id, {}).pop(kind, None)
            return
        self.counts.setdefault(guild_id, {})[kind] = count
        self._want(guild_id, kind, count)

    def add(self, guild_id: int, kind: Counter, delta: int) -> None:
        counts = self.counts.get(guild_id, {})
        if kind in counts:
            self.set_count(guild_id, kind, max(0, counts[kind] + delta))

    def _want(self, guild_id: int, kind: Counter, count: int) -> None:
        c = self.counters.get((guild_id, kind))
        if c is None:
            return
        self.pacer.want(c.channel_id, render(c.template, count), time.time())
        self._wake.set()

    def joined(self, member: discord.Member) -> None:
        g = member.guild
        day = self.days.day(g.id, time.time())
        self.tallies.join(g.id, day, g.member_count)
        if g.member_count is not None:
            self.set_count(g.id, Counter.MEMBERS, g.member_count)

    def left(self, guild: discord.Guild | None, guild_id: int) -> None:
        count = guild.member_count if guild is not None else None
        self.tallies.leave(guild_id, self.days.day(guild_id, time.time()), count)
        if count is not None:
            self.set_count(guild_id, Counter.MEMBERS, count)

    def banned(self, guild_id: int, user: discord.abc.User) -> None:
        day = self.days.day(guild_id, time.time())
        self.tallies.ban(guild_id, day, user.id, str(user))
        self.add(guild_id, Counter.BANS, +1)

    def unbanned(self, guild_id: int) -> None:
        self.add(guild_id, Counter.BANS, -1)

    def chat(self, chat: Chat) -> None:
        """A chat sink (bot/chat_light_path.py): one increment, no write."""
        day = self.days.day(chat.guild_id, time.time())
        self.tallies.message(chat.guild_id, chat.channel_id, day)

    async def poll(self, guild_id: int) -> tuple[int, int] | None:
        """Read the approximate member and online counts; None when Discord would not say."""
        try:
            data = await self.bot.http.get_guild(guild_id, with_counts=True)
        except discord.HTTPException as exc:
            log.warning("stats: counts of %d not read: %s", guild_id, exc)
            return None
        raw: dict[str, Any] = dict(data)
        if (
            raw.get("approximate_member_count") is None
            or raw.get("approximate_presence_count") is None
        ):
            return None
        members = int(raw["approximate_member_count"])
        online = int(raw["approximate_presence_count"])
        guild = self.bot.get_guild(guild_id)
        if guild is not None:
            guild._member_count = members  # the correction; discord.py counts on from here
        now = time.time()
        self.tallies.seen(guild_id, self.days.day(guild_id, now), members=members, online=online)
        self.set_count(guild_id, Counter.MEMBERS, members)
        self.set_count(guild_id, Counter.ONLINE, online)
        return members, online

    # -- loops -----------------------------------------------------------------------------

    async def _rename_loop(self) -> None:
        while True:
            now = time.time()
            due = self.pacer.due(now)
            if not due:
                nxt = self.pacer.next_at()
                self._wake.clear()
                timeout = None if nxt is None else max(0.0, nxt - now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                continue
            for rename in due:
                started = time.monotonic()
                await self._rename(rename)
                # The budget: at most `budget` renames a second from this worker.
                await asyncio.sleep(max(0.0, 1 / self.tuning.budget - (time.monotonic() - started)))

    async def _rename(self, due: Rename) -> None:
        at = time.time()
        # The pacer's verdict may have changed while an earlier rename was out: the latest name.
        ready = self.pacer.ready_at(due.channel_id)
        name = self.pacer.wanted(due.channel_id)
        if ready is None or ready > at or name is None:
            return
        rename = Rename(due.channel_id, name)
        try:
            await self.bot.http.edit_channel(
                rename.channel_id, reason="statistics counter", name=rename.name
            )
        except discord.NotFound:
            self.forget_channel(rename.channel_id)
            return
        except discord.Forbidden as exc:
            log.info("stats: may not rename channel %d: %s", rename.channel_id, exc.text)
            self.pacer.refused(rename.channel_id, self.tuning.rename_window, time.time())
            return
        except discord.HTTPException as exc:
            self.renames_refused += 1
            log.warning("stats: rename of %d refused: %s", rename.channel_id, exc)
            self.pacer.refused(rename.channel_id, self.tuning.rename_window, time.time())
            return
        self.renames_made += 1
        self.pacer.renamed(rename.channel_id, rename.name, at)
        try:
            await store.renamed(self.bot.pool, rename.channel_id, rename.name, at)
        except Exception as exc:
            if outages.note(exc, "a counter rename") is None:
                raise

    async def flush(self) -> None:
        taken = self.tallies.take()
        try:
            await store.flush(self.bot.pool, taken)
        except Exception as exc:
            self.tallies.put_back(taken)
            if outages.note(exc, "the statistics flush") is None:
                log.exception("stats: flush failed")

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tuning.flush)
            await self.flush()

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tuning.poll)
            guilds = sorted({g for g, _ in self.counters} | self.reporting)
            for guild_id in guilds:
                if self.bot.get_guild(guild_id) is not None:
                    await self.poll(guild_id)
