"""`python -m bench scale`: a big world on one box. 20,000 servers (typical sizes, a few with
50,000+ members) over 32 shards in 8 worker processes with `max_concurrency` 4, against the
sandbox; prints a table and one JSON line.

- **READY**: until every shard of every worker is READY, against Discord's floor for the run,
  ceil(shards / max_concurrency) x the identify interval (goal <= 1.1).
- **RSS per 1,000 servers**: cluster 0's worker against a discord.py bot with discord.py's
  defaults (as `bench memory`'s baseline: member cache, chunking at start, message cache) on the
  same shards of the same world, one after the other in the same run (goal <= 0.15). Both are
  whole-process RSS over the servers of those shards, the interpreter and libraries included.
- **Gather p99 over 8 clusters** against a Redis PING (goal <= 3): `bench rpc_gather`'s
  measurement with as many clusters as workers, after the workers stopped.
- **REST window**: members send `!ping` in channels of every shard faster than 50 answers a
  second can go out; the sandbox counts the most requests it received in any second (never
  above 50), and the op 9s (IDENTIFYs too fast) and invalid requests of the whole run.

Prints the table (Markdown) and then one JSON line with every figure; the workers' log lines
go to stderr.

`--guilds`, `--large`, `--shards`, `--clusters` make a smaller world (the test suite runs one).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import orjson
import psutil

from bench import interrupt, rpc_gather
from bench.common import START_TIMEOUT, all_ready, backing, guildhouse_worker, places
from bot.entry import apply_migrations
from cluster.launcher import BackingUrls, DiscordEndpoint, worker_configs
from cluster.settings import load
from cluster.workers import Supervisor
from sandbox import Sandbox, SandboxConfig
from sandbox.world import Member, User

GOALS = {"ready_over_floor": 1.1, "rss_ratio": 0.15, "gather_p99_over_ping": 3.0, "rest_max": 50}


def grow(sb: Sandbox, count: int, members: int, shards: int) -> list[int]:
    """Make `count` of the world's servers large, `members` members each (new users, shared
    between them), spread over the shards (the first on shard 0, so cluster 0 has one). Before
    anyone connects. Returns their ids."""
    world = sb.world
    # One millisecond apart: the ids of one millisecond wrap after 4,096.
    users = [User(world.ids.at(1_650_000_000 + i / 1000), f"crowd{i}") for i in range(members)]
    for u in users:
        world.users[u.id] = u
    chosen = []
    for k in range(count):
        shard = k * shards // count
        guild = next(
            (g for g in world.guilds.values() if g.shard(shards) == shard and g not in chosen),
            None,
        )
        if guild is not None:
            chosen.append(guild)
    for guild in chosen:
        for u in users:
            guild.members.setdefault(u.id, Member(u.id, [], guild.joined_at))
    return [g.id for g in chosen]


def _settings(shards: int, clusters: int) -> Any:
    return load(
        {
            "SHARD_COUNT": str(shards),
            "CLUSTER_COUNT": str(clusters),
            "REDIS_PREFIX": f"scale:{os.getpid()}:",
            "LOG_LEVEL": "WARNING",
        },
        config_file=None,
    )


async def _rest_load(sb: Sandbox, seconds: float, rate: float) -> None:
    """`!ping` from many members in channels of every server, `rate` a second, for `seconds`."""
    spots = places(sb)
    every = 1.0 / rate
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        channel, people = spots[n % len(spots)]
        author = people[(n // len(spots)) % len(people)]
        asyncio.create_task(sb.send_message(channel, author, "!ping"))  # noqa: RUF006
        n += 1
        await asyncio.sleep(every)
    await asyncio.sleep(3)  # answers still in the window


async def run_cluster(
    sb: Sandbox, urls: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    """Start the workers, time READY, read their RSS, drive the REST load, stop them."""
    settings = _settings(args.shards, args.clusters)
    endpoint = DiscordEndpoint(sb.token, sb.api_url, sb.gateway_url, args.interval)
    configs = worker_configs(
        settings,
        endpoint=endpoint,
        urls=BackingUrls(urls["database_url"], urls["redis_url"]),
        shard_count=args.shards,
        gateway_url=sb.gateway_url,
        max_concurrency=args.max_concurrency,
    )
    per_shard = Counter(g.shard(args.shards) for g in sb.world.guilds.values())
    guilds = {c.cluster_id: sum(per_shard[s] for s in c.shard_ids) for c in configs}
    sup = Supervisor(configs, log_level="WARNING", log_format="json")
    started = time.monotonic()
    # The workers log to their stdout, as in production: here that is stderr, so that stdout
    # is the table and the JSON line.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        await sup.start()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    try:
        # The floor twice over on top: a run with many shards may take long to be READY.
        floor = math.ceil(args.shards / args.max_concurrency) * args.interval
        await all_ready(sup, within=START_TIMEOUT + 2 * floor, every=0.05)
        ready_s = time.monotonic() - started
        await asyncio.sleep(args.settle)
        rss = {}
        for cid, worker in sup.workers.items():
            assert worker.pid is not None
            rss[cid] = psutil.Process(worker.pid).memory_info().rss
        await _rest_load(sb, args.rest_seconds, args.rest_rate)
    finally:
        await sup.stop()
    return {
        "ready_s": ready_s,
        "rss": rss,
        "guilds": guilds,
        "shards_of_0": list(configs[0].shard_ids),
    }


def _baseline(sb_info: dict[str, Any], shard_ids: list[int], shards: int, settle: float) -> int:
    """RSS of a discord.py bot with its defaults on `shard_ids`, after READY (and chunking)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.scale",
            "--baseline-child",
            orjson.dumps({**sb_info, "shard_ids": shard_ids, "shards": shards}).decode(),
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
            raise RuntimeError("the discord.py baseline exited before READY")
        time.sleep(settle)
        return int(psutil.Process(proc.pid).memory_info().rss)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _baseline_child(raw: str) -> None:
    import discord
    from discord.ext import commands

    from bot.dpy import urls

    info = orjson.loads(raw)
    urls.install(info["api_url"], info["gateway_url"])
    intents = discord.Intents.default()
    intents.members = True
    intents.message_content = True
    bot = commands.AutoShardedBot(
        command_prefix="!",
        intents=intents,
        shard_ids=info["shard_ids"],
        shard_count=info["shards"],
    )

    @bot.event
    async def on_ready() -> None:  # after every shard is READY and chunked
        print("READY", flush=True)

    await bot.start(info["token"])


