"""The shared REST limiter's cost per call, and the rate it achieves at the limit, against
discord.py's own per-process limiter in the same run.

1. Overhead: one discord.py `HTTPClient` calls `GET /channels/{id}` sequentially (well under
   every limit), alternating blocks with and without Guildhouse's limiter (its aiohttp middleware):
   added latency per call (p50, p99) and Redis commands per call.
2. At the limit: P processes send as fast as they can (10 calls in flight each) for a few
   seconds, first with discord.py alone, then with the shared limiter: successful calls per
   second, 429s earned, and the most requests the sandbox saw in any 1 s window.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

import aiohttp
import discord
import orjson
import redis.asyncio as aioredis

from bench import interrupt
from bench.common import backing, percentile, start_sandbox, stop
from bot.dpy import http_session, urls
from bot.rest_limits import middleware
from ipc.client import Keys
from ipc.ratelimit import GlobalLimiter, InvalidRequestGuard


def channels_of(info: dict[str, Any]) -> list[int]:
    return [int(c) for c in info["text_channels"]]


async def client(
    info: dict[str, Any],
    redis: aioredis.Redis | None,
    prefix: str,
    clusters: int,
    rate: int = 50,
) -> tuple[discord.http.HTTPClient, GlobalLimiter | None, InvalidRequestGuard | None]:
    urls.install(info["api_url"], None)
    limiter = guard = None
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    if redis is not None:
        keys = Keys(prefix)
        limiter = GlobalLimiter(redis, keys, rate=rate, clusters=clusters)
        guard = InvalidRequestGuard(redis, keys)
        http_session.install(http, middleware(limiter, guard))
    await http.static_login(info["token"])
    return http, limiter, guard


async def commands_processed(redis: aioredis.Redis) -> int:
    return int((await redis.info("stats"))["total_commands_processed"])


async def overhead(info: dict[str, Any], redis_url: str, calls: int) -> dict[str, float]:
    prefix = f"bench:{os.getpid()}:"
    channels = channels_of(info)
    async with (
        aioredis.Redis.from_url(redis_url) as redis,
        aioredis.Redis.from_url(redis_url) as probe,
    ):
        # Both limits far away: this measures the cost of asking, not waiting.
        plain, _, _ = await client(info, None, prefix, 1)
        shared, limiter, guard = await client(info, redis, prefix, 1, rate=1_000_000)
        assert limiter is not None and guard is not None
        times: dict[str, list[float]] = {"plain": [], "shared": []}
        redis_commands = 0
        trips_before = limiter.calls + limiter.learned + guard.round_trips
        try:
            for block in range(2 * max(1, calls // 50)):
                which = "plain" if block % 2 == 0 else "shared"
                http = plain if which == "plain" else shared
                before = await commands_processed(probe) if which == "shared" else 0
                for i in range(50):
                    started = time.perf_counter()
                    await http.get_channel(channels[i % len(channels)])
                    times[which].append(time.perf_counter() - started)
                if which == "shared":
                    # minus the INFO call itself
                    redis_commands += await commands_processed(probe) - before - 1
        finally:
            await plain.close()
            await shared.close()
        trips = limiter.calls + limiter.learned + guard.round_trips - trips_before
    p = {k: (percentile(v, 0.5), percentile(v, 0.99)) for k, v in times.items()}
    return {
        "calls_per_mode": len(times["plain"]),
        "plain_p50_ms": round(p["plain"][0] * 1000, 3),
        "plain_p99_ms": round(p["plain"][1] * 1000, 3),
        "shared_p50_ms": round(p["shared"][0] * 1000, 3),
        "shared_p99_ms": round(p["shared"][1] * 1000, 3),
        "added_p50_ms": round((p["shared"][0] - p["plain"][0]) * 1000, 3),
        "added_p99_ms": round((p["shared"][1] - p["plain"][1]) * 1000, 3),
        "p50_ratio": round(p["shared"][0] / p["plain"][0], 2),
        # Round trips our code makes; commands as Redis counts them (those a script runs too).
        "redis_round_trips_per_call": round(trips / len(times["shared"]), 3),
        "redis_commands_per_call": round(redis_commands / len(times["shared"]), 2),
    }


async def flood(  # noqa: PLR0917
    info: dict[str, Any], redis_url: str, prefix: str, procs: int, seconds: float, start_at: float
) -> None:
    """One process of the at-the-limit run (started by `at_limit`); all start at `start_at`."""
    channels = channels_of(info)
    redis = aioredis.Redis.from_url(redis_url) if redis_url != "-" else None
    http, _, _ = await client(info, redis, prefix, procs)
    ok = failed = 0
    await asyncio.sleep(max(0.0, start_at - time.time()))
    started = time.monotonic()
    deadline = started + seconds

    async def one_worker(k: int) -> None:
        nonlocal ok, failed
        i = k
        while time.monotonic() < deadline:
            try:
                await http.get_channel(channels[i % len(channels)])
                ok += 1
            except discord.HTTPException:
                failed += 1
            i += 10

    try:
        await asyncio.gather(*(one_worker(k) for k in range(10)))
    finally:
        await http.close()
        if redis is not None:
            await redis.aclose()
    elapsed = time.monotonic() - started
    print(orjson.dumps({"ok": ok, "failed": failed, "elapsed": elapsed}).decode(), flush=True)


async def at_limit(redis_url: str | None, procs: int, seconds: float) -> dict[str, Any]:
    proc, info = start_sandbox(
        "--guilds", "10", "--members", "3", "--route-limit", "100000", "--route-window", "1"
    )
    try:
        prefix = f"bench:{os.getpid()}:{time.monotonic_ns()}:"
        start_at = time.time() + 4  # after every process has started and logged in
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.rest_overhead",
                "--flood",
                orjson.dumps(info).decode(),
                redis_url or "-",
                prefix,
                str(procs),
                str(seconds),
                str(start_at),
                stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(procs)
        ]
        outs = [orjson.loads((await c.communicate())[0]) for c in children]
        elapsed = max(o["elapsed"] for o in outs)
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{info['control_url']}/_sandbox/stats") as r,
        ):
            stats = await r.json()
    finally:
        stop(proc)
    ok = sum(o["ok"] for o in outs)
    return {
        "ok_per_s": round(ok / elapsed, 1),
        "requests": stats["rest_requests"],
        "global_429": stats["rate_limited"].get("global", 0),
        "bucket_429": stats["rate_limited"].get("user", 0),
        "max_in_1s": stats["max_requests_in_1s"],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="calls per mode (overhead)")
    parser.add_argument("--procs", type=int, default=4, help="processes at the limit")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the flood")
    args = parser.parse_args()
    with backing() as urls:
        proc, info = start_sandbox(
            "--guilds",
            "10",
            "--members",
            "3",
            "--route-limit",
            "100000",
            "--route-window",
            "1",
            "--global-limit",
            "1000000",
        )
        try:
            cost = await overhead(info, urls["redis_url"], args.calls)
        finally:
            stop(proc)
        baseline = await at_limit(None, args.procs, args.seconds)
        ours = await at_limit(urls["redis_url"], args.procs, args.seconds)
    print(
        orjson.dumps(
            {
                "bench": "rest_overhead",
                "params": {"calls": args.calls, "procs": args.procs, "seconds": args.seconds},
                "overhead": cost,
                "at_limit": {"discordpy_only": baseline, "guildhouse": ours},
            }
        ).decode()
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--flood":
        _, _, info_s, url, prefix, procs_s, seconds_s, start_s = sys.argv
        asyncio.run(
            flood(orjson.loads(info_s), url, prefix, int(procs_s), float(seconds_s), float(start_s))
        )
    else:
        interrupt.main(lambda: asyncio.run(main()))
