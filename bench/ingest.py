"""Ingest: MESSAGE_CREATE with XP accounting and no reply. Worker CPU time per 1,000 events and
the highest sustained rate, Guildhouse (one worker process, every feature loaded) against a
plain discord.py bot, in the same run, against the same sandbox world and load.

The baseline is what a bot author would write: `AutoShardedBot` with discord.py's defaults
(`Intents.default()` plus message content for prefix commands; member and message caches as
they come), an `on_message` that counts XP with one Redis round trip (`ZINCRBY`) and then
processes commands. Guildhouse does what it does in production: the award script (cooldown,
duplicate check, stream, eight boards) and the flusher that moves every award to PostgreSQL.
Both count 1 XP per message with no cooldown here, so the XP on the boards is the number of
messages handled, which is how the bench knows a bot has kept up.

Both bots stay connected for the whole run, each to its own sandbox of the same world. The CPU
figure is taken in `--rounds` rounds that alternate between them (who goes first alternates
too), pooled per bot, so a slow minute of a shared machine falls on both; the highest sustained
rate is then probed for each in turn. A rate is sustained when every message sent at that rate
is counted within `--drain` seconds after the last one was sent. The sandboxes and the load
generator run in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import psutil
import redis.asyncio as aioredis

from bench import interrupt
from bench.common import (
    alternating,
    backing,
    baseline_bot,
    guildhouse_worker,
    places,
    quiet_leveling,
)
from sandbox import Sandbox, SandboxConfig

SHARDS = 2
CHAT = ("gg", "anyone up for a raid tonight?", "brb", "nice roll", "who has the map", "lol")
BASELINE_KEY = "bench:ingest:baseline:xp"


@dataclass
class Run:
    rate: float
    sent: int
    counted: int
    cpu_s: float
    redis_cpu_s: float
    seconds: float

    @property
    def sustained(self) -> bool:
        return self.counted >= self.sent

    @classmethod
    def pooled(cls, runs: list[Run]) -> Run:
        return cls(
            runs[0].rate,
            sum(r.sent for r in runs),
            sum(r.counted for r in runs),
            sum(r.cpu_s for r in runs),
            sum(r.redis_cpu_s for r in runs),
            sum(r.seconds for r in runs),
        )

    def row(self) -> dict[str, Any]:
        per_k = 1000 / max(1, self.counted)
        return {
            "offered_per_s": self.rate,
            "sent": self.sent,
            "counted": self.counted,
            "worker_cpu_ms_per_1000": round(self.cpu_s * per_k * 1000, 1),
            "redis_cpu_ms_per_1000": round(self.redis_cpu_s * per_k * 1000, 1),
            "seconds": round(self.seconds, 2),
        }


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def _redis_process(redis_url: str) -> psutil.Process | None:
    port = redis_url.rsplit(":", 1)[-1].split("/", maxsplit=1)[0]
    for p in psutil.process_iter(["name", "cmdline"]):
        if "redis-server" in (p.info["name"] or "") and any(
            port in part for part in p.info["cmdline"] or []
        ):
            return p
    return None


@dataclass
class Target:
    """A bot under load: the sandbox it is on, its process, Redis's, and how to count."""

    sb: Sandbox
    pid: int
    redis_proc: psutil.Process | None
    counted: Callable[[], Awaitable[int]]


async def offer(t: Target, rate: float, duration: float, drain: float) -> Run:
    sb, redis_proc, counted = t.sb, t.redis_proc, t.counted
    rng = random.Random(int(rate))
    where = places(sb)
    proc = psutil.Process(t.pid)
    before = await counted()
    cpu0 = _cpu(proc)
    rcpu0 = _cpu(redis_proc) if redis_proc else 0.0
    started = time.monotonic()
    n = int(rate * duration)
    for i in range(n):
        await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
        channel, people = where[i % len(where)]
        await sb.send_message(channel, rng.choice(people), rng.choice(CHAT))
    deadline = time.monotonic() + drain
    done = await counted() - before
    while done < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        done = await counted() - before
    seconds = time.monotonic() - started
    cpu = _cpu(proc) - cpu0
    rcpu = (_cpu(redis_proc) - rcpu0) if redis_proc else 0.0
    return Run(rate, n, done, cpu, rcpu, seconds)


async def _sum_scores(redis: aioredis.Redis, key: str) -> int:
    rows = await redis.zrange(key, 0, -1, withscores=True)
    return int(sum(score for _, score in rows))


# -- the two bots ------------------------------------------------------------------------------


async def _baseline_child(api_url: str, gateway_url: str, token: str, redis_url: str) -> None:
    import discord
    from discord.ext import commands

    from bot.dpy import urls

    urls.install(api_url, gateway_url)
    intents = discord.Intents.default()
    intents.message_content = True
    bot = commands.AutoShardedBot(command_prefix="!", intents=intents, shard_count=SHARDS)
    redis = aioredis.Redis.from_url(redis_url)

    @bot.event
    async def on_message(message: discord.Message) -> None:
        if message.author.bot:
            return
        if message.guild is not None:
            await redis.zincrby(BASELINE_KEY, 1, str(message.author.id))
        await bot.process_commands(message)

    @bot.event
    async def on_ready() -> None:
        print("READY", flush=True)

    await bot.start(token)


