"""The Redis identify queue, with real processes contending for it."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict

import pytest
import redis.asyncio as aioredis
from waits import until

from cluster.embedded import free_port
from ipc.client import Keys
from ipc.identify import IdentifyQueue

pytestmark = pytest.mark.timeout(60)

WORKER = textwrap.dedent("""
    import asyncio, json, sys, time
    import redis.asyncio as aioredis
    from ipc.client import Keys
    from ipc.identify import IdentifyQueue

    async def main(url, prefix, mc, interval, lease, shards):
        async with aioredis.Redis.from_url(url) as r:
            q = IdentifyQueue(r, Keys(prefix), max_concurrency=mc, interval=interval,
                              lease=lease)
            for shard in shards:
                print(json.dumps({"event": "waiting", "shard": shard}), flush=True)
                await q.acquire(shard)
                print(json.dumps({"event": "granted", "shard": shard, "at": time.time()}),
                      flush=True)

    url, prefix, mc, interval, lease, shards = sys.argv[1:7]
    asyncio.run(main(url, prefix, int(mc), float(interval), float(lease),
                     [int(s) for s in shards.split(",")]))
""")


def spawn(
    redis_url: str, prefix: str, *, mc: int, interval: float, lease: float, shards: list[int]
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            WORKER,
            redis_url,
            prefix,
            str(mc),
            str(interval),
            str(lease),
            ",".join(map(str, shards)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def grants(procs: list[subprocess.Popen[str]]) -> list[dict[str, float]]:
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=30)
        assert p.returncode == 0
        out += [e for e in map(json.loads, stdout.splitlines()) if e["event"] == "granted"]
    return sorted(out, key=lambda e: e["at"])


def test_four_processes_eight_shards_respect_the_interval_per_bucket(
    redis_url: str, redis_prefix: str
) -> None:
    interval, mc = 0.3, 2
    # Shard ranges as the launcher would give them: contiguous, 2 per process.
    procs = [
        spawn(redis_url, redis_prefix, mc=mc, interval=interval, lease=5, shards=[2 * i, 2 * i + 1])
        for i in range(4)
    ]
    got = grants(procs)
    assert sorted(int(e["shard"]) for e in got) == list(range(8))
    by_bucket: dict[int, list[float]] = defaultdict(list)
    for e in got:
        by_bucket[int(e["shard"]) % mc].append(e["at"])
    for bucket, times in by_bucket.items():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # Redis's clock decides; allow a little for the hop from Redis to the printing process.
        assert all(g >= interval - 0.05 for g in gaps), (bucket, gaps)
    # (That the buckets run side by side is checked end to end, with the sandbox's clock, in
    # tests/e2e/test_cluster_startup.py; here process start-up times would blur it.)


async def test_lower_shards_go_first_within_a_bucket(redis_url: str, keys: Keys) -> None:
    async with aioredis.Redis.from_url(redis_url) as r:
        q = IdentifyQueue(r, keys, max_concurrency=1, interval=0.2, lease=5)
        await q.acquire(100)  # the bucket is now busy for 0.2 s: everyone below must queue
        order: list[int] = []

        async def one(shard: int) -> None:
            await q.acquire(shard)
            order.append(shard)

        await asyncio.gather(*(one(s) for s in (7, 3, 5, 1)))
    assert order == [1, 3, 5, 7]


async def test_a_waiter_that_dies_does_not_block_the_bucket(
    redis_url: str, redis_prefix: str
) -> None:
    lease, interval = 0.6, 0.2
    async with aioredis.Redis.from_url(redis_url) as r:
        q = IdentifyQueue(r, Keys(redis_prefix), max_concurrency=1, interval=interval, lease=lease)
        await q.acquire(50)  # keeps the bucket busy for a moment
        # A process queues shard 0 (it would be first) and dies before its turn.
        doomed = spawn(redis_url, redis_prefix, mc=1, interval=30, lease=lease, shards=[0, 1])
        assert doomed.stdout is not None
        assert json.loads(doomed.stdout.readline())["shard"] == 0
        granted = json.loads(doomed.stdout.readline())  # shard 0 granted ...
        assert granted["event"] == "granted"
        waiting = json.loads(doomed.stdout.readline())  # ... shard 1 now waits 30 s
        assert waiting == {"event": "waiting", "shard": 1}
        queue = Keys(redis_prefix)("identify", 0, "waiting")

        async def queued() -> bool:
            return await r.zscore(queue, "1") is not None

        await until("the doomed process's shard 1 in the queue", queued, within=10)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        started = time.monotonic()
        # Shard 9 queues behind the dead shard 1; it goes once shard 1's lease lapses.
        waited = await q.acquire(9)
    assert waited < lease + 30 / 2
    assert time.monotonic() - started < 5


async def test_a_waiter_that_gives_up_leaves_the_queue_at_once(
    redis: aioredis.Redis, keys: Keys
) -> None:
    # A long lease: without leaving, the shards behind the cancelled one would wait for it.
    q = IdentifyQueue(redis, keys, max_concurrency=1, interval=0.3, lease=30, margin=0.0)
    await q.acquire(50)  # the bucket is busy for a moment: shard 0 has to wait
    first = asyncio.create_task(q.acquire(0))

    async def queued() -> bool:
        return await redis.zscore(keys("identify", 0, "waiting"), "0") is not None

    await until("shard 0 in the queue", queued, within=10)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await redis.zscore(keys("identify", 0, "waiting"), "0") is None
    assert not await redis.exists(keys("identify", 0, "alive", "0"))
    # Shard 1 goes as soon as the interval allows, not after shard 0's 30 s lease.
    waited = await asyncio.wait_for(q.acquire(1), 5)
    assert waited < 5


async def test_without_redis_it_paces_locally_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    dead = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    q = IdentifyQueue(dead, Keys("x:"), max_concurrency=1, interval=0.3)
    await q.acquire(0)
    second = await q.acquire(1)
    await dead.aclose()
    assert second >= 0.25
    # What the queue does meanwhile, at INFO; the outage is the process's one WARNING.
    local = [r.levelname for r in caplog.records if "pacing IDENTIFYs locally" in r.message]
    assert local == ["INFO"]
    warnings = [r.message for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("Redis is unreachable (the IDENTIFY queue: ConnectionError")


async def test_approach_holds_a_place_and_claims_nothing(redis: aioredis.Redis, keys: Keys) -> None:
    q = IdentifyQueue(redis, keys, max_concurrency=1, interval=2.0, margin=0.0)
    assert await q.approach(0) == pytest.approx(0, abs=1)
    assert await redis.get(keys("identify", 0, "last")) is None, "approach claimed a turn"
    await q.acquire(0)
    assert await redis.get(keys("identify", 0, "last")) is not None
    # Shard 1 is next; approach returns once its turn is at most `within` away, not before.
    await q.approach(1, within=0.5)
    peek = q._claim(
        keys=[keys("identify", 0, "last"), keys("identify", 0, "waiting")],
        args=["1", 2000, 10_000, keys("identify", 0, "alive", ""), "1"],
    )
    assert 0 <= int(await peek) <= 500
    # Still first in line: a higher shard that asks now is told someone is ahead.
    later = q._claim(
        keys=[keys("identify", 0, "last"), keys("identify", 0, "waiting")],
        args=["7", 2000, 10_000, keys("identify", 0, "alive", ""), "1"],
    )
    assert int(await later) == -1
    await q.acquire(1)
    assert int(await redis.zcard(keys("identify", 0, "waiting"))) == 1  # shard 7's place
