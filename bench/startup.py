"""Time until N shards in W worker processes are all READY against the sandbox, against
Discord's floor for the same run: ceil(N / max_concurrency) x identify interval."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import time

import orjson

from bench import interrupt
from bench.common import START_TIMEOUT, all_ready, backing
from bot.entry import apply_migrations
from cluster.launcher import BackingUrls, DiscordEndpoint, worker_configs
from cluster.settings import load
from cluster.workers import Supervisor
from sandbox import Sandbox, SandboxConfig


async def run(
    urls: dict[str, str], shards: int, clusters: int, mc: int, interval: float
) -> dict[str, float | int]:
    await apply_migrations(urls["database_url"])
    floor = math.ceil(shards / mc) * interval
    config = SandboxConfig(
        guilds=shards * 10, members=5, max_concurrency=mc, identify_interval=interval
    )
    async with Sandbox(config) as sb:
        settings = load(
            {
                "SHARD_COUNT": str(shards),
                "CLUSTER_COUNT": str(clusters),
                "REDIS_PREFIX": f"bench:{os.getpid()}:",
                "LOG_LEVEL": "WARNING",
            },
            config_file=None,
        )
        endpoint = DiscordEndpoint(sb.token, sb.api_url, sb.gateway_url, interval)
        configs = worker_configs(
            settings,
            endpoint=endpoint,
            urls=BackingUrls(urls["database_url"], urls["redis_url"]),
            shard_count=shards,
            gateway_url=sb.gateway_url,
            max_concurrency=mc,
        )
        sup = Supervisor(configs, log_level="WARNING", log_format="json")
        started = time.monotonic()
        await sup.start()
        try:
            # The floor twice over on top: a run with many shards may take long to be READY.
            await all_ready(sup, within=START_TIMEOUT + 2 * floor, every=0.05)
            elapsed = time.monotonic() - started
        finally:
            await sup.stop()
        stats = sb.stats()
    return {
        "shards": shards,
        "clusters": clusters,
        "max_concurrency": mc,
        "identify_interval_s": interval,
        "ready_s": round(elapsed, 2),
        "floor_s": floor,
        "ready_over_floor": round(elapsed / floor, 2),
        "op9": int(stats["op9"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--clusters", type=int, default=4)
    parser.add_argument("--max-concurrency", type=int, default=1)
    parser.add_argument("--interval", type=float, default=5.0, help="Discord's: 5 s")
    args = parser.parse_args()
    with backing() as urls:
        print(
            orjson.dumps(
                asyncio.run(
                    run(urls, args.shards, args.clusters, args.max_concurrency, args.interval)
                )
            ).decode()
        )


if __name__ == "__main__":
    interrupt.main(main)
