"""The soak's command line and its run: start, load with faults, settle, check, report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench import interrupt
from bench.soak import checks
from bench.soak.faults import READY_WITHIN, Injector
from bench.soak.load import MIX, RATE, Load
from bench.soak.rig import CLUSTERS, GUILDS, MEMBERS, SHARDS, Rig

FIRST_FAULT = 20.0  # seconds of load before the first fault
QUIET_END = 30.0  # seconds of load after the last fault's recovery began
SETTLE = 25.0  # seconds after the load for late answers, reminders and the XP flush


async def _prepare(rig: Rig) -> None:
    """Migrations, and every server's XP cooldown off with announcements off: every chat
    message is then an award, and level-ups say nothing in the channels."""
    from bot.entry import apply_migrations

    assert rig.pg is not None
    await apply_migrations(rig.pg.url)
    world = await _world(rig)
    db = await asyncpg.connect(rig.pg.url)
    try:
        await db.executemany(
            "INSERT INTO xp_settings (guild_id, cooldown_seconds, announce) VALUES ($1, 0, 'off')"
            " ON CONFLICT (guild_id) DO UPDATE SET cooldown_seconds = 0, announce = 'off'",
            [(int(g["id"]),) for g in world["guilds"]],
        )
    finally:
        await db.close()


async def _world(rig: Rig) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{rig.control}/_sandbox/world") as resp,
    ):
        world: dict[str, Any] = await resp.json()
    return world


async def _sample_rss(rig: Rig, into: dict[int, list[tuple[float, int]]], stop: Any) -> None:
    while not stop.is_set():
        now = time.monotonic()
        for pid, rss in (await asyncio.to_thread(rig.rss)).items():
            into[pid].append((now, rss))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 5)


async def soak(rig: Rig, minutes: float, seed: int) -> int:
    rng = random.Random(seed)
    await _prepare(rig)
    await asyncio.to_thread(rig.sync_commands)
    rig.launch()
    if await asyncio.to_thread(rig.wait_ready, 180) is None:
        print("soak: the bot never got READY", file=sys.stderr)
        return 1
    world = await _world(rig)
    seconds = minutes * 60
    rss: dict[int, list[tuple[float, int]]] = defaultdict(list)
    stop = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        load = Load(http, rig.control, world, rng.randrange(1 << 30))
        injector = Injector(rig, http, random.Random(rng.randrange(1 << 30)))
        poller = asyncio.create_task(load.poll_outbox())
        sampler = asyncio.create_task(_sample_rss(rig, rss, stop))
        began = time.monotonic()
        running = asyncio.create_task(load.run(seconds))

        async def faults() -> None:
            await asyncio.sleep(FIRST_FAULT)
            await injector.run(began + seconds - QUIET_END - READY_WITHIN / 2)

        await asyncio.gather(running, faults())
        await load.finish()
        await asyncio.sleep(SETTLE)
        load.stopping = True
        await poller
        stop.set()
        await sampler
        async with http.get(f"{rig.control}/_sandbox/stats") as resp:
            stats = await resp.json()
    assert rig.pg is not None
    db = await asyncpg.connect(rig.pg.url)
    try:
        rows = checks.commands(load.ledger, injector.faults)
        rows += await checks.database(db, load.ledger, injector.faults)
    finally:
        await db.close()
    rows += checks.readiness(injector.faults) + checks.rest(stats) + checks.memory(rss)
    error_rows, unexplained = checks.errors(rig.lines, injector.faults)
    rows += error_rows
    kinds: dict[str, int] = defaultdict(int)
    for f in injector.faults:
        kinds[f.kind] += 1
    sent: dict[str, int] = defaultdict(int)
    for a in load.ledger.actions:
        sent[a.kind] += 1
    print(checks.table(rows))
    for line in unexplained[:20]:
        print(f"unexplained: {line}")
    summary = {
        "benchmark": "soak",
        "seed": seed,
        "minutes": minutes,
        "rate": RATE,
        "sent": dict(sent),
        "faults": len(injector.faults),
        "fault_kinds": dict(kinds),
        "launches": rig.launches,
        "ok": all(r.ok for r in rows),
        "shards": SHARDS,
        "clusters": CLUSTERS,
        "guilds": GUILDS,
        "members": MEMBERS,
    }
    print(orjson.dumps(summary).decode())
    return 0 if summary["ok"] else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30, help="length of the load (30)")
    parser.add_argument("--seed", type=int, default=None, help="replay a run's schedule")
    args = parser.parse_args(argv)
    if not 1 <= args.minutes <= 24 * 60:
        parser.error("--minutes must be between 1 and 1440")
    seed = args.seed if args.seed is not None else secrets.randbelow(1 << 31)
    print(
        f"soak: seed {seed}, {args.minutes:g} min, {RATE:g} actions/s, mix {MIX}, "
        f"{SHARDS} shards in {CLUSTERS} clusters, {GUILDS} servers",
        flush=True,
    )
    root = Path(tempfile.mkdtemp(prefix="guildhouse-soak-"))
    rig = Rig(root)
    try:
        with interrupt.held():  # a stop waits until they are up, and close() stops them
            rig.start_services()
        return asyncio.run(soak(rig, args.minutes, seed))
    finally:
        rig.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    interrupt.main(lambda: main(sys.argv[1:]))