async def _small_world(urls: dict[str, str], args: argparse.Namespace, shards: int) -> list[int]:
    """RSS of a Guildhouse worker and of the discord.py baseline on a world of `--small`
    servers over the same number of shards: the fixed cost the per-server figures leave out."""
    config = SandboxConfig(
        guilds=args.small,
        members=args.members,
        max_concurrency=shards,
        identify_interval=0.2,
        shards=shards,
    )
    async with Sandbox(config) as sb:
        async with guildhouse_worker(
            sb.token, sb.api_url, sb.gateway_url, urls, shards=shards, name="scale"
        ) as (pid, _):
            await asyncio.sleep(args.settle)
            gh = int(psutil.Process(pid).memory_info().rss)
        info = {"api_url": sb.api_url, "gateway_url": sb.gateway_url, "token": sb.token}
        dpy = await asyncio.to_thread(_baseline, info, list(range(shards)), shards, args.settle)
    return [gh, dpy]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with backing() as urls:
        await apply_migrations(urls["database_url"])
        config = SandboxConfig(
            guilds=args.guilds,
            members=args.members,
            max_concurrency=args.max_concurrency,
            identify_interval=args.interval,
            shards=args.shards,
        )
        async with Sandbox(config) as sb:
            large = grow(sb, args.large, args.large_members, args.shards)
            cluster = await run_cluster(sb, urls, args)
            stats = sb.stats()
            info = {"api_url": sb.api_url, "gateway_url": sb.gateway_url, "token": sb.token}
            shard_ids = cluster["shards_of_0"]
            # Its IDENTIFYs wait out the workers' last ones in the sandbox's buckets.
            base_rss = await asyncio.to_thread(_baseline, info, shard_ids, args.shards, args.settle)
        small = await _small_world(urls, args, len(shard_ids))
        gather = {"gather_p99_over_ping_p99": None}  # one cluster: nobody to gather from
        if args.clusters > 1:
            gather = await rpc_gather.run(urls["redis_url"], args.clusters, args.gather_rounds, 1)
    return figures(args, cluster, stats, base_rss, small, gather, len(large))


