"""A per-guild cache in each worker, invalidated across every cluster over Redis pub/sub.

Values are loaded from Postgres on a miss. A change is written (by the caller, with its audit
row) and then announced on a Redis channel; every worker drops its copy, so the next use
anywhere sees the change. Entries also expire after `ttl` seconds and the whole cache is
dropped whenever the subscription (re)connects, so a lost announcement costs at most a little
staleness, never a wrong value forever.
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
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def cached(self, guild_id: int) -> T | None:
        """The value if this worker has it cached and fresh (no I/O), else None."""
        entry = self._entries.get(guild_id)
        if entry is not None and time.monotonic() - entry[1] < self.ttl:
            return entry[0]
        return None

    async def get(self, guild_id: int) -> T:
        entry = self._entries.get(guild_id)
        if entry is not None and time.monotonic() - entry[1] < self.ttl:
            return entry[0]
        seen = (self._epoch, self._generation.get(guild_id, 0))
        value = await self._load(guild_id)
        if (self._epoch, self._generation.get(guild_id, 0)) == seen:
            self._entries[guild_id] = (value, time.monotonic())
        return value

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
