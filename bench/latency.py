"""Command latency: p50/p99/p99.9 of a prefix and a slash command at 25 %, 50 % and 90 % of the
highest sustained rate, Guildhouse (one worker process) against a plain discord.py bot, at the
same offered load, in the same run.

The load generator runs in this process, with two sandboxes of the same world, one for each
bot; each bot runs in its own process, and both stay connected for the whole run. Each load is
offered to both bots at once (`together`): the same commands in the same channels from the same
people, half a period apart, at a moment of each period that wanders at random, so a pause of
the machine, short or long, or a noise that comes back on a clock of its own, falls on both
alike.
The processes are not pinned to CPUs: on two cores every layout tried put something where a
deployment doesn't (bench/README.md, "Where the scheduler puts the bots, and no fixed phase").
Latency is from the message (or interaction) entering the sandbox to the bot's first answer in
that channel. The highest sustained rate is the highest rate of a doubling series at which the
baseline answers at least 99 % of the commands with a p99 under a second; Discord's limits
apply (50 REST calls per second in all, 5 messages per 5 s per channel; interaction responses
are exempt from the global limit), so prefix commands top out where replies do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import random
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import psutil

from bench import interrupt
from bench.common import (
    backing,
    baseline_bot,
    guildhouse_worker,
    percentile,
    places,
    quiet_leveling,
    ratio_interval,
    smoothed_percentile,
)
from sandbox import Sandbox, SandboxConfig

SHARDS = 2
GOAL_SHARE = 50  # % of the highest sustained rate at which the issue sets the p99 goal


@dataclass
class Load:
    offered: float
    sent: int
    answered: int
    p50_ms: float | None
    p99_ms: float | None
    p99_smoothed_ms: float | None
    p999_ms: float | None
    cpu_s: float
    trips: list[float] = field(default_factory=list, repr=False)

    @classmethod
    def of(cls, offered: float, sent: int, trips: list[float], cpu_s: float) -> Load:
        def ms(q: float) -> float | None:
            return round(percentile(trips, q) * 1000, 1) if trips else None

        smoothed = round(smoothed_percentile(trips, 0.99) * 1000, 1) if trips else None
        return cls(offered, sent, len(trips), ms(0.5), ms(0.99), smoothed, ms(0.999), cpu_s, trips)

    def sustained(self) -> bool:
        return self.answered >= 0.99 * self.sent and (self.p99_ms or 1e9) < 1000

    def row(self) -> dict[str, Any]:
        return {
            "offered_per_s": self.offered,
            "sent": self.sent,
            "answered": self.answered,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "p99_smoothed_ms": self.p99_smoothed_ms,
            "p99.9_ms": self.p999_ms,
            "bot_cpu_s": round(self.cpu_s, 2),
        }


def everyone_everywhere(sb: Sandbox) -> list[tuple[int, int]]:
    """(channel, author) pairs with every channel and every person in them at least once,
    written by someone with no roles who doesn't own the guild where there is one (whose
    command the throttles count: Guildhouse exempts moderators, so their commands would warm
    no throttle window)."""
    plain = {
        channel: [
            p
            for p in people
            if p != sb.world.guilds[guild_id].owner_id
            and not sb.world.guilds[guild_id].members[p].roles
        ]
        for guild_id, channels in _channels_by_guild(sb).items()
        for channel, people in channels
    }
    pairs, seen = [], set()
    for channel, people in places(sb):
        pick = plain[channel] or people
        author = next((p for p in pick if p not in seen), pick[0])
        pairs.append((channel, author))
        seen.add(author)
    for channel, authors in plain.items():
        pairs += [(channel, p) for p in authors if p not in seen]
        seen.update(authors)
    return pairs


def _channels_by_guild(sb: Sandbox) -> dict[int, list[tuple[int, list[int]]]]:
    where = dict(places(sb))
    return {
        guild.id: [(c, where[c]) for c in guild.channels if c in where]
        for guild in sb.world.guilds.values()
    }


async def offer(  # noqa: PLR0917 - the load's parameters, in order
    sb: Sandbox,
    pid: int,
    kind: str,
    rate: float,
    duration: float,
    pairs: list[tuple[int, int]] | None = None,
) -> Load:
    """Send `rate` commands per second for `duration` s (or one for each (channel, author) of
    `pairs`) to one bot; wait for the answers."""
    (load,) = await together([(sb, pid)], kind, rate, duration, pairs)
    return load


async def together(
    sides: list[tuple[Sandbox, int]],
    kind: str,
    rate: float,
    duration: float,
    pairs: list[tuple[int, int]] | None = None,
) -> list[Load]:
    """The same load to every side at once: `rate` commands per second to each, the same
    channels and authors in the same order. In each period the sides' commands are 1/len(sides)
    of a period apart (at 10 a second, 50 ms for two sides; two bots answering in about 2 ms
    seldom overlap), starting at a moment of the period that wanders (`_wandering`), so no side
    owns a fixed phase. A pause of the machine, however long, falls on every side alike, and so
    does a noise that recurs on its own clock: with a fixed phase, a thread of the machine's
    that runs twice a second met one side's commands four times as often as the other's in one
    run (bench/README.md, "Where the scheduler puts the bots, and no fixed phase")."""
    # This process is the sandbox, which stands in for Discord: its own collector's pauses (a
    # full collection here took 45 ms) are not either bot's latency. Collected before each
    # load, not during it.
    gc.collect()
    gc.disable()
    try:
        start = time.monotonic() + 0.05
        count = len(pairs) if pairs else int(rate * duration)
        period_starts = [at / rate for at in _wandering(count, random.Random(count))]
        return list(
            await asyncio.gather(
                *(
                    _commands(
                        sb,
                        pid,
                        kind,
                        rate,
                        pairs,
                        [start + at + k / (rate * len(sides)) for at in period_starts],
                    )
                    for k, (sb, pid) in enumerate(sides)
                )
            )
        )
    finally:
        gc.enable()


WANDER = 0.1  # of a period, at most, that one period's start moves from the last one's


def _wandering(count: int, rng: random.Random) -> list[float]:
    """`count` period starts, in periods: the i-th is i plus an offset that moves by at most
    WANDER from one period to the next, a random walk from a random start. Over a load the
    offset crosses the whole period many times (after n periods it has moved about
    0.06 * sqrt(n): 2.4 periods in the goal's 1,800), so a noise on a clock of its own meets
    every side alike; yet two commands of one side are never less than 1 - WANDER of a
    period apart, as on a fixed grid. Drawing each period's moment afresh would put 0.7 % of
    the commands at 80 a second on top of the one before, each waiting for the other: a queue
    the load doesn't offer on average, in the tail the goal measures."""
    offset = rng.random()
    starts = []
    for i in range(count):
        starts.append(i + offset)
        offset += rng.uniform(-WANDER, WANDER)
    return starts


async def _commands(  # noqa: PLR0917 - the load's parameters, in order
    sb: Sandbox,
    pid: int,
    kind: str,
    rate: float,
    pairs: list[tuple[int, int]] | None,
    times: list[float],
) -> Load:
    """One side of `together`: a command at each of `times` (monotonic), then their answers."""
    rng = random.Random(int(rate * 1000))
    where = places(sb)
    pending: dict[str, deque[float]] = {}
    trips: list[float] = []
    after = max((int(e["seq"]) for e in await sb.outbox()), default=0)
    sent = 0
    proc = psutil.Process(pid)
    cpu_before = sum(proc.cpu_times()[:2])

    async def collect() -> None:
        nonlocal after
        while True:
            for entry in await sb.outbox(after=after, wait=1.0):
                after = max(after, int(entry["seq"]))
                waiting = pending.get(entry["channel_id"])
                if waiting and entry["kind"] in ("message", "interaction_response"):
                    trips.append(time.monotonic() - waiting.popleft())

    collector = asyncio.create_task(collect())
    try:
        for i, at in enumerate(times):
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            if pairs:
                channel, author = pairs[i]
            else:
                channel, people = where[i % len(where)]
                author = rng.choice(people)
            pending.setdefault(str(channel), deque()).append(time.monotonic())
            if kind == "slash":
                await sb.send_interaction(channel, author, "ping")
            else:
                await sb.send_message(channel, author, "!ping")
            sent += 1
        deadline = time.monotonic() + 5
        while len(trips) < sent and time.monotonic() < deadline:  # noqa: ASYNC110 - a poll
            await asyncio.sleep(0.05)
    finally:
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
    cpu = sum(proc.cpu_times()[:2]) - cpu_before
    return Load.of(rate, sent, trips, cpu)


# -- the two bots ------------------------------------------------------------------------------


async def _baseline_child(api_url: str, gateway_url: str, token: str) -> None:
    import discord
    from discord.ext import commands

    from bot.dpy import urls

    urls.install(api_url, gateway_url)
    intents = discord.Intents.default()
    intents.message_content = True
    bot = commands.AutoShardedBot(command_prefix="!", intents=intents, shard_count=SHARDS)

    @bot.hybrid_command()
    async def ping(ctx: commands.Context[commands.AutoShardedBot]) -> None:
        """Pong: the same REST work as Guildhouse's ping (a message, then an edit)."""
        started = time.perf_counter()
        message = await ctx.send("Pong…")
        rest = (time.perf_counter() - started) * 1000
        gateway = bot.latency * 1000
        await message.edit(content=f"Pong! Gateway {gateway:.0f} ms, REST {rest:.0f} ms.")

    @bot.event
    async def on_ready() -> None:
        print("READY", flush=True)

    async with bot:
        await bot.login(token)
        await bot.tree.sync()
        await bot.connect()


def baseline(sb: Sandbox) -> contextlib.AbstractAsyncContextManager[int]:
    return baseline_bot("bench.latency", sb.api_url, sb.gateway_url, sb.token)


# The load comes from the sandbox's 60 people, each of them in many guilds: at the slash rates
# every one of them would run 20 commands in 10 s and meet Guildhouse's throttles. The baseline
# has none, so Guildhouse's are set where the load can't reach them: each call still pays for
# its check (the same Lua script and round trip), none is refused.
UNREACHABLE_THROTTLES = {
    "THROTTLE_USER": "100000/10s",
    "THROTTLE_COMMAND": "100000/10s",
    "THROTTLE_GUILD": "100000/10s",
}


@contextlib.asynccontextmanager
async def guildhouse(sb: Sandbox, urls: dict[str, str]) -> AsyncIterator[int]:
    from bot.entry import apply_migrations

    # As in the ingest benchmark: no level-up or achievement announcements. The warm-up and
    # the rounds take each member past 10 and 100 commands, and an achievement announced by
    # DM is two more REST calls (a DM channel, a message) that the baseline doesn't make.
    await apply_migrations(urls["database_url"])
    await quiet_leveling(urls["database_url"], list(sb.world.guilds))
    async with guildhouse_worker(
        sb.token,
        sb.api_url,
        sb.gateway_url,
        urls,
        shards=SHARDS,
        name="lat",
        sync=True,
        settings=UNREACHABLE_THROTTLES,
    ) as (pid, _):
        yield pid


# -- the run -------------------------------------------------------------------------------------


def ratios(ours: Load, base: Load) -> dict[str, Any]:
    """Guildhouse's p99 over the baseline's: `p99_ratio` of the smoothed p99s (the goal's
    figure: bench/README.md says why), `p99_ratio_raw` of the plain ones (the n-th slowest),
    and `p99_ratio_90`, the 5th-95th percentile range of the plain ratio over bootstrap
    resamples of both sides: how far this run's figure may be from another's by the luck of
    the draw alone."""
    if not (ours.p99_smoothed_ms and base.p99_smoothed_ms and ours.p99_ms and base.p99_ms):
        return {"p99_ratio": None, "p99_ratio_raw": None, "p99_ratio_90": None}
    low, high = ratio_interval(ours.trips, base.trips, 0.99)
    return {
        "p99_ratio": round(ours.p99_smoothed_ms / base.p99_smoothed_ms, 2),
        "p99_ratio_raw": round(ours.p99_ms / base.p99_ms, 2),
        "p99_ratio_90": [round(low, 2), round(high, 2)],
    }


async def run(
    rates: list[float],
    probe: float,
    duration: float,
    goal_duration: float,
    guilds: int,
) -> dict[str, Any]:
    config = SandboxConfig(guilds=guilds, members=20, max_concurrency=SHARDS, identify_interval=0.2)
    result: dict[str, Any] = {
        "bench": "latency",
        "params": {
            "guilds": guilds,
            "probe_s": probe,
            "duration_s": duration,
            "goal_duration_s": goal_duration,
            "offered": "together, the phase wandering",
        },
    }
    with backing() as urls:
        async with (
            Sandbox(config) as sb_base,
            Sandbox(config) as sb_ours,
            baseline(sb_base) as base_pid,
            guildhouse(sb_ours, urls) as ours_pid,
        ):
            sides = [(sb_base, base_pid), (sb_ours, ours_pid)]
            for kind in ("prefix", "slash"):
                best = rates[0]
                for rate in rates:
                    if not (await offer(sb_base, base_pid, kind, rate, probe)).sustained():
                        break
                    best = rate
                # Both bots are measured warm, as a bot that has run for a while is: one command
                # in every channel and from every person first (Guildhouse's guild settings
                # and throttle windows are loaded or taken over on first use; the first command
                # of a guild or a person costs a database read or a Redis round trip, which a
                # cold start pays, not the steady state). The baseline keeps no such state; it
                # gets the same commands.
                for sb, pid in sides:
                    pairs = everyone_everywhere(sb)
                    await offer(sb, pid, kind, best / 2, len(pairs) / (best / 2), pairs)
                rows = []
                for share in (25, 50, 90):
                    # The goal is set at 50 %: its p99 gets the most commands behind it.
                    seconds = goal_duration if share == GOAL_SHARE else duration
                    base, ours = await together(sides, kind, round(best * share / 100, 1), seconds)
                    rows.append(
                        {
                            "load_pct": share,
                            "guildhouse": ours.row(),
                            "discordpy": base.row(),
                            **ratios(ours, base),
                        }
                    )
                result[kind] = {"highest_sustained_per_s": best, "loads": rows}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="10,20,40,80,160", help="rates to probe (per second)")
    parser.add_argument(
        "--probe", type=float, default=6.0, help="seconds per rate while finding the highest"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=20.0,
        help="seconds per measured load at 25 and 90 %% (p99 of 5/s for 20 s: 1st-slowest of 100)",
    )
    parser.add_argument(
        "--goal-duration",
        type=float,
        default=180.0,
        help="seconds for the 50 %% load, where the goal is (p99 of 10/s for 180 s: "
        "the 18th-slowest of 1,800; bench/README.md says why this many)",
    )
    parser.add_argument("--guilds", type=int, default=60, help="guilds (one text channel each)")
    args = parser.parse_args()
    try:
        rates = sorted(float(r) for r in args.rates.split(","))
    except ValueError:
        parser.error("--rates is a comma-separated list of numbers, e.g. 10,20,40")
    if not rates or rates[0] <= 0:
        parser.error("--rates must be positive")
    if args.probe <= 0 or args.duration <= 0 or args.goal_duration <= 0:
        parser.error("--probe, --duration and --goal-duration must be positive")
    result = asyncio.run(run(rates, args.probe, args.duration, args.goal_duration, args.guilds))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline-child":
        asyncio.run(_baseline_child(*sys.argv[2:5]))
    else:
        interrupt.main(main)
