"""Shared by the benchmarks: Redis/PostgreSQL URLs (embedded when not given), the processes
they start (sandbox, Guildhouse worker, baseline bot) and percentiles."""

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
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from bench import interrupt
from cluster.embedded import services

if TYPE_CHECKING:
    from cluster.workers import Supervisor

# How long a benchmark waits for a process it started to be up (every shard READY, a banner):
# generous, since it only bounds a run that would otherwise wait forever.
START_TIMEOUT = 300.0


class StartFailed(RuntimeError):
    """A process a benchmark started did not come up: it failed, or not within START_TIMEOUT."""


@contextlib.contextmanager
def backing() -> Iterator[dict[str, str]]:
    """PostgreSQL and Redis URLs: DATABASE_URL / REDIS_URL, else embedded servers on a temporary
    directory, stopped (and the directory removed) when the block is left, on SIGTERM too."""
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="guildhouse-bench-"))
        # A stop that comes while they start waits until they are up, then stops them.
        with interrupt.held():
            found = stack.enter_context(
                services(
                    Path(tmp),
                    postgres=not os.environ.get("DATABASE_URL"),
                    redis=not os.environ.get("REDIS_URL"),
                )
            )
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
    # One that hangs before its banner is killed at the deadline, which ends the read below.
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    late = threading.Timer(START_TIMEOUT, kill)
    late.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode()
            if line.startswith("SANDBOX "):
                info = orjson.loads(line[len("SANDBOX ") :])
                with urllib.request.urlopen(
                    f"{info['control_url']}/_sandbox/world", timeout=60
                ) as resp:
                    world = orjson.loads(resp.read())
                info["text_channels"] = [
                    c["id"] for g in world["guilds"] for c in g["channels"] if int(c["type"]) == 0
                ]
                return proc, info
    except BaseException:
        stop(proc)
        raise
    finally:
        late.cancel()
    stop(proc)
    if timed_out.is_set():
        raise StartFailed(f"the sandbox printed no banner within {START_TIMEOUT:.0f} s")
    raise StartFailed(f"the sandbox exited with code {proc.returncode} before its banner")


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
        await all_ready(sup)
        pid = next(iter(sup.workers.values())).pid
        assert pid is not None
        yield pid, prefix
    finally:
        await sup.stop()


async def all_ready(sup: Supervisor, *, within: float = START_TIMEOUT, every: float = 0.1) -> None:
    """Wait until every worker of `sup` is up with every one of its shards READY. Raises
    StartFailed at once when the supervisor gave up on a worker (it failed `max_failures`
    times in its window and is not restarted again), and when `within` s pass first."""
    from bot.shards import ShardState

    deadline = time.monotonic() + within
    while not sup.ready():
        failed = [w for w in sup.workers.values() if w.failed]
        if failed:
            raise StartFailed(
                "; ".join(
                    f"cluster {w.cluster_id} (shards {list(w.config.shard_ids)}) FAILED before "
                    f"READY: its worker stopped {len(w.failures)} times (last: "
                    f"{_ended(w.process)}) and the supervisor does not restart it again; "
                    "its log above says why"
                    for w in failed
                )
            )
        if time.monotonic() >= deadline:
            waiting = []
            for w in sup.workers.values():
                states = w.report.shard_states() if w.report is not None else {}
                late = {
                    sid: ShardState(s).name
                    for sid, (s, _) in states.items()
                    if s != ShardState.READY
                }
                if not w.alive():
                    waiting.append(
                        f"cluster {w.cluster_id}: its worker is not running "
                        f"({_ended(w.process)}, {w.restarts} restarts)"
                    )
                elif late:
                    waiting.append(f"cluster {w.cluster_id}: shards {late} (pid {w.pid})")
            raise StartFailed(
                f"not every shard was READY within {within:g} s: "
                + ("; ".join(waiting) or "no worker reported its shards")
            )
        await asyncio.sleep(every)


def _ended(process: Any) -> str:
    """How a worker's last process ended (a multiprocessing Process, or None)."""
    code = None if process is None else process.exitcode
    if code is None:
        return "not started" if process is None else "still running"
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


async def quiet_leveling(database_url: str, guild_ids: list[int]) -> None:
    """Set up leveling in these servers as the benchmarks measure it: 1 XP a message and no
    cooldown (every chat message is one counted award), and no level-up or achievement
    announcements (a benchmark measures chat counted and commands answered; an announcement
    is a message or a DM of its own, which the baseline doesn't send). Needs the migrations."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            """
            INSERT INTO xp_settings (guild_id, min_xp, max_xp, cooldown_seconds, announce,
                                     achievements_announce)
            VALUES ($1, 1, 1, 0, 'off', 'off')
            ON CONFLICT (guild_id) DO UPDATE SET min_xp = 1, max_xp = 1, cooldown_seconds = 0,
                announce = 'off', achievements_announce = 'off'
            """,
            [(g,) for g in guild_ids],
        )
    finally:
        await conn.close()


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
    process, which prints READY once connected; yields its pid, stops it afterwards. Raises
    StartFailed if it exits first, or is not READY within START_TIMEOUT s."""
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once; its pipe is read in a thread
        [sys.executable, "-m", module, "--baseline-child", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        try:
            # On a timeout, stop() below ends the read: the pipe closes with the process.
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), START_TIMEOUT)
        except TimeoutError:
            raise StartFailed(
                f"the baseline bot of {module} (pid {proc.pid}) was not READY within "
                f"{START_TIMEOUT:.0f} s"
            ) from None
        if line.strip() != "READY":
            code = proc.poll()
            if code is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    # It closed its output: it is exiting.
                    code = await asyncio.to_thread(proc.wait, 5)
            raise StartFailed(
                f"the baseline bot of {module} exited with code {code} before READY"
                if code is not None
                else f"the baseline bot of {module} printed {line.strip()[:200]!r}, not READY"
            )
        yield proc.pid
    finally:
        stop(proc)  # type: ignore[arg-type]