def baseline(sb: Sandbox, redis_url: str) -> contextlib.AbstractAsyncContextManager[int]:
    return baseline_bot("bench.ingest", sb.api_url, sb.gateway_url, sb.token, redis_url)


# -- the run -------------------------------------------------------------------------------------


async def _probe(
    t: Target, rates: list[float], duration: float, drain: float
) -> tuple[float, list[dict[str, Any]]]:
    best, rows = 0.0, []
    for rate in rates:
        run = await offer(t, rate, duration, drain)
        rows.append({**run.row(), "sustained": run.sustained})
        if not run.sustained:
            break
        best = rate
    return best, rows


async def run(  # noqa: PLR0917 - the command line's options, in order
    rates: list[float],
    duration: float,
    drain: float,
    guilds: int,
    cpu_rate: float,
    warmup: float,
    rounds: int,
) -> dict[str, Any]:
    config = SandboxConfig(guilds=guilds, members=20, max_concurrency=SHARDS, identify_interval=0.2)
    result: dict[str, Any] = {
        "bench": "ingest",
        "params": {
            "guilds": guilds,
            "duration_s": duration,
            "cpu_rate_per_s": cpu_rate,
            "warmup_s": warmup,
            "rounds": rounds,
        },
    }
    with backing() as urls:
        from bot.entry import apply_migrations
        from ipc.client import Keys
        from ipc.leaderboard import Leaderboard

        redis = aioredis.Redis.from_url(urls["redis_url"])
        redis_proc = _redis_process(urls["redis_url"])
        await redis.delete(BASELINE_KEY)
        try:
            async with Sandbox(config) as sb_base, Sandbox(config) as sb_ours:
                await apply_migrations(urls["database_url"])
                await quiet_leveling(urls["database_url"], list(sb_ours.world.guilds))
                async with (
                    baseline(sb_base, urls["redis_url"]) as base_pid,
                    guildhouse_worker(
                        sb_ours.token,
                        sb_ours.api_url,
                        sb_ours.gateway_url,
                        urls,
                        shards=SHARDS,
                        name="ingest",
                    ) as (ours_pid, prefix),
                ):
                    board = Leaderboard(redis, Keys(prefix)).board_key(None, "alltime")

                    async def base_count() -> int:
                        return await _sum_scores(redis, BASELINE_KEY)

                    async def ours_count() -> int:
                        return await _sum_scores(redis, board)

                    names = ["discordpy", "guildhouse"]
                    targets = [
                        Target(sb_base, base_pid, redis_proc, base_count),
                        Target(sb_ours, ours_pid, redis_proc, ours_count),
                    ]
                    for target in targets:
                        await offer(target, cpu_rate, warmup, drain)
                    runs: list[list[Run]] = [[] for _ in targets]
                    for i in alternating(rounds, len(targets)):
                        runs[i].append(await offer(targets[i], cpu_rate, duration, drain))
                    for name, target, done in zip(names, targets, runs, strict=True):
                        best, rows = await _probe(target, rates, duration, drain)
                        result[name] = {
                            "at_cpu_rate": Run.pooled(done).row(),
                            "highest_sustained_per_s": best,
                            "probes": rows,
                        }
        finally:
            await redis.aclose()
    ours, base = result["guildhouse"]["at_cpu_rate"], result["discordpy"]["at_cpu_rate"]
    result["cpu_per_event_ratio"] = round(
        ours["worker_cpu_ms_per_1000"] / base["worker_cpu_ms_per_1000"], 3
    )
    result["sustained_rate_ratio"] = round(
        result["guildhouse"]["highest_sustained_per_s"]
        / max(1.0, result["discordpy"]["highest_sustained_per_s"]),
        2,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rates", default="500,1000,2000,4000,8000", help="rates to probe (messages per second)"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per rate")
    parser.add_argument(
        "--drain", type=float, default=3.0, help="seconds after the last message to catch up"
    )
    parser.add_argument(
        "--cpu-rate", type=float, default=1000.0, help="rate for the CPU figure (per second)"
    )
    parser.add_argument("--guilds", type=int, default=60, help="guilds in the sandbox world")
    parser.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="seconds of load before measuring (every member seen once: steady state)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="rounds of --duration s per bot for the CPU figure, alternating between the bots",
    )
    args = parser.parse_args()
    try:
        rates = sorted(float(r) for r in args.rates.split(","))
    except ValueError:
        parser.error("--rates is a comma-separated list of numbers, e.g. 250,500,1000")
    if not rates or rates[0] <= 0 or args.cpu_rate <= 0 or args.duration <= 0:
        parser.error("--rates, --cpu-rate and --duration must be positive")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    print(
        orjson.dumps(
            asyncio.run(
                run(
                    rates,
                    args.duration,
                    args.drain,
                    args.guilds,
                    args.cpu_rate,
                    args.warmup,
                    args.rounds,
                )
            )
        ).decode()
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline-child":
        asyncio.run(_baseline_child(*sys.argv[2:6]))
    else:
        interrupt.main(main)
