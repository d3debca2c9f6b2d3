"""One worker process: settings in, pool and Redis opened here, the bot runs until stopped.

A stop (SIGTERM or SIGINT) may come at any moment: before the bot has logged in, while shards
wait for their IDENTIFY turn, during a RESUME, while commands drain. Whatever the moment, the
process ends within its drain grace with exit status 0: commands get the grace less a reserve
for closing, every closing step is bounded by what is left of it, and a step that overruns
is left behind rather than waited for. A second signal cuts the wait for commands short.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import signal
from collections.abc import Awaitable

import discord
from redis.exceptions import RedisError

from bot import dpy, logcontext, outages
from bot.config import WorkerConfig
from bot.db.pool import create_pool
from bot.guildhouse import Guildhouse
from bot.shards import FATAL_CLOSES, Reporter, ShardState
from ipc.client import count_redis_error, create_redis, set_metrics_cluster

log = logging.getLogger(__name__)

# Collections of the young generations run here once a second, between the bot's work: left
# to the interpreter they start inside whatever allocates its threshold's worth of new
# objects, which is usually a command or a chat message (bench/README.md, "Both bots at once",
# has what that cost). A second that allocates fewer than the threshold then starts none of
# the interpreter's own; a busier one (a burst of chat) still does, as before. A full
# collection, which the interpreter starts only from one of its own, runs here when this many
# young ones have gone by without one.
FULL_COLLECTION_AFTER = 600


def _collect_young() -> None:
    """Collect the two young generations; the whole heap if none was collected for a while."""
    gc.collect(1)
    if gc.get_count()[2] >= FULL_COLLECTION_AFTER:
        gc.collect()


async def _report(bot: Guildhouse, reporter: Reporter | None, ready_timeout: float) -> None:
    """Once a second: tell the launcher we are alive and how each shard is; reconnect a shard
    that has been stuck short of READY for `ready_timeout` seconds."""
    tick = 0
    frozen = False
    while True:
        if reporter is not None:
            reporter.heartbeat()
            for sid, state in bot.shard_tracker.states.items():
                reporter.shard(sid, state, bot.shard_latency(sid))
        tick += 1
        if frozen:
            _collect_young()
        elif bot.shard_tracker.all_ready():
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
                # Through the bot, so that a stop cancels it rather than letting it connect
                # into a closing client.
                asyncio.create_task(bot.reconnect_shard(sid), name=f"reconnect-shard-{sid}")  # noqa: RUF006
        await asyncio.sleep(1)


_publish_failed = False


async def _publish(bot: Guildhouse, state: str) -> None:
    """Refresh this cluster's registry entry; a failure is logged once, not every time. A
    Redis outage is the worker's one WARNING (bot/outages.py), so this line is INFO then."""
    global _publish_failed  # noqa: PLW0603 - one flag for the one report loop of a process
    try:
        await bot.registry.publish(bot.cluster_info(state))
    except (RedisError, OSError) as exc:
        count_redis_error("registry")
        outage = outages.note(exc, "the cluster registry") is not None
        if not _publish_failed:
            log.log(
                logging.INFO if outage else logging.WARNING,
                "cannot publish to the cluster registry (%s); trying again every 2s",
                exc,
            )
        _publish_failed = True
    else:
        outages.redis.reachable()
        _publish_failed = False


class _WorkerFailed(Exception):
    """The bot ended for a reason already logged in a line that says what to fix."""


