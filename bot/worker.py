"""One worker process: settings in, pool and Redis opened here, the bot runs until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from bot import logcontext
from bot.config import WorkerConfig
from bot.core import Guildhouse
from bot.db.pool import create_pool
from bot.discord_urls import point_at
from ipc.client import create_redis

log = logging.getLogger(__name__)


async def run_worker(config: WorkerConfig) -> None:
    """Run the bot for `config.shard_ids` until SIGTERM/SIGINT or the bot closes."""
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
            runner = asyncio.create_task(bot.start(config.token), name="bot")
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, runner.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            log.info("cluster %d stopping", config.cluster_id)
    finally:
        await pool.close()
