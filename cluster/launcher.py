"""`guildhouse run`: bring up what the bot needs, then the workers, and take it all down again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from dataclasses import dataclass

from cluster.embedded import EmbeddedError, services
from cluster.settings import Settings
from ipc.client import create_redis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackingUrls:
    database_url: str
    redis_url: str


@contextlib.contextmanager
def backing_services(settings: Settings, *, redis: bool = True) -> Iterator[BackingUrls]:
    """URLs of PostgreSQL and Redis: from settings, or embedded servers started for this run."""
    want_pg = settings.database_url is None
    want_redis = redis and settings.redis_url is None
    try:
        with services(settings.data_dir, postgres=want_pg, redis=want_redis) as found:
            yield BackingUrls(
                database_url=settings.database_url or found["postgres"].url,
                redis_url=settings.redis_url or (found["redis"].url if want_redis else ""),
            )
    except EmbeddedError as exc:
        raise SystemExit(f"guildhouse: {exc}") from None


@contextlib.contextmanager
def stop_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM, installed before anything worth stopping starts."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def run(settings: Settings) -> int:
    from bot.entry import MigrationError, apply_migrations

    with stop_signals() as stop, backing_services(settings) as urls:
        try:
            applied = await apply_migrations(urls.database_url)
        except MigrationError as exc:
            log.error("migration failed: %s", exc)
            return 1
        log.info("database ready (%d migration(s) applied now)", len(applied))
        async with create_redis(urls.redis_url) as redis:
            await redis.ping()
        log.info("redis ready")
        log.info("guildhouse is up; press Ctrl-C to stop")
        await stop.wait()
        log.info("stopping")
    return 0
