"""IPC gather p50/p99 over W clusters, against a raw Redis PING round trip in the same run."""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import orjson
import redis.asyncio as aioredis

from bench.common import backing, percentile
from ipc.bus import Bus
from ipc.client import Keys
from ipc.registry import ClusterInfo, Registry


async def run(redis_url: str, clusters: int, rounds: int) -> dict[str, float | int]:
    keys = Keys(f"bench:{os.getpid()}:")
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(clusters)]
    buses = []
    for i, r in enumerate(clients):
        registry = Registry(r, keys)
        bus = Bus(r, keys, i, registry)

        async def stats(_: object, i: int = i) -> dict[str, int]:
            return {"cluster": i, "guilds": 1000 + i}

        bus.handle("cluster_stats", None, stats)
        await bus.start()
        await registry.publish(ClusterInfo(i, [i], os.getpid(), "bench", "ready", time.time()))
        buses.append(bus)
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
            assert not result.partial
    finally:
        for bus in buses:
            await bus.stop()
        for r in clients:
            await r.aclose()
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
    parser.add_argument("--rounds", type=int, default=500)
    args = parser.parse_args()
    with backing() as urls:
        print(
            orjson.dumps(asyncio.run(run(urls["redis_url"], args.clusters, args.rounds))).decode()
        )


if __name__ == "__main__":
    main()
