"""`bench.common.all_ready`, the benchmarks' wait for their workers' READY: a worker the
supervisor gave up on fails the wait at once, naming its cluster and how it ended, and a wait
that reaches its deadline says what was not READY. Without it a benchmark whose worker cannot
start waited forever."""

from __future__ import annotations

import time

import pytest

from bench.common import StartFailed, all_ready
from bot.config import WorkerConfig
from cluster.workers import RestartPolicy, Supervisor


def _config(**changes: str) -> WorkerConfig:
    # No server is reached: the worker stops (or is never started) before it connects.
    return WorkerConfig(
        cluster_id=0,
        cluster_count=1,
        shard_ids=(0, 1),
        shard_count=2,
        token="bench-test",
        database_url="postgresql://127.0.0.1:1/none",
        redis_url="redis://127.0.0.1:1",
        **changes,  # type: ignore[arg-type]
    )


@pytest.mark.slow
async def test_a_worker_the_supervisor_gave_up_on_fails_the_wait_at_once() -> None:
    # A worker that cannot start: it stops on its configuration before it connects anywhere.
    config = _config(gateway_compression="no-such-compression")
    policy = RestartPolicy(base_delay=0.05, max_delay=0.1, max_failures=2)
    sup = Supervisor([config], log_level="WARNING", log_format="json", policy=policy)
    await sup.start()
    started = time.monotonic()
    try:
        with pytest.raises(StartFailed) as failed:
            await all_ready(sup, within=90)
    finally:
        await sup.stop()
    assert time.monotonic() - started < 60  # two starts, not the 90 s deadline
    said = str(failed.value)
    assert said.startswith("cluster 0 (shards [0, 1]) FAILED before READY")
    assert "stopped 2 times (last: exit code 1)" in said
    assert "does not restart it again" in said


async def test_the_deadline_names_what_is_not_ready() -> None:
    sup = Supervisor([_config()], log_level="WARNING", log_format="json")  # never started
    started = time.monotonic()
    with pytest.raises(StartFailed) as late:
        await all_ready(sup, within=0.3, every=0.05)
    assert 0.3 <= time.monotonic() - started < 5
    assert str(late.value) == (
        "not every shard was READY within 0.3 s: "
        "cluster 0: its worker is not running (not started, 0 restarts)"
    )
