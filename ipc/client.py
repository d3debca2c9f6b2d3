"""The one way to build a Redis client, and the names of our keys."""

from __future__ import annotations

import redis.asyncio as aioredis


def create_redis(url: str, *, max_connections: int = 64) -> aioredis.Redis:
    """A `redis.asyncio` client (bytes in, bytes out) with a bounded connection pool.

    Build it in an entry point with `async with create_redis(url) as r:` so it is closed there.
    """
    return aioredis.Redis.from_url(
        url,
        max_connections=max_connections,
        health_check_interval=30,
        socket_connect_timeout=5,
        socket_keepalive=True,
        retry_on_timeout=True,
    )


class Keys:
    """Every Redis key we write starts with one configurable prefix (REDIS_PREFIX).

    Several bots, or a test run beside a dev run, can share one Redis without collisions.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: str | int) -> str:
        return self.prefix + ":".join(str(p) for p in parts)
