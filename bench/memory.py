"""Memory per 1,000 guilds at steady state: a Guildhouse worker against a discord.py bot with
discord.py's defaults, in the same run, against the same sandbox worlds.

The baseline is what a leveling/tabletop bot's author would write: `AutoShardedBot` with
`Intents.default()` plus the members and message-content intents (names on leaderboards,
prefix commands), and discord.py's defaults for everything else: the member cache, chunking
every guild at startup, a 1,000-message cache.

Each bot connects to a world of `--small` guilds and then one of `--large` guilds; the RSS
difference over the guild difference is the cost per guild, which leaves out the fixed cost
of the interpreter and libraries. RSS is read with psutil after every shard is READY and the
process has been quiet for `--settle` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from typing import Any

import orjson
import psutil

from bench import interrupt
from bench.common import backing, guildhouse_worker, start_sandbox, stop

SHARDS = 2


def _world_args(guilds: int, members: int) -> list[str]:
    return [
        "--guilds",
        str(guilds),
        "--members",
        str(members),
        "--max-concurrency",
        str(SHARDS),
        "--identify-interval",
        "0.2",
        "--route-limit",
        "100000",
    ]


def _rss_after(pid: int, settle: float) -> int:
    time.sleep(settle)
    return int(psutil.Process(pid).memory_info().rss)


def measure_baseline(info: dict[str, Any], settle: float) -> int:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.memory",
            "--baseline-child",
            info["api_url"],
            info["gateway_url"],
            info["token"],
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "READY":
                break
        else:
            raise RuntimeError("the baseline bot exited before READY")
        return _rss_after(proc.pid, settle)
    finally:
        stop(proc)  # type: ignore[arg-type]


async def _baseline_child(api_url: str, gateway_url: str, token: str) -> None:
    import discord
    from discord.ext import commands

    from bot.dpy import urls

    urls.install(api_url, gateway_url)
    intents = discord.Intents.default()
    intents.members = True
    intents.message_content = True
    bot = commands.AutoShardedBot(command_prefix="!", intents=intents, shard_count=SHARDS)

    @bot.event
    async def on_ready() -> None:  # after every shard is READY and chunked
        print("READY", flush=True)

    await bot.start(token)


async def measure_guildhouse(info: dict[str, Any], urls: dict[str, str], settle: float) -> int:
    async with guildhouse_worker(
        info["token"], info["api_url"], info["gateway_url"], urls, shards=SHARDS, name="mem"
    ) as (pid, _):
        return await asyncio.to_thread(_rss_after, pid, settle)


async def run(small: int, large: int, members: int, settle: float) -> dict[str, Any]:
    rss: dict[str, dict[int, int]] = {"guildhouse": {}, "discordpy": {}}
    with backing() as urls:
        for guilds in (small, large):
            proc, info = start_sandbox(*_world_args(guilds, members))
            try:
                rss["discordpy"][guilds] = await asyncio.to_thread(measure_baseline, info, settle)
                rss["guildhouse"][guilds] = await measure_guildhouse(info, urls, settle)
            finally:
                stop(proc)
    per_k = {k: (v[large] - v[small]) / (large - small) * 1000 / 2**20 for k, v in rss.items()}
    return {
        "bench": "memory",
        "params": {"small": small, "large": large, "members": members, "shards": SHARDS},
        "guildhouse_mib_per_1000_guilds": round(per_k["guildhouse"], 2),
        "discordpy_mib_per_1000_guilds": round(per_k["discordpy"], 2),
        "ratio": round(per_k["guildhouse"] / per_k["discordpy"], 3),
        "rss_mib": {k: {str(g): round(b / 2**20, 1) for g, b in v.items()} for k, v in rss.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=100, help="guilds in the small world")
    parser.add_argument("--large", type=int, default=1000, help="guilds in the large world")
    parser.add_argument("--members", type=int, default=100, help="members of a typical guild")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait after READY")
    args = parser.parse_args()
    if args.large <= args.small:
        parser.error("--large must be more than --small")
    print(
        orjson.dumps(asyncio.run(run(args.small, args.large, args.members, args.settle))).decode()
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline-child":
        asyncio.run(_baseline_child(*sys.argv[2:5]))
    else:
        interrupt.main(main)