class _Stop:
    """SIGTERM/SIGINT: the first asks the worker to stop within `grace` s; another cuts the
    wait for running commands short (the rest of the stop is bounded anyway)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, grace: float) -> None:
        self.loop = loop
        self.grace = grace
        self.requested = asyncio.Event()
        self.hurry = asyncio.Event()
        self.deadline = math.inf
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if not self.requested.is_set():
            # The interpreter's own exit comes after this deadline: keep a moment for it.
            self.deadline = self.loop.time() + self.grace - min(1.0, self.grace / 10)
            self.requested.set()
            log.info("%s: stopping within %.0fs", name, self.grace)
        elif not self.hurry.is_set():
            self.hurry.set()
            log.info("%s again: not waiting for running commands any longer", name)

    def left(self, otherwise: float = 10.0) -> float:
        """Seconds left of the stop's grace; `otherwise` when no stop was asked for (the bot
        ended by itself, and its cleanup still gets a bound)."""
        if not self.requested.is_set():
            return otherwise
        return max(0.0, self.deadline - self.loop.time())


async def _within(aw: Awaitable[object], seconds: float, what: str) -> None:
    """Await `aw` for at most `seconds`, then go on without it (a stop must end in time)."""
    try:
        await asyncio.wait_for(aw, timeout=max(0.01, seconds))
    except TimeoutError:
        if seconds <= 0:
            log.warning("%s: the stop's grace had run out; going on without it", what)
        else:
            log.warning("%s took longer than %.1fs; going on without it", what, seconds)


def _explain(exc: BaseException) -> str | None:
    """A line for a failure that the configuration causes, or None for any other."""
    if isinstance(exc, discord.LoginFailure):
        return f"Discord refused the login ({exc}): check the bot token"
    if isinstance(exc, discord.PrivilegedIntentsRequired | discord.ConnectionClosed):
        code = 4014 if isinstance(exc, discord.PrivilegedIntentsRequired) else exc.code
        if code in FATAL_CLOSES:
            return (
                f"shard {exc.shard_id}: the gateway closed the connection with {code} "
                f"({FATAL_CLOSES[code]}) before the shard was ever READY"
            )
    return None


async def run_worker(
    config: WorkerConfig,
    reporter: Reporter | None = None,
    *,
    drain_grace: float = 15.0,
) -> None:
    """Run the bot for `config.shard_ids` until SIGTERM/SIGINT, then shut down gracefully
    within `drain_grace` s: stop taking commands, let running ones finish while the grace
    allows, close the gateway connections, then the Redis client and the pool."""
    logcontext.install()
    logcontext.cluster.set(config.cluster_id)
    set_metrics_cluster(config.cluster_id)
    stop = _Stop(asyncio.get_running_loop(), drain_grace)
    try:
        dpy.check()  # before anything connects: patches that don't fit stop the worker here
    except dpy.Unsupported as exc:
        log.critical("cluster %d stops: %s", config.cluster_id, exc)
        raise SystemExit(1) from None
    dpy.urls.install(config.api_url, config.gateway_url)
    dpy.compression.install(config.gateway_compression)
    dpy.heartbeat.install()
    dpy.zombie.install()  # after heartbeat: it wraps the send that one installs
    log.info(
        "cluster %d starting shards %s of %d",
        config.cluster_id,
        list(config.shard_ids),
        config.shard_count,
    )
    body = asyncio.create_task(_serve(config, reporter, stop), name="worker")
    requested = asyncio.create_task(stop.requested.wait(), name="stop-signal")
    await asyncio.wait({body, requested}, return_when=asyncio.FIRST_COMPLETED)
    requested.cancel()
    if not body.done():
        # The body stops by itself, each step bounded by the deadline; this is the backstop
        # for a step that ignores its bound.
        await asyncio.wait({body}, timeout=stop.left())
        if not body.done():
            log.warning(
                "cluster %d: stopping overran its grace; cutting it short", config.cluster_id
            )
            body.cancel()
            await asyncio.wait({body}, timeout=0.5)
            return
    if body.cancelled():
        return
    try:
        body.result()
    except _WorkerFailed:
        # After the cleanup, in the process's main task: the exit status says it failed,
        # and the line logged says why; no traceback adds anything to that.
        raise SystemExit(1) from None


async def _serve(config: WorkerConfig, reporter: Reporter | None, stop: _Stop) -> None:
    pool = await create_pool(
        config.database_url, min_size=1, max_size=10, metrics_cluster=str(config.cluster_id)
    )
    try:
        redis = create_redis(config.redis_url)
        try:
            bot = Guildhouse(config, pool=pool, redis=redis)
            # Not `async with bot`: its exit waits for close() without a bound.
            await bot.__aenter__()
            try:
                if not stop.requested.is_set():
                    await _run(bot, config, reporter, stop)
            finally:
                await _within(bot.close(), stop.left(), "closing the bot")
        finally:
            await _within(redis.aclose(), stop.left(), "closing the Redis client")
    finally:
        # asyncpg terminates the pool's connections when its close() is cancelled.
        await _within(pool.close(), stop.left(), "closing the database pool")


async def _run(
    bot: Guildhouse, config: WorkerConfig, reporter: Reporter | None, stop: _Stop
) -> None:
    beat = asyncio.create_task(_report(bot, reporter, config.shard_ready_timeout), name="report")
    runner = asyncio.create_task(bot.start(config.token), name="bot")
    stopper = asyncio.create_task(stop.requested.wait(), name="stop-signal")
    try:
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if stop.requested.is_set():
            await _stop(bot, config, runner, stop)
        else:
            try:
                runner.result()  # the bot ended without being asked to
            except Exception as exc:
                reason = _explain(exc)
                if reason is None:
                    raise
                log.critical("cluster %d stops: %s", config.cluster_id, reason)
                raise _WorkerFailed(reason) from None
    finally:
        beat.cancel()
        if not runner.done():
            runner.cancel()
    await _within(bot.registry.remove(config.cluster_id), stop.left(), "leaving the registry")
    log.info("cluster %d stopped", config.cluster_id)


async def _stop(
    bot: Guildhouse, config: WorkerConfig, runner: asyncio.Task[None], stop: _Stop
) -> None:
    log.info("cluster %d draining", config.cluster_id)
    await _within(_publish(bot, "stopping"), min(1.0, stop.left()), "publishing 'stopping'")
    # Commands get the grace less what closing needs: the gateway, Redis and the pool.
    reserve = min(5.0, stop.grace / 3)
    drain = asyncio.create_task(bot.drain(max(0.0, stop.left() - reserve)), name="drain")
    hurry = asyncio.create_task(stop.hurry.wait(), name="stop-hurry")
    await asyncio.wait({drain, hurry}, return_when=asyncio.FIRST_COMPLETED)
    drain.cancel()
    hurry.cancel()
    await _within(bot.close(), stop.left(), "closing the bot")
    # bot.start() returns once close() has run; bounded all the same, and cancelled past it.
    await asyncio.wait({runner}, timeout=max(0.01, stop.left()))
    if not runner.done():
        log.warning(
            "cluster %d: the bot did not end after close(); cancelling it", config.cluster_id
        )
        runner.cancel()
        await asyncio.wait({runner}, timeout=max(0.01, min(1.0, stop.left())))
    elif not runner.cancelled() and runner.exception() is not None:
        # A connection torn down by the stop can end the bot with an error: expected, and
        # not the operator's concern.
        log.info(
            "cluster %d: the bot ended with %r while stopping",
            config.cluster_id,
            runner.exception(),
        )
