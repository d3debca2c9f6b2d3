"""IPC gather p50/p99 over W clusters, against a raw Redis PING round trip in the same run.

The asking cluster runs here; the other W-1 run as separate processes, as real clusters do,
each answering `cluster_stats` from its own bus. Every process runs on uvloop, as workers do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time

import orjson
import redis.asyncio as aioredis
import uvloop

from bench.common import backing, percentile
from ipc.bus import Bus
from ipc.client import Keys
from ipc.registry import ClusterInfo, Registry


async def node(redis_url: str, prefix: str, cluster_id: int) -> None:
    """One cluster's bus, answering until SIGTERM; prints READY once subscribed."""
    keys = Keys(prefix)
    async with aioredis.Redis.from_url(redis_url) as r:
        registry = Registry(r, keys)
        bus = Bus(r, keys, cluster_id, registry)

        async def stats(_: object) -> dict[str, int]:
            return {"cluster": cluster_id, "guilds": 1000 + cluster_id}

        bus.handle("cluster_stats", None, stats)
        await bus.start()
        info = ClusterInfo(cluster_id, [cluster_id], os.getpid(), "bench", "ready", time.time())
        await registry.publish(info)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("READY", flush=True)
        while not stop.is_set():
            await registry.publish(info)  # stay in the registry
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5)
        await bus.stop()


async def run(redis_url: str, clusters: int, rounds: int) -> dict[str, float | int]:
    prefix = f"bench:{os.getpid()}:{time.monotonic_ns()}:"
    keys = Keys(prefix)
    children = []
    for i in range(1, clusters):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.rpc_gather",
            "--node",
            redis_url,
            prefix,
            str(i),
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        line = await child.stdout.readline()
        assert line.strip() == b"READY", line
        children.append(child)
    clients = [aioredis.Redis.from_url(redis_url)]
    registry = Registry(clients[0], keys)
    buses = [Bus(clients[0], keys, 0, registry)]

    async def own_stats(_: object) -> dict[str, int]:
        return {"cluster": 0, "guilds": 1000}

    buses[0].handle("cluster_stats", None, own_stats)
    await buses[0].start()
    await registry.publish(ClusterInfo(0, [0], os.getpid(), "bench", "ready", time.time()))
    try:
        pings, gathers = [], []
        for _ in range(20):  # warm up
            await clients[0].ping()
            await buses[0].gather("cluster_stats", within=2)
        for _ in range(rounds):
            t = time.perf_counter()
            await clients[0].ping()
            pings.append(time.perf_counter() - t)
            t = time.perf_counter()
            result = await buses[0].gather("cluster_stats", within=2)
            gathers.append(time.perf_counter() - t)
            assert not result.partial, result
    finally:
        for bus in buses:
            await bus.stop()
        for r in clients:
            await r.aclose()
        for child in children:
            child.terminate()
            await child.wait()
    p50, p99 = percentile(gathers, 0.5), percentile(gathers, 0.99)
    ping50, ping99 = percentile(pings, 0.5), percentile(pings, 0.99)
    return {
        "clusters": clusters,
        "rounds": rounds,
        "gather_p50_ms": round(p50 * 1000, 3),
        "gather_p99_ms": round(p99 * 1000, 3),
        "ping_p50_ms": round(ping50 * 1000, 3),
        "ping_p99_ms": round(ping99 * 1000, 3),
        "gather_p50_over_ping_p50": round(p50 / ping50, 2),
        "gather_p99_over_ping_p99": round(p99 / ping99, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clusters", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    with backing() as urls:
        print(orjson.dumps(uvloop.run(run(urls["redis_url"], args.clusters, args.rounds))).decode())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--node":
        uvloop.run(node(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        main()
