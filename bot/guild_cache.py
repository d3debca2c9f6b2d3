"""A per-guild cache in each worker, invalidated across every cluster over Redis pub/sub.

Values are loaded from Postgres on a miss. A change is written (by the caller, with its audit
row) and then announced on a Redis channel; every worker drops its copy, so the next use
anywhere sees the change. Entries are also reloaded after `ttl` seconds and the whole cache is
dropped whenever the subscription (re)connects, so a lost announcement costs at most a little
staleness, never a wrong value forever.

An entry past its `ttl` is still served while it is reloaded in the background (the
announcements already keep it right; the reload only covers a lost one), so no message waits
for Postgres because a few minutes went by; if the reload fails, the old value stays in use and
the next use tries again. Callers that miss the same guild at once share one load.
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

log = logging.getLogger(__name__)

T = TypeVar("T")


class GuildCache(Generic[T]):
    def __init__(
        self,
        redis: aioredis.Redis,
        channel: str,
        load: Callable[[int], Awaitable[T]],
        *,
        what: str,
        ttl: float = 300.0,
    ) -> None:
        self.redis = redis
        self.channel = channel
        self.what = what  # for log lines: "guild settings", "XP settings"
        self.ttl = ttl
        self._load = load
        self._entries: dict[int, tuple[T, float]] = {}
        # Bumped by every invalidation: a load that began before one must not store what it
        # read (it may be the old value, read just before the change committed).
        self._generation: dict[int, int] = {}
        self._epoch = 0
        # guild id -> (the invalidation state it began in, the load): one load at a time.
        self._loading: dict[int, tuple[tuple[int, int], asyncio.Task[T]]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

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
        return await asyncio.shield(self._load_once(guild_id))

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
        if not task.cancelled() and task.exception() is not None and guild_id in self._entries:
            # A background reload: the value in use stays; the next use tries again.
            log.warning(
                "could not reload the %s of guild %s: %s", self.what, guild_id, task.exception()
            )

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
        except (redis.exceptions.RedisError, OSError):
            # Other workers pick the change up when their cached copy expires (ttl).
            log.warning("could not announce a change of the %s of guild %s", self.what, guild_id)

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name=f"{self.what} listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 10)

    async def stop(self) -> None:
        for _, task in list(self._loading.values()):
            task.cancel()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._forget_all()  # anything announced while we were away is stale
                    self._subscribed.set()
                    delay = 0.5
                    async for message in pubsub.listen():
                        if message and message.get("type") == "message":
                            with contextlib.suppress(ValueError):
                                self.forget(int(message["data"]))
            except (redis.exceptions.RedisError, OSError):
                log.warning("%s subscription lost; retrying in %.1fs", self.what, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
