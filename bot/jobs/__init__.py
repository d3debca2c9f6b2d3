"""Scheduled work for every feature: one jobs table, one runner per worker, claim and lease.

A feature schedules a job (a kind, a key naming the thing, a due time, an optional guild and a
JSON payload) and registers a handler for its kind; the runner of whichever worker may run it
(the cluster of the guild's shard, or any for guild-less jobs) claims it when it is due and
runs the handler, once. docs/jobs.md is the guide; bot/jobs/kinds.py states the guarantee.

    from bot import jobs

    async def unban(run: jobs.Run) -> None:
        ...  # an idempotent Discord call, then, if the record must change with it:
        async with run.complete() as conn:
            await conn.execute("UPDATE bans SET lifted_at = now() WHERE id = $1", ...)

    # cog_load / cog_unload:
    await jobs.install(bot, jobs.Kind("moderation.unban", unban))
    await jobs.uninstall(bot, "moderation.unban")
    # when a tempban is made (or inside your transaction: jobs.store.schedule(conn, ...) and,
    # after the commit, jobs.of(bot).notify()):
    await jobs.of(bot).schedule("moderation.unban", f"ban:{ban_id}", ends_at, guild_id=...)
"""

from __future__ import annotations

import os
import secrets
import weakref
from typing import TYPE_CHECKING

from bot.jobs import store
from bot.jobs.attempt import DB_ERRORS
from bot.jobs.kinds import ClaimLost, Failed, Handler, Job, Kind, OnFailed, Retry, Run
from bot.jobs.runner import JobRunner, worker_token
from bot.jobs.store import Scheduled

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

__all__ = [
    "DB_ERRORS",
    "ClaimLost",
    "Failed",
    "Handler",
    "Job",
    "JobRunner",
    "Kind",
    "OnFailed",
    "Retry",
    "Run",
    "Scheduled",
    "install",
    "of",
    "store",
    "uninstall",
    "worker_token",
]

_RUNNERS: weakref.WeakKeyDictionary[Guildhouse, JobRunner] = weakref.WeakKeyDictionary()


def of(bot: Guildhouse) -> JobRunner:
    """The worker's job runner (made on first use; started by the first `install`)."""
    runner = _RUNNERS.get(bot)
    if runner is None:
        cfg = bot.config
        runner = JobRunner(
            bot.pool,
            worker=worker_token(cfg.cluster_id, f"{os.getpid()}:{secrets.token_hex(3)}"),
            shard_count=cfg.shard_count,
            shard_ids=list(cfg.shard_ids),
            cluster=str(cfg.cluster_id),
            redis=bot.redis,
            wake_channel=bot.keys("jobs", "wake"),
            accepting=lambda: bot.accepting,
        )
        _RUNNERS[bot] = runner
    return runner


async def install(bot: Guildhouse, kind: Kind) -> JobRunner:
    """Register a kind with the worker's runner, starting the runner if it isn't running (not
    in a REST-only bot: `guildhouse commands sync` runs no jobs). Call from `cog_load`."""
    runner = of(bot)
    runner.register(kind)
    if not bot.rest_only and not runner.started:
        await runner.start()
    return runner


async def uninstall(bot: Guildhouse, name: str, *, grace: float = 10.0) -> None:
    """Unregister a kind (call from `cog_unload`); the runner stops (letting running jobs
    finish for up to `grace` s, then giving back what it holds) when no kind is left, as at
    the worker's close, when every cog unloads."""
    runner = _RUNNERS.get(bot)
    if runner is None:
        return
    runner.unregister(name)
    if not runner.kinds and runner.started:
        await runner.stop(grace)
