"""The one way to build a Redis client, and the names of our keys."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.commands.core import AsyncScript

REDIS_ERRORS = Counter(
    "guildhouse_redis_errors_total",
    "Redis operations that failed (and fell back where there is a fallback), by operation.",
    ["cluster", "operation"],
)
# Which cluster this process is, for the label above (a worker sets it once at start).
_process_cluster = [""]


def set_metrics_cluster(cluster_id: int) -> None:
    _process_cluster[0] = str(cluster_id)


def process_cluster() -> str:
    """This process's cluster id, as a metrics label ('' outside a worker)."""
    return _process_cluster[0]


def count_redis_error(operation: str) -> None:
    REDIS_ERRORS.labels(_process_cluster[0], operation).inc()


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


@dataclass(frozen=True)
class ScriptCall:
    """A registered Lua script with its keys and arguments, for one component to run inside
    another's round trip (see `Throttle.hit(also=...)`)."""

    script: AsyncScript
    keys: list[str]
    args: list[str | int]


class Keys:
    """Every Redis key we write starts with one configurable prefix (REDIS_PREFIX).

    Several bots, or a test run beside a dev run, can share one Redis without collisions.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: str | int) -> str:
        return self.prefix + ":".join(str(p) for p in parts)


class Degraded:
    """Whether Redis is reachable, as one component sees it.

    While Redis is down, callers use a local fallback; one call per `probe_every` seconds tries
    Redis again (the others don't wait on connection attempts and retries). Each change is
    logged once, not once per call.
    """

    def __init__(
        self,
        log: logging.Logger,
        down: str,
        back: str,
        probe_every: float = 1.0,
        *,
        operation: str = "",
    ):
        self.log = log
        self.operation = operation or log.name.rsplit(".", 1)[-1]
        self.down_message = down
        self.back_message = back
        self.probe_every = probe_every
        self.down = False
        self._next_probe = 0.0

    def should_try(self) -> bool:
        if not self.down:
            return True
        now = time.monotonic()
        if now < self._next_probe:
            return False
        self._next_probe = now + self.probe_every  # this caller probes; the rest stay local
        return True

    def failed(self, exc: BaseException) -> None:
        count_redis_error(self.operation)
        self._next_probe = time.monotonic() + self.probe_every
        if not self.down:
            self.down = True
            self.log.warning(self.down_message, exc)

    def succeeded(self) -> None:
        if self.down:
            self.down = False
            self.log.warning(self.back_message)
