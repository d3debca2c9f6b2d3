"""A rotating presence: "Watching 12,345 servers", "Listening to /help", and the owners' own
lines (`STATS_PRESENCE_LINES`, separated by `|`; `{guilds}` is the count), one every
`STATS_PRESENCE_EVERY` seconds (0, the default, turns rotation off so that the owners'
`presence` command is not overwritten). The server count is gathered from every cluster over
the IPC bus (`cluster_stats`). Every worker sets the line on all its shards; the line is chosen
by the wall clock's slot (`next_slot`), so every cluster shows the same one. The floor is 60 s:
a presence that changes more often than once a minute is noise. Updates go through the shards'
presence pacer (bot/presence_pacer.py), shared with the owners' `presence` command, so together
they never exceed Discord's 5 per 20 s per shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import discord
from redis.exceptions import RedisError

from bot.presence_pacer import pacer_of

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)
FLOOR = 60.0
DEFAULT_LINES = ("watching:{guilds:,} servers", "listening:/help")
_TYPES = {
    "watching": discord.ActivityType.watching,
    "listening": discord.ActivityType.listening,
    "playing": discord.ActivityType.playing,
    "competing": discord.ActivityType.competing,
}


def lines_of(extra: tuple[str, ...]) -> tuple[str, ...]:
    """The rotation: the default lines, then STATS_PRESENCE_LINES as 'playing' lines."""
    return (*DEFAULT_LINES, *(f"playing:{x}" for x in extra if x))


def pick(lines: tuple[str, ...], slot: int) -> str:
    """The line of `slot` (the same on every cluster)."""
    return lines[slot % len(lines)]


def next_slot(shown: int, now: float, every: float) -> int:
    """The slot to show next (slots are `every` seconds of the wall clock, numbered from the
    epoch): the one after `shown`, or the current one if the loop fell behind. The loop sleeps
    until it starts and shows its line whatever the clock says on waking: a timer fires a
    moment early at times, and a line picked from the clock then was the old slot's again, for
    a whole slot, while another cluster had moved on."""
    return max(shown + 1, int(now // every))


def activity(line: str, guilds: int) -> discord.Activity:
    kind, _, text = line.partition(":")
    try:
        name = text.format(guilds=guilds)
    except (KeyError, ValueError, IndexError):
        name = text
    return discord.Activity(type=_TYPES.get(kind, discord.ActivityType.playing), name=name[:128])


class Rotation:
    def __init__(self, bot: Guildhouse) -> None:
        self.bot = bot
        every = bot.config.stats.presence_every
        self.every = 0.0 if every <= 0 else max(FLOOR, every)
        self.lines = lines_of(bot.config.stats.presence_lines)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.every and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="stats-presence")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def guilds(self) -> int:
        result = await self.bot.bus.gather("cluster_stats", within=5)
        answered = sum(int(r.get("guilds", 0)) for r in result.results.values())
        return answered if not result.partial else max(answered, len(self.bot.guilds))

    async def _clusters_ready(self, within: float) -> None:
        """Until the registry shows every cluster READY, at most `within` s: a count taken
        while another cluster is still starting would be shown for a minute."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(RedisError, OSError):  # an outage: asked again, as it ends
                clusters = await self.bot.registry.clusters()
                if sum(c.state == "ready" for c in clusters) >= self.bot.config.cluster_count:
                    return
            await asyncio.sleep(0.5)

    async def _loop(self) -> None:
        await self.bot.wait_until_ready()
        await self._clusters_ready(FLOOR)
        slot = int(time.time() // self.every)
        while True:
            try:
                count = await self.guilds()
                line = activity(pick(self.lines, slot), count)
                await pacer_of(self.bot).change(activity=line)  # never beyond Discord's limit
            except Exception:
                log.warning("stats: presence not changed", exc_info=True)
            slot = next_slot(slot, time.time(), self.every)
            await asyncio.sleep(max(0.0, slot * self.every - time.time()))