def figures(  # noqa: PLR0917 - the parts of one run
    args: argparse.Namespace,
    cluster: dict[str, Any],
    stats: dict[str, Any],
    base_rss: int,
    small: list[int],
    gather: dict[str, Any],
    large: int,
) -> dict[str, Any]:
    floor = math.ceil(args.shards / args.max_concurrency) * args.interval
    g0 = cluster["guilds"][0]
    mib = 2**20
    # Per 1,000 servers over the fixed cost: (RSS on cluster 0's servers - RSS on the small
    # world) / (the difference in servers).
    extra = max(1, g0 - args.small)
    gh_per_k = (cluster["rss"][0] - small[0]) / extra * 1000 / mib
    dpy_per_k = (base_rss - small[1]) / extra * 1000 / mib
    params = (
        "guilds",
        "members",
        "large",
        "large_members",
        "shards",
        "clusters",
        "max_concurrency",
        "interval",
        "small",
    )
    return {
        "bench": "scale",
        "params": {k: getattr(args, k) for k in params},
        "large_guilds": large,
        "ready_s": round(cluster["ready_s"], 2),
        "floor_s": floor,
        "ready_over_floor": round(cluster["ready_s"] / floor, 3),
        "worker_rss_mib": {str(k): round(v / mib, 1) for k, v in cluster["rss"].items()},
        "worker_guilds": {str(k): v for k, v in cluster["guilds"].items()},
        "small_world_rss_mib": {
            "guildhouse": round(small[0] / mib, 1),
            "discordpy": round(small[1] / mib, 1),
        },
        "discordpy_rss_mib": round(base_rss / mib, 1),
        "guildhouse_mib_per_1000": round(gh_per_k, 2),
        "discordpy_mib_per_1000": round(dpy_per_k, 2),
        "rss_ratio": round(gh_per_k / dpy_per_k, 3) if dpy_per_k > 0 else None,
        "gather_p99_over_ping": gather["gather_p99_over_ping_p99"],
        # The floor under the bus, over the same clusters: bare redis-py answering one PUBLISH
        # (bench rpc_gather), and the bus over it.
        "gather_floor_p99_over_ping": gather.get("floor_p99_over_ping_p99"),
        "gather_p99_over_floor": gather.get("gather_p99_over_floor_p99"),
        "rest_max": int(stats["max_requests_in_1s"]),
        "rest_requests": int(stats["rest_requests"]),
        "rest_429": int(sum(stats["rate_limited"].values())),
        "op9": int(stats["op9"]),
        "invalid_requests": int(stats["invalid_requests"]),
    }


def table(r: dict[str, Any]) -> str:
    p = r["params"]
    rows = [
        ("all READY", f"{r['ready_s']} s", f"floor {r['floor_s']} s", r["ready_over_floor"]),
        (
            "RSS per 1,000 servers",
            f"{r['guildhouse_mib_per_1000']} MiB",
            f"discord.py {r['discordpy_mib_per_1000']} MiB",
            r["rss_ratio"],
        ),
        (
            "gather p99",
            f"{p['clusters']} clusters (bare pub/sub: {r['gather_floor_p99_over_ping']})",
            "Redis PING p99",
            r["gather_p99_over_ping"],
        ),
        (
            "REST window",
            f"{r['rest_requests']} requests",
            f"most in 1 s ({r['rest_429']} 429s)",
            r["rest_max"],
        ),
    ]
    goals = [GOALS[k] for k in ("ready_over_floor", "rss_ratio", "gather_p99_over_ping")]
    goals.append(GOALS["rest_max"])
    head = (
        f"scale: {p['guilds']} servers ({r['large_guilds']} with {p['large_members']}+ "
        f"members), {p['shards']} shards, {p['clusters']} workers, max_concurrency "
        f"{p['max_concurrency']}; op9 {r['op9']}, invalid requests {r['invalid_requests']}"
    )
    lines = [head, "", "| figure | measured | against | value | goal | met |", "|---" * 6 + "|"]
    for (name, measured, against, value), goal in zip(rows, goals, strict=True):
        met = "n/a" if value is None else "yes" if value <= goal else "NO"
        lines.append(f"| {name} | {measured} | {against} | {value} | <= {goal} | {met} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guilds", type=int, default=20_000, help="servers in the world")
    parser.add_argument("--members", type=int, default=20, help="members of a typical server")
    parser.add_argument("--large", type=int, default=4, help="servers made large")
    parser.add_argument("--large-members", type=int, default=50_000, help="members of each")
    parser.add_argument("--shards", type=int, default=32)
    parser.add_argument("--clusters", type=int, default=8, help="worker processes")
    parser.add_argument("--max-concurrency", type=int, default=4)
    parser.add_argument("--interval", type=float, default=5.0, help="identify interval (s)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after READY")
    parser.add_argument(
        "--small", type=int, default=100, help="servers of the world that gives the fixed RSS"
    )
    parser.add_argument("--rest-seconds", type=float, default=10.0, help="REST load duration")
    parser.add_argument("--rest-rate", type=float, default=60.0, help="!ping a second")
    parser.add_argument("--gather-rounds", type=int, default=1000)
    args = parser.parse_args()
    if args.clusters > args.shards or args.guilds < args.large:
        parser.error("need --clusters <= --shards and --large <= --guilds")
    if args.small * args.clusters >= args.guilds:
        parser.error("need --small below a worker's share of --guilds")
    result = asyncio.run(run(args))
    print(table(result))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline-child":
        asyncio.run(_baseline_child(sys.argv[2]))
    else:
        interrupt.main(main)
