"""One worker process: settings in, pool and Redis opened here, the bot runs until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from bot import logcontext
from bot.config import WorkerConfig
from bot.core import Guildhouse
from bot.db.pool import create_pool
from bot.discord_urls import point_at
from ipc.client import create_redis

log = logging.getLogger(__name__)


async def _beat(heartbeat: Callable[[], None]) -> None:
    while True:
        heartbeat()
        await asyncio.sleep(1)


async def run_worker(
    config: WorkerConfig,
    heartbeat: Callable[[], None] | None = None,
    *,
    drain_grace: float = 15.0,
) -> None:
    """Run the bot for `config.shard_ids` until SIGTERM/SIGINT, then shut down gracefully:
    stop taking commands, let running ones finish (up to `drain_grace` s), close the gateway
    connections, then the Redis client and the pool."""
    logcontext.install()
    logcontext.cluster.set(config.cluster_id)
    point_at(config.api_url, config.gateway_url)
    log.info(
        "cluster %d starting shards %s of %d",
        config.cluster_id,
        list(config.shard_ids),
        config.shard_count,
    )
    pool = await create_pool(config.database_url, min_size=1, max_size=10)
    try:
        async with (
            create_redis(config.redis_url) as redis,
            Guildhouse(config, pool=pool, redis=redis) as bot,
        ):
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            beat = asyncio.create_task(_beat(heartbeat), name="heartbeat") if heartbeat else None
            runner = asyncio.create_task(bot.start(config.token), name="bot")
            stopper = asyncio.create_task(stop.wait(), name="stop-signal")
            await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                log.info("cluster %d draining", config.cluster_id)
                await bot.drain(drain_grace)
                await bot.close()
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner  # re-raises what stopped the bot, if it was not us
            if beat is not None:
                beat.cancel()
            log.info("cluster %d stopped", config.cluster_id)
    finally:
        await pool.close()
