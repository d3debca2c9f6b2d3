"""Which achievements a member unlocks, each once per member and server: the first message and
streaks (from chat), levels, completed commands, dice rolls. Without Discord: the announcer
tells the member.

Each worker remembers what it saw unlocked, and which members it already checked today, so the
chat that follows costs no query; PostgreSQL's primary key keeps an unlock to once across
every worker.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Awaitable, Iterable
from datetime import date, timedelta

import asyncpg

from bot import outages
from bot.cogs.leveling import rules, store
from ipc.batch import Batcher

CACHE_SIZE = 50_000
# How long the finished commands' counts gather before they are written together (s): at any
# busy rate the worker does one statement and one commit a second for them, not one a command
# (or, at 80 commands a second, twenty). An achievement for a command count is announced up to
# this much later; a stopping worker writes what has gathered (Intake.cog_unload).
COMMAND_COUNT_LINGER = 1.0


class Lru:
    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[object, object] = OrderedDict()

    def get(self, key: object) -> object | None:
        if key in self._d:
            self._d.move_to_end(key)
            return self._d[key]
        return None

    def put(self, key: object, value: object) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.size:
            self._d.popitem(last=False)


class Achievements:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._unlocked = Lru(CACHE_SIZE)  # (guild, user, achievement) known unlocked
        self._seen_today = Lru(CACHE_SIZE)  # (guild, user) -> the UTC day last checked
        # The command counts: one statement for the commands that finish within
        # COMMAND_COUNT_LINGER of each other, not one round trip and commit per command.
        self.command_counts: Batcher[tuple[int, int], int] = Batcher(
            functools.partial(store.count_commands, pool),
            linger=COMMAND_COUNT_LINGER,
            linger_each=True,
            name="command-counts",
        )

    def news_today(self, guild_id: int, user_id: int, day: date) -> bool:
        """Whether XP earned on `day` may unlock something even without a level-up: the
        member's first award that day that this worker sees (first message, streaks)."""
        return self._seen_today.get((guild_id, user_id)) != day

    async def after_award(
        self, guild_id: int, user_id: int, level: int | None, day: date
    ) -> list[rules.Achievement]:
        """What an award of XP on `day` unlocks (`level`: the level it raised the member to)."""
        candidates: list[str] = []
        if self.news_today(guild_id, user_id, day):
            self._seen_today.put((guild_id, user_id), day)
            candidates.append("first_message")
            days = await store.recent_days(self.pool, guild_id, user_id, day - timedelta(days=40))
            candidates += [a.key for a in rules.reached("streak", rules.streak_length(days, day))]
        if level is not None:
            candidates += [a.key for a in rules.reached("level", level)]
        return await self.unlock(guild_id, user_id, candidates)

    async def unlock(
        self, guild_id: int, user_id: int, keys: Iterable[str]
    ) -> list[rules.Achievement]:
        """Unlock what isn't yet; returns the achievements unlocked by this call."""
        todo = [k for k in keys if self._unlocked.get((guild_id, user_id, k)) is None]
        if not todo:
            return []
        new = await store.unlock(self.pool, guild_id, user_id, todo)
        for k in todo:
            self._unlocked.put((guild_id, user_id, k), True)
        return [rules.BY_KEY[k] for k in new]

    async def command_done(self, guild_id: int, user_id: int) -> list[rules.Achievement]:
        """Count a finished command towards achievements."""
        count = self.command_counts.submit((guild_id, user_id))
        return await self._counted(guild_id, user_id, "commands", count)

    async def dice_rolled(
        self, guild_id: int, user_id: int, successes: int
    ) -> list[rules.Achievement]:
        """Record a roll's successes (in its best segment) towards achievements."""
        if successes <= 0:
            return []
        best = store.record_roll(self.pool, guild_id, user_id, successes)
        return await self._counted(guild_id, user_id, "roll_successes", best)

    async def _counted(
        self, guild_id: int, user_id: int, metric: str, value: Awaitable[int]
    ) -> list[rules.Achievement]:
        """Unlock what `value` (a count kept in PostgreSQL) reaches of `metric`. Without
        PostgreSQL nothing is counted: the command or the roll itself worked, and a count is
        not worth an error."""
        try:
            reached = rules.reached(metric, await value)
            return await self.unlock(guild_id, user_id, [a.key for a in reached])
        except Exception as exc:
            if outages.note(exc, "achievement counts") is None:
                raise
            return []
