"""One worker process: settings in, pool and Redis opened here, the bot runs until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal

from redis.exceptions import RedisError

from bot import gateway_compression, gateway_heartbeat, logcontext
from bot.config import WorkerConfig
from bot.core import Guildhouse
from bot.db.pool import create_pool
from bot.discord_urls import point_at
from bot.shards import Reporter, ShardState
from ipc.client import count_redis_error, create_redis, set_metrics_cluster

log = logging.getLogger(__name__)


async def _report(bot: Guildhouse, reporter: Reporter | None, ready_timeout: float) -> None:
    """Once a second: tell the launcher we are alive and how each shard is; reconnect a shard
    that has been stuck short of READY for `ready_timeout` seconds."""
    tick = 0
    frozen = False
    while True:
        if reporter is not None:
            reporter.heartbeat()
            for sid, state in bot.shard_tracker.states.items():
                info = bot.get_shard(sid)
                latency = info.latency if info is not None else None
                if latency is not None and latency == float("inf"):
                    latency = None
                reporter.shard(sid, state, latency)
        tick += 1
        if not frozen and bot.shard_tracker.all_ready():
            # What start-up built (guilds, channels, roles, modules) lives as long as the
            # process: out of the collector's way, so a full collection doesn't walk it all.
            frozen = True
            gc.collect()
            gc.freeze()
        bot.sample_metrics()
        if tick % 2 == 0:
            await _publish(bot, "ready" if bot.shard_tracker.all_ready() else "starting")
        if tick % 5 == 0:
            for sid in bot.shard_tracker.stuck(ready_timeout):
                info = bot.get_shard(sid)
                if info is None:
                    continue
                log.warning(
                    "shard %d not READY after %.0fs; reconnecting it",
                    sid,
                    ready_timeout,
                    extra={"shard": sid},
                )
                bot.shard_tracker.update(sid, ShardState.STARTING)
                asyncio.create_task(info.reconnect(), name=f"reconnect-shard-{sid}")  # noqa: RUF006
        await asyncio.sleep(1)


_publish_failed = False


async def _publish(bot: Guildhouse, state: str) -> None:
    """Refresh this cluster's registry entry; a Redis outage is logged once, not every time."""
    global _publish_failed  # noqa: PLW0603 - one flag for the one report loop of a process
    try:
        await bot.registry.publish(bot.cluster_info(state))
    except (RedisError, OSError) as exc:
        count_redis_error("registry")
        if not _publish_failed:
            log.warning("cannot publish to the cluster registry: %s", exc)
        _publish_failed = True
    else:
        _publish_failed = False


async def run_worker(
    config: WorkerConfig,
    reporter: Reporter | None = None,
    *,
    drain_grace: float = 15.0,
) -> None:
    """Run the bot for `config.shard_ids` until SIGTERM/SIGINT, then shut down gracefully:
    stop taking commands, let running ones finish (up to `drain_grace` s), close the gateway
    connections, then the Redis client and the pool."""
    logcontext.install()
    logcontext.cluster.set(config.cluster_id)
    set_metrics_cluster(config.cluster_id)
    point_at(config.api_url, config.gateway_url)
    gateway_compression.use(config.gateway_compression)
    gateway_heartbeat.install()
    log.info(
        "cluster %d starting shards %s of %d",
        config.cluster_id,
        list(config.shard_ids),
        config.shard_count,
    )
    pool = await create_pool(
        config.database_url, min_size=1, max_size=10, metrics_cluster=str(config.cluster_id)
    )
    try:
        async with (
            create_redis(config.redis_url) as redis,
            Guildhouse(config, pool=pool, redis=redis) as bot,
        ):
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            beat = asyncio.create_task(
                _report(bot, reporter, config.shard_ready_timeout), name="report"
            )
            runner = asyncio.create_task(bot.start(config.token), name="bot")
            stopper = asyncio.create_task(stop.wait(), name="stop-signal")
            await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                log.info("cluster %d draining", config.cluster_id)
                await _publish(bot, "stopping")
                await bot.drain(drain_grace)
                await bot.close()
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner  # re-raises what stopped the bot, if it was not us
            beat.cancel()
            with contextlib.suppress(RedisError, OSError):
                await bot.registry.remove(config.cluster_id)
            log.info("cluster %d stopped", config.cluster_id)
    finally:
        await pool.close()
