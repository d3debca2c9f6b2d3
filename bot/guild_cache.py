"""A per-guild cache in each worker, invalidated across every cluster over Redis pub/sub.

Values are loaded from Postgres on a miss. A change is written (by the caller, with its audit
row) and then announced on a Redis channel; every worker drops its copy, so the next use
anywhere sees the change. Entries are also reloaded after `ttl` seconds and the whole cache is
dropped whenever the subscription (re)connects, so a lost announcement costs at most a little
staleness, never a wrong value forever.

An entry past its `ttl` is still served while it is reloaded in the background (the
announcements already keep it right; the reload only covers a lost one), so no message waits
for Postgres because a few minutes went by; if the reload fails, the old value stays in use and
the next use tries again (after RELOAD_RETRY seconds at most). Callers that miss the same guild
at once share one load.

While PostgreSQL is unreachable, a guild with a cached value keeps it. A guild with none gets
`fallback(guild_id)` if the cache has one (not cached: the first use after the outage loads the
real value); without a fallback the error reaches the caller. The subscription outlives Redis
outages: it subscribes again when Redis is back, and drops everything cached, since changes
announced meanwhile were missed. The subscription is one of the process's one pub/sub
connection (ipc/subscriber.py), which reconnects and logs the outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import redis.asyncio as aioredis
import redis.exceptions

from bot import outages
from ipc.subscriber import Subscriber, Subscription

log = logging.getLogger(__name__)

T = TypeVar("T")

# After a failed background reload, the next use this long after tries again (not a whole ttl
# later: the failure was probably an outage, and it may be over by then).
RELOAD_RETRY = 5.0


class GuildCache(Generic[T]):
    def __init__(
        self,
        redis: aioredis.Redis,
        channel: str,
        load: Callable[[int], Awaitable[T]],
        *,
        what: str,
        ttl: float = 300.0,
        fallback: Callable[[int], T] | None = None,
    ) -> None:
        self.redis = redis
        self.channel = channel
        self.what = what  # for log lines: "guild settings", "XP settings"
        self.ttl = ttl
        self._load = load
        self._fallback = fallback
        self._entries: dict[int, tuple[T, float]] = {}
        # Bumped by every invalidation: a load that began before one must not store what it
        # read (it may be the old value, read just before the change committed).
        self._generation: dict[int, int] = {}
        self._epoch = 0
        # guild id -> (the invalidation state it began in, the load): one load at a time.
        self._loading: dict[int, tuple[tuple[int, int], asyncio.Task[T]]] = {}
        self._subscription: Subscription | None = None

    def cached(self, guild_id: int) -> T | None:
        """The value if this worker has it cached (no I/O), else None. One past its `ttl` is
        returned too, and reloaded in the background."""
        entry = self._entries.get(guild_id)
        if entry is None:
            return None
        if time.monotonic() - entry[1] >= self.ttl:
            self._load_once(guild_id)  # in the background
        return entry[0]

    async def get(self, guild_id: int) -> T:
        entry = self._entries.get(guild_id)
        if entry is not None:
            if time.monotonic() - entry[1] >= self.ttl:
                self._load_once(guild_id)  # in the background
            return entry[0]
        try:
            return await asyncio.shield(self._load_once(guild_id))
        except Exception as exc:
            if self._fallback is None or outages.note(exc, f"loading {self.what}") is None:
                raise
            return self._fallback(guild_id)

    def _load_once(self, guild_id: int) -> asyncio.Future[T]:
        """The load of this guild's value begun since its last invalidation, or a new one."""
        seen = (self._epoch, self._generation.get(guild_id, 0))
        running = self._loading.get(guild_id)
        if running is not None and running[0] == seen and not running[1].done():
            return running[1]
        task = asyncio.create_task(self._load_and_keep(guild_id, seen), name=f"load {self.what}")
        self._loading[guild_id] = (seen, task)
        task.add_done_callback(lambda t: self._loaded(guild_id, t))
        return task

    async def _load_and_keep(self, guild_id: int, seen: tuple[int, int]) -> T:
        value = await self._load(guild_id)
        if (self._epoch, self._generation.get(guild_id, 0)) == seen:
            self._entries[guild_id] = (value, time.monotonic())
        return value

    def _loaded(self, guild_id: int, task: asyncio.Task[T]) -> None:
        running = self._loading.get(guild_id)
        if running is not None and running[1] is task:
            del self._loading[guild_id]
        if task.cancelled() or task.exception() is None:
            return
        entry = self._entries.get(guild_id)
        if entry is None:
            return  # a first load: its caller got the error
        # A background reload: the value in use stays, and the next use after RELOAD_RETRY
        # tries again.
        retry_at = time.monotonic() - self.ttl + min(self.ttl, RELOAD_RETRY)
        self._entries[guild_id] = (entry[0], max(entry[1], retry_at))
        exc = task.exception()
        assert exc is not None
        if outages.note(exc, f"reloading {self.what}") is None:
            log.warning("could not reload the %s of guild %s: %s", self.what, guild_id, exc)

    def forget(self, guild_id: int) -> None:
        self._entries.pop(guild_id, None)
        self._generation[guild_id] = self._generation.get(guild_id, 0) + 1

    def _forget_all(self) -> None:
        self._entries.clear()
        self._epoch += 1

    async def announce(self, guild_id: int) -> None:
        """Call after the change committed: every worker drops its copy."""
        self.forget(guild_id)
        try:
            await self.redis.publish(self.channel, str(guild_id))
        except (redis.exceptions.RedisError, OSError) as exc:
            outages.note(exc, f"announcing a change of {self.what}")
            # Other workers pick the change up when their cached copy expires (ttl).
            log.warning("could not announce a change of the %s of guild %s", self.what, guild_id)

    async def start(self) -> None:
        """Listen for announcements on the process's pub/sub connection (ipc/subscriber.py),
        waiting up to 10 s for the subscription (without Redis, the cache works on its ttl
        until the subscriber gets through)."""
        self._subscription = await Subscriber.of(self.redis).subscribe(
            self.channel,
            self._on_announcement,
            on_subscribed=self._forget_all,
            on_lost=self._on_lost,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscription.subscribed(), 10)

    async def stop(self) -> None:
        for _, task in list(self._loading.values()):
            task.cancel()
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None

    def _on_announcement(self, _: str, data: bytes) -> None:
        with contextlib.suppress(ValueError):
            self.forget(int(data))

    def _on_lost(self) -> None:
        # Announcements may be missed from now on; when the subscription is confirmed again
        # (`_forget_all`) nothing cached is trusted.
        log.debug("%s subscription lost; dropping the cache when it is back", self.what)
