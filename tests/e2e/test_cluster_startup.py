"""Starting many shards in many processes: every IDENTIFY waits its turn in the Redis queue."""

from __future__ import annotations

import itertools
import time
import uuid

import aiohttp
import pytest
from e2e_harness import running_sandbox, start_cluster, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def test_eight_shards_in_four_processes_start_without_op9(
    bot_db: str, redis_url: str
) -> None:
    interval, mc, shards = 0.5, 2, 8
    with running_sandbox(
        "--guilds",
        "16",
        "--members",
        "4",
        "--seed",
        "11",
        "--max-concurrency",
        str(mc),
        "--identify-interval",
        str(interval),
    ) as sb:
        started = time.monotonic()
        sup = await start_cluster(
            sb,
            bot_db,
            redis_url,
            shards=shards,
            clusters=4,
            max_concurrency=mc,
            owner_id=123456789012345678,
            prefix=f"e2e:{uuid.uuid4().hex[:8]}:",
        )
        elapsed = time.monotonic() - started
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{sb.control}/_sandbox/stats") as resp,
            ):
                stats = await resp.json()
        finally:
            await sup.stop()
    assert stats["op9"] == 0, stats
    assert stats["identifies_per_bucket"] == {"0": shards // mc, "1": shards // mc}
    # Per bucket, IDENTIFYs were spaced by the interval (the sandbox's own clock).
    for bucket in ("0", "1"):
        times = sorted(t["at"] for t in stats["identify_times"] if str(t["bucket"]) == bucket)
        assert all(b - a >= interval * 0.95 for a, b in itertools.pairwise(times))
    # The buckets ran side by side, not one after the other: each bucket's first IDENTIFY came
    # before the other bucket's second (an order on the sandbox's clock, not a time budget).
    per = {
        b: sorted(t["at"] for t in stats["identify_times"] if str(t["bucket"]) == b)
        for b in ("0", "1")
    }
    assert per["0"][0] < per["1"][1] and per["1"][0] < per["0"][1], per
    print(f"8 shards / 4 processes / max_concurrency 2 ready in {elapsed:.1f}s")


async def test_a_worker_whose_loop_blocks_is_killed_and_restarted(
    bot_db: str, redis_url: str
) -> None:
    with running_sandbox(
        "--guilds", "3", "--members", "4", "--seed", "5", "--identify-interval", "0.2"
    ) as sb:
        sup = await start_cluster(
            sb,
            bot_db,
            redis_url,
            shards=1,
            clusters=1,
            owner_id=123456789012345678,
            hang_timeout=3,
            prefix=f"e2e:{uuid.uuid4().hex[:8]}:",
        )
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{sb.control}/_sandbox/world") as resp:
                    world = await resp.json()
                guild = world["guilds"][0]
                channel = next(c["id"] for c in guild["channels"] if c["type"] == 0)
                user = guild["member_ids"][0]
                old_pid = sup.workers[0].pid
                body = {"channel_id": channel, "author_id": user, "content": "!block 60"}
                async with http.post(f"{sb.control}/_sandbox/messages", json=body) as resp:
                    assert resp.status == 200
                await until(
                    "the worker restarted and READY",
                    lambda: sup.workers[0].pid != old_pid and sup.ready(),
                    within=30,
                )
            assert sup.workers[0].restarts == 1 and sup.workers[0].pid != old_pid
            assert sup.ready()
        finally:
            await sup.stop()
