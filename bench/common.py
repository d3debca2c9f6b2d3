"""Shared by the benchmarks: Redis/PostgreSQL URLs (embedded when not given) and percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import secrets
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson

from cluster.embedded import services


@contextlib.contextmanager
def backing() -> Iterator[dict[str, str]]:
    with (
        tempfile.TemporaryDirectory(prefix="guildhouse-bench-") as tmp,
        services(
            Path(tmp),
            postgres=not os.environ.get("DATABASE_URL"),
            redis=not os.environ.get("REDIS_URL"),
        ) as found,
    ):
        yield {
            "database_url": os.environ.get("DATABASE_URL") or found["postgres"].url,
            "redis_url": os.environ.get("REDIS_URL") or found["redis"].url,
        }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _at_least(n: int, p: float, k: int) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0 or p >= 1.0:
        return 1.0
    if p <= 0.0 or k > n:
        return 0.0
    log_p, log_q, top = math.log(p), math.log1p(-p), math.lgamma(n + 1)

    def term(i: int) -> float:
        return math.exp(
            top - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        )

    return min(1.0, sum(term(i) for i in range(k, n + 1)))


def smoothed_percentile(values: list[float], q: float) -> float:
    """The `q` percentile as the mean of `percentile(resample, q)` over every bootstrap
    resample of `values`, computed exactly rather than by resampling: a weighted mean of the
    order statistics around the `q` one (binomial weights, as the Harrell-Davis estimator's
    are beta ones). It estimates the same percentile as `percentile`, with less of the luck of
    which one sample happens to sit at its rank: of 600 samples the p99 is the 6th slowest,
    and how many samples fall above the true p99 is itself Binomial(600, 0.01), 6 +- 2.4."""
    ordered = sorted(values)
    n = len(ordered)
    rank = min(n - 1, int(q * n)) + 1  # percentile's index, counted from 1
    total, below = 0.0, 0.0
    for j, value in enumerate(ordered):
        cdf = _at_least(n, (j + 1) / n, rank)  # P(the resample's rank-th value <= value)
        total += (cdf - below) * value
        below = cdf
    return total


def ratio_interval(
    ours: list[float], base: list[float], q: float, *, resamples: int = 1000, seed: int = 1
) -> tuple[float, float]:
    """The 5th and 95th percentiles of percentile(ours, q) / percentile(base, q) over
    bootstrap resamples of both: the spread of the ratio that sampling alone explains."""
    rng = random.Random(seed)

    def resampled(values: list[float]) -> float:
        return percentile(rng.choices(values, k=len(values)), q)

    ratios = sorted(resampled(ours) / resampled(base) for _ in range(resamples))
    return percentile(ratios, 0.05), percentile(ratios, 0.95)


def alternating(rounds: int, sides: int) -> Iterator[int]:
    """The side (0..sides-1) to measure next, for `rounds` rounds in which every side is
    measured once and who goes first alternates: a slow minute of a shared machine falls on
    all sides, and none always runs right after another's load."""
    for r in range(rounds):
        yield from range(sides) if r % 2 == 0 else reversed(range(sides))


def start_sandbox(*args: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Run `python -m sandbox` on a free port; returns the process and its banner."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode()
        if line.startswith("SANDBOX "):
            info = orjson.loads(line[len("SANDBOX ") :])
            with urllib.request.urlopen(f"{info['control_url']}/_sandbox/world") as resp:
                world = orjson.loads(resp.read())
            info["text_channels"] = [
                c["id"] for g in world["guilds"] for c in g["channels"] if int(c["type"]) == 0
            ]
            return proc, info
    proc.kill()
    raise RuntimeError("the sandbox did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextlib.asynccontextmanager
async def guildhouse_worker(
    token: str,
    api_url: str,
    gateway_url: str,
    urls: dict[str, str],
    *,
    shards: int,
    name: str,
    sync: bool = False,
    settings: dict[str, str] | None = None,
) -> AsyncIterator[tuple[int, str]]:
    """One Guildhouse worker process (all features loaded) for `shards` shards, started by the
    launcher's supervisor as `guildhouse run` would; yields its pid and Redis key prefix once
    every shard is READY. `settings` are more of the worker's settings (cluster/settings.py)."""
    from bot.entry import apply_migrations, sync_commands
    from cluster.launcher import BackingUrls, DiscordEndpoint, worker_configs
    from cluster.settings import load
    from cluster.workers import Supervisor

    await apply_migrations(urls["database_url"])
    prefix = f"b:{name}:{secrets.token_hex(4)}:"  # REDIS_PREFIX has at most 32 characters
    settings = load(
        {
            "SHARD_COUNT": str(shards),
            "CLUSTER_COUNT": "1",
            "REDIS_PREFIX": prefix,
            "LOG_LEVEL": "WARNING",
            **(settings or {}),
        },
        config_file=None,
    )
    endpoint = DiscordEndpoint(token, api_url, gateway_url, 0.2)
    configs = worker_configs(
        settings,
        endpoint=endpoint,
        urls=BackingUrls(urls["database_url"], urls["redis_url"]),
        shard_count=shards,
        gateway_url=gateway_url,
        max_concurrency=shards,
    )
    if sync:
        await sync_commands(configs[0])
    sup = Supervisor(configs, log_level="WARNING", log_format="json")
    # The worker logs to its stdout, as in production; here that would mix its log lines with
    # the benchmark's one JSON line, so it starts with stderr as its stdout.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        await sup.start()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    try:
        while not sup.ready():  # noqa: ASYNC110 - the worker is another process
            await asyncio.sleep(0.1)
        pid = next(iter(sup.workers.values())).pid
        assert pid is not None
        yield pid, prefix
    finally:
        await sup.stop()


def places(sb: Any) -> list[tuple[int, list[int]]]:
    """(text channel everyone can write in, its members) of a sandbox.Sandbox's world."""
    out = []
    for guild in sb.world.guilds.values():
        channels = [c.id for c in guild.channels.values() if c.type == 0 and not c.overwrites]
        people = [m for m in guild.members if m != sb.world.bot.id]
        out += [(c, people) for c in channels if people]
    return out


@contextlib.asynccontextmanager
async def baseline_bot(module: str, *args: str) -> AsyncIterator[int]:
    """A benchmark's baseline bot: `python -m <module> --baseline-child ARGS...` in its own
    process, which prints READY once connected; yields its pid, stops it afterwards."""
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once; its pipe is read in a thread
        [sys.executable, "-m", module, "--baseline-child", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        if line.strip() != "READY":
            raise RuntimeError(f"the baseline bot of {module} did not start")
        yield proc.pid
    finally:
        stop(proc)  # type: ignore[arg-type]
