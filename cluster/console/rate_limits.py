"""Whether the bot is held back by Discord's rate limits, so a late answer can be explained."""

from __future__ import annotations

import contextlib
from typing import Any

import aiohttp


class RateLimitWatch:
    """Whether the bot is being held back by Discord's rate limits, from what is at hand: the
    sandbox's count of 429 answers (`/_sandbox/stats`), and, when the bot's Redis is
    reachable, the shared per-route bucket of this channel's messages and the global pause the
    bot's limiter keeps there (ipc/ratelimit/): the bot waits for an empty bucket before it
    sends, so most of the time no 429 ever happens and only the bucket tells."""

    def __init__(self, redis_url: str | None, prefix: str, channel_id: int) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.channel_id = channel_id
        self._redis: Any = None
        self._seen_429: int | None = None

    async def check(self, http: aiohttp.ClientSession, base: str) -> str | None:
        """A line saying why answers are slow, or None when no rate limit is in the way."""
        found = await self.held_back()
        if found:
            return found
        return await self._stats(http, base)

    async def _stats(self, http: aiohttp.ClientSession, base: str) -> str | None:
        try:
            async with http.get(f"{base}/_sandbox/stats") as resp:
                stats = await resp.json()
        except (aiohttp.ClientError, ValueError):
            return None
        limited = stats.get("rate_limited") if isinstance(stats, dict) else None
        count = sum(int(v) for v in limited.values()) if isinstance(limited, dict) else 0
        before, self._seen_429 = self._seen_429, count
        if before is None or count <= before:
            return None
        return (
            f"Discord answered the bot with 429 (rate limited) {count - before} time(s) just "
            "now: its answers come once it may send again"
        )

    async def baseline(self, http: aiohttp.ClientSession, base: str) -> None:
        await self._stats(http, base)

    async def held_back(self) -> str | None:
        """Why the bot waits before it may send here (a line), if its limiter says it does."""
        if self.redis_url is None:
            return None
        from redis.exceptions import RedisError

        from ipc.client import create_redis
        from ipc.ratelimit import route_of

        if self._redis is None:
            self._redis = create_redis(self.redis_url)
        route, major = route_of("POST", f"/channels/{self.channel_id}/messages")
        try:
            seconds, micros = await self._redis.time()
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            paused = await self._redis.get(rest_key(self.prefix, "global", "pause"))
            if paused and int(paused) > now_ms:
                wait = (int(paused) - now_ms) / 1000
                return (
                    "the bot is rate limited everywhere (a global 429 from Discord): its "
                    f"answers wait about {wait:.1f} s"
                )
            bucket = await self._redis.hget(rest_key(self.prefix, "routes"), route)
            if bucket is None:
                return None
            key = rest_key(self.prefix, "bucket", "") + bucket.decode() + ":" + major
            remaining, reset = await self._redis.hmget(key, "remaining", "reset")
        except (RedisError, OSError, ValueError):
            return None
        if remaining is None or reset is None or int(remaining) > 0 or int(reset) <= now_ms:
            return None
        wait = (int(reset) - now_ms) / 1000
        return (
            "the bot is rate limited in this channel (Discord allows only a few messages per "
            f"channel every few seconds): its next answer waits about {wait:.1f} s"
        )

    async def close(self) -> None:
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()


def rest_key(prefix: str, *parts: str) -> str:
    """The Redis keys of the bot's REST limiter, as ipc/ratelimit.GlobalLimiter names them
    (a test checks that they agree)."""
    from ipc.client import Keys

    return Keys(prefix)("rest", *parts)
