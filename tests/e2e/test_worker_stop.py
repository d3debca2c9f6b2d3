"""Stopping workers with real processes: a stop at any moment ends each worker within its drain
grace, with exit status 0 and nothing logged as an error; a fatal gateway close before a
shard's first READY still ends the worker, with one line that says why."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from dataclasses import replace
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from e2e_harness import (
    Driver,
    SandboxProc,
    place_on_shard,
    running_sandbox,
    start_cluster,
    until,
)

from bot.config import WorkerConfig
from bot.shards import ShardState
from cluster.workers import Supervisor
from ipc.client import Keys
from ipc.registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

# bot.worker.run_worker's default, the grace the launcher's workers run with.
DRAIN_GRACE = 15.0
OWNER = 123456789012345678


def worker_lines(out: str) -> list[dict[str, Any]]:
    """The workers' JSON log lines (each carries its cluster) among what was captured."""
    lines = []
    for raw in out.splitlines():
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(entry, dict) and "cluster" in entry:
            lines.append(entry)
    return lines


def ready_shards(sup: Supervisor) -> int:
    return sum(
        state == ShardState.READY
        for w in sup.workers.values()
        if w.report is not None
        for state, _ in w.report.shard_states().values()
    )


def quiet(out: str, err: str) -> None:
    """Nothing logged as an error, no traceback, no retry against a closed session."""
    loud = [e for e in worker_lines(out) if e["level"] in ("ERROR", "CRITICAL") or "exception" in e]
    assert not loud, loud
    for text in ("Retrying", "Session is closed", "Traceback"):
        assert text not in out and text not in err, text


@pytest.mark.parametrize("moment", ["logging in", "identify queue"])
async def test_a_stop_while_starting_ends_every_worker_cleanly(
    moment: str, bot_db: str, redis_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    # One IDENTIFY a second for 8 shards: the queue stays busy for about ten seconds.
    with running_sandbox(
        "--guilds", "8", "--members", "3", "--seed", "3", "--identify-interval", "1"
    ) as sb:
        sup = await start_cluster(
            sb,
            bot_db,
            redis_url,
            shards=8,
            clusters=2,
            max_concurrency=1,
            owner_id=OWNER,
            prefix=f"e2e:{uuid.uuid4().hex[:8]}:",
            wait_ready=False,
        )
        stopped = False
        try:
            # Both workers' bots exist (their report loop beats; they are logging in).
            await until(
                "both workers beat",
                lambda: all(
                    w.report is not None and w.report.last_beat() > 0 for w in sup.workers.values()
                ),
                within=90,
            )
            if moment == "identify queue":
                # The queue under way: the first shards READY, the rest (in both workers:
                # shards go in order, 0-3 in one, 4-7 in the other) waiting their turn.
                await until("two shards are READY", lambda: ready_shards(sup) >= 2, within=90)
                assert ready_shards(sup) < 8, "every shard was READY: the stop came too late"
            processes = [w.process for w in sup.workers.values()]
            started = time.monotonic()
            await sup.stop()
            stopped = True
            took = time.monotonic() - started
        finally:
            if not stopped:
                await sup.stop()
    out, err = capfd.readouterr()
    codes = [p.exitcode for p in processes if p is not None]
    assert codes == [0, 0], f"exit codes {codes} (negative: killed by that signal)\n{out}"
    assert took < DRAIN_GRACE, f"the workers took {took:.1f}s to stop"
    quiet(out, err)


async def test_a_stop_mid_drain_ends_in_the_grace_and_a_second_signal_cuts_it_short(
    sandbox: SandboxProc,
    driver: Driver,
    bot_db: str,
    redis_url: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Each worker has a command that outlasts the grace. Worker 0 gets a second SIGTERM once
    it is draining, and stops waiting for its command; worker 1 waits for its command as long
    as the grace allows. Both end in the grace, with exit status 0."""
    prefix = f"e2e:{uuid.uuid4().hex[:8]}:"
    sup = await start_cluster(
        sandbox, bot_db, redis_url, shards=2, clusters=2, owner_id=OWNER, prefix=prefix
    )
    redis = aioredis.Redis.from_url(redis_url)
    stopping = None
    try:
        for cluster in (0, 1):
            channel, author = place_on_shard(driver.world, cluster, 2)
            await driver.drain(channel)
            await driver.say(channel, author, "!nap 120")
            assert await driver.reply_text(channel) == "Napping."
        processes = [w.process for w in sup.workers.values()]
        started = time.monotonic()
        stopping = asyncio.create_task(sup.stop())
        registry = Registry(redis, Keys(prefix))

        async def draining() -> bool:
            return any(
                c.cluster_id == 0 and c.state == "stopping" for c in await registry.clusters()
            )

        await until("cluster 0 says it is stopping", draining, within=30)
        sup.kill(0, signal.SIGTERM)
        await stopping
        took = time.monotonic() - started
    finally:
        if stopping is None:
            await sup.stop()
        await redis.aclose()
    out, err = capfd.readouterr()
    codes = [p.exitcode for p in processes if p is not None]
    assert codes == [0, 0], f"exit codes {codes} (negative: killed by that signal)\n{out}"
    assert took < DRAIN_GRACE, f"the workers took {took:.1f}s to stop"
    waited = [e["cluster"] for e in worker_lines(out) if "commands still running" in e["message"]]
    assert waited == [1]
    quiet(out, err)


async def test_a_fatal_close_before_the_first_ready_ends_the_worker_saying_why(
    bot_db: str, redis_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """A shard the gateway refuses at IDENTIFY (here: a shard id past the shard count, 4010)
    never worked: that is configuration, and the worker stops rather than retrying it."""

    def bad_shard(config: WorkerConfig) -> WorkerConfig:
        return replace(config, shard_ids=(0, config.shard_count))

    with running_sandbox(
        "--guilds", "2", "--members", "3", "--seed", "4", "--identify-interval", "0.2"
    ) as sb:
        sup = await start_cluster(
            sb,
            bot_db,
            redis_url,
            shards=1,
            clusters=1,
            owner_id=OWNER,
            prefix=f"e2e:{uuid.uuid4().hex[:8]}:",
            wait_ready=False,
            adjust=bad_shard,
        )
        try:
            first = sup.workers[0].process
            assert first is not None
            await until("the worker exits", lambda: not first.is_alive(), within=90)
        finally:
            await sup.stop()
    out, _ = capfd.readouterr()
    assert first.exitcode == 1
    critical = [e for e in worker_lines(out) if e["level"] == "CRITICAL"]
    assert len(critical) == 1, critical
    assert "shard 1" in critical[0]["message"] and "4010" in critical[0]["message"]
    assert "invalid shard" in critical[0]["message"] and "exception" not in critical[0]
