"""The one way this worker changes its shards' presence: every update goes through a
`PresencePacer` (`pacer_of(bot)`), used by the owners' `presence` command (bot/rpc.py) and by
statistics' rotating presence (bot/cogs/stats/presence.py).

Discord's documentation (Gateway Events, Update Presence) allows 5 presence updates per 20 s
per connection, and the sandbox closes a shard with 4008 at the 6th. The pacer keeps each
shard's send times: an update the shard's window allows is sent at once; one it does not is
held, a newer one replacing it (the latest wins), and sent as soon as the window allows. The
window has a second of slack for the time an update takes to reach Discord, so no input can
cause a 4008.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

UPDATES, WINDOW = 5, 20.0  # "5 times per 20 seconds"
SLACK = 1.0  # between our clock and the gateway's


class PresenceBot(Protocol):
    """What the pacer needs of the bot (discord.py's AutoShardedBot)."""

    @property
    def shards(self) -> dict[int, Any]: ...

    async def change_presence(
        self, *, activity: Any = None, status: Any = None, shard_id: int | None = None
    ) -> None: ...


class Window:
    """One shard's recent send times against `limit` per `window` seconds (clock given)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.sent: deque[float] = deque()

    def wait(self, now: float) -> float:
        """Seconds until one more send is allowed (0: now)."""
        while self.sent and now - self.sent[0] >= self.window:
            self.sent.popleft()
        if len(self.sent) < self.limit:
            return 0.0
        return self.sent[0] + self.window - now

    def take(self, now: float) -> None:
        self.sent.append(now)


Update = tuple[Any, Any]  # (status, activity) as change_presence takes them


class PresencePacer:
    """Every presence update of one bot's shards, paced per shard (see the module)."""

    def __init__(
        self,
        bot: PresenceBot,
        *,
        limit: int = UPDATES,
        window: float = WINDOW + SLACK,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.bot = bot
        self.limit, self.window = limit, window
        self.clock, self.sleep = clock, sleep
        self._windows: dict[int, Window] = {}
        self._pending: dict[int, Update] = {}  # the latest held update of each shard
        self._flushers: dict[int, asyncio.Task[None]] = {}

    async def change(self, *, status: Any = None, activity: Any = None) -> float:
        """Set the presence on every shard of this worker: at once where the shard's window
        allows, else as soon as it does (a later change replaces a held one). Returns the
        longest wait in seconds, 0 when every shard has it now."""
        longest = 0.0
        for shard_id in list(self.bot.shards):
            longest = max(longest, await self._submit(shard_id, (status, activity)))
        return longest

    async def idle(self) -> None:
        """Wait until no update is held (tests, shutdown)."""
        while self._flushers:
            await asyncio.gather(*self._flushers.values(), return_exceptions=True)

    def close(self) -> None:
        """Drop the held updates (the bot is closing)."""
        self._pending.clear()
        for task in self._flushers.values():
            task.cancel()

    def _window(self, shard_id: int) -> Window:
        return self._windows.setdefault(shard_id, Window(self.limit, self.window))

    async def _submit(self, shard_id: int, update: Update) -> float:
        wait = self._window(shard_id).wait(self.clock())
        if wait <= 0 and shard_id not in self._pending:
            await self._send(shard_id, update)
            return 0.0
        self._pending[shard_id] = update
        if shard_id not in self._flushers:
            self._flushers[shard_id] = asyncio.create_task(
                self._flush(shard_id), name=f"presence-pacer-{shard_id}"
            )
        return wait

    async def _flush(self, shard_id: int) -> None:
        try:
            while shard_id in self._pending:
                wait = self._window(shard_id).wait(self.clock())
                if wait > 0:
                    await self.sleep(wait)
                    continue
                await self._send(shard_id, self._pending.pop(shard_id))
        finally:
            self._flushers.pop(shard_id, None)

    async def _send(self, shard_id: int, update: Update) -> None:
        self._window(shard_id).take(self.clock())  # counted even if it fails: never one too many
        status, activity = update
        try:
            await self.bot.change_presence(status=status, activity=activity, shard_id=shard_id)
        except Exception:  # a shard that is down: the others still get it
            log.warning("presence not sent on shard %s", shard_id, exc_info=True)


_pacers: weakref.WeakKeyDictionary[Any, PresencePacer] = weakref.WeakKeyDictionary()


def pacer_of(bot: PresenceBot) -> PresencePacer:
    """The bot's one pacer (made on first use)."""
    pacer = _pacers.get(bot)
    if pacer is None:
        pacer = _pacers[bot] = PresencePacer(bot)
    return pacer
