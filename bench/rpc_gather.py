"""IPC gather p50/p99 over W clusters, against a raw Redis PING round trip in the same run.

The asking cluster runs here; the other W-1 run as separate processes, as real clusters do,
each answering `cluster_stats` from its own bus. Every process runs on uvloop, as workers do.
Each round is a PING then a gather, so both see the same moment of a shared machine. The run
is `--repeat` repetitions (3) of `--rounds` rounds (2,000) with the same processes; each
repetition's p50, p99, ratios and CPU per gather (asker, an answering cluster, Redis) are
reported, and the headline ratio is the median of the repetitions' p99 ratios, with their
minimum and maximum: one repetition's p99 is its 20th-slowest gather, which a few preemptions
on a busy machine move.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
import time
from typing import Any

import orjson
import psutil
import redis.asyncio as aioredis
import uvloop

from bench import interrupt
from bench.common import backing, percentile
from ipc.bus import Bus
from ipc.client import Keys
from ipc.registry import ClusterInfo, Registry


async def _quiet(r: aioredis.Redis) -> Any:
    """A connection whose PUBLISHes are one write each, with no reply (as the bus's)."""
    conn = r.connection_pool.make_connection()  # type: ignore[no-untyped-call]
    await conn.connect()
    await conn.send_command("CLIENT", "REPLY", "OFF")
    return conn


async def _subscribed(r: aioredis.Redis, channel: str) -> Any:
    conn = r.connection_pool.make_connection()  # type: ignore[no-untyped-call]
    await conn.connect()
    await conn.send_command("SUBSCRIBE", channel)
    await conn.read_response(timeout=math.inf, push_request=True)  # the confirmation
    return conn


async def _floor_answers(r: aioredis.Redis, channel: str) -> None:
    """The floor: bare redis-py answering each request with one PUBLISH (no JSON, no
    handler, no bus), in the same process as a cluster's bus."""
    sub, out = await _subscribed(r, channel), await _quiet(r)
    try:
        while True:
            message = await sub.read_response(timeout=math.inf, push_request=True)
            if isinstance(message, list) and message[0] == b"message":
                await out.send_packed_command(out.pack_command("PUBLISH", message[2], b"1"))
    finally:
        await sub.disconnect(nowait=True)
        await out.disconnect(nowait=True)


async def node(redis_url: str, prefix: str, cluster_id: int) -> None:
    """One cluster's bus, answering until SIGTERM; prints READY once subscribed."""
    keys = Keys(prefix)
    async with aioredis.Redis.from_url(redis_url) as r:
        registry = Registry(r, keys)
        bus = Bus(r, keys, cluster_id, registry)
        floor = asyncio.create_task(_floor_answers(r, keys("floor")))

        async def stats(_: object) -> dict[str, int]:
            return {"cluster": cluster_id, "guilds": 1000 + cluster_id}

        bus.handle("cluster_stats", None, stats)
        await bus.start()
        info = ClusterInfo(cluster_id, [cluster_id], os.getpid(), "bench", "ready", time.time())
        await registry.publish(info)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("READY", flush=True)
        while not stop.is_set():
            await registry.publish(info)  # stay in the registry
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5)
        floor.cancel()
        await bus.stop()


def _redis_process(info: dict[str, Any]) -> psutil.Process | None:
    """The Redis server's process, when it runs on this machine (for its CPU time)."""
    try:
        proc = psutil.Process(int(info["process_id"]))
    except (KeyError, ValueError, psutil.Error):
        return None
    return proc if "redis" in proc.name().lower() else None


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


class _Floor:
    """The asking side of the floor: one PUBLISH out, an answer from each cluster back."""

    def __init__(self, r: aioredis.Redis, keys: Keys, answers: int) -> None:
        self.r, self.keys, self.answers = r, keys, answers

    async def open(self) -> None:
        self.reply = self.keys("floor", "reply")
        self.sub = await _subscribed(self.r, self.reply)
        self.out = await _quiet(self.r)
        self.command = self.out.pack_command("PUBLISH", self.keys("floor"), self.reply)

    async def ask(self) -> None:
        await self.out.send_packed_command(self.command)
        got = 0
        while got < self.answers:
            message = await self.sub.read_response(timeout=2.0, push_request=True)
            assert message is not None, "a floor answer is missing"
            got += isinstance(message, list) and message[0] == b"message"

    async def close(self) -> None:
        await self.sub.disconnect(nowait=True)
        await self.out.disconnect(nowait=True)


async def _block(
    client: aioredis.Redis,
    bus: Bus,
    floor: _Floor,
    rounds: int,
    procs: dict[str, list[psutil.Process]],
) -> dict[str, Any]:
    """One repetition: `rounds` of a PING, a gather and a floor request (these two in turns
    first), and the CPU each process spent."""
    before = {side: [_cpu(p) for p in ps] for side, ps in procs.items()}
    pings: list[float] = []
    gathers: list[float] = []
    floors: list[float] = []
    cpu_gather = 0.0  # this process's CPU in the gathers alone
    for i in range(rounds):
        t = time.perf_counter()
        await client.ping()
        pings.append(time.perf_counter() - t)
        for step in (0, 1) if i % 2 else (1, 0):
            c, t = time.process_time(), time.perf_counter()
            if step:
                result = await bus.gather("cluster_stats", within=2)
                gathers.append(time.perf_counter() - t)
                cpu_gather += time.process_time() - c
                assert not result.partial, result
            else:
                await floor.ask()
                floors.append(time.perf_counter() - t)
    cpu = {
        side: sum(_cpu(p) - b for p, b in zip(ps, before[side], strict=True)) / len(ps)
        for side, ps in procs.items()
    }
    p50, p99 = percentile(gathers, 0.5), percentile(gathers, 0.99)
    ping50, ping99 = percentile(pings, 0.5), percentile(pings, 0.99)
    floor50, floor99 = percentile(floors, 0.5), percentile(floors, 0.99)
    return {
        "gather_p50_ms": round(p50 * 1000, 3),
        "gather_p99_ms": round(p99 * 1000, 3),
        "ping_p50_ms": round(ping50 * 1000, 3),
        "ping_p99_ms": round(ping99 * 1000, 3),
        "floor_p50_ms": round(floor50 * 1000, 3),
        "floor_p99_ms": round(floor99 * 1000, 3),
        "p50_ratio": round(p50 / ping50, 2),
        "p99_ratio": round(p99 / ping99, 2),
        "p99_over_floor": round(p99 / floor99, 2),
        "floor_p99_ratio": round(floor99 / ping99, 2),
        # CPU per round (a PING, a gather and a floor request): the asking process, one
        # answering cluster on average, and the Redis server; and the asker's in the gather.
        "cpu_us": {side: round(total / rounds * 1e6, 1) for side, total in cpu.items()},
        "asker_cpu_per_gather_us": round(cpu_gather / rounds * 1e6, 1),
    }


async def _stop_nodes(children: list[asyncio.subprocess.Process]) -> None:
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            child.terminate()
        await child.wait()


async def _measure(
    redis_url: str,
    keys: Keys,
    children: list[asyncio.subprocess.Process],
    rounds: int,
    repeat: int,
) -> list[dict[str, Any]]:
    """The repetitions' figures, asked of the answering `children` and this process's bus."""
    clusters = len(children) + 1
    client = aioredis.Redis.from_url(redis_url)
    registry = Registry(client, keys)
    bus = Bus(client, keys, 0, registry)

    async def own_stats(_: object) -> dict[str, int]:
        return {"cluster": 0, "guilds": 1000}

    bus.handle("cluster_stats", None, own_stats)
    await bus.start()
    floor = _Floor(client, keys, clusters - 1)
    await floor.open()
    await registry.publish(ClusterInfo(0, [0], os.getpid(), "bench", "ready", time.time()))
    procs = {"asker": [psutil.Process()], "answerer": [psutil.Process(c.pid) for c in children]}
    server = _redis_process(await client.info("server"))
    if server is not None:
        procs["redis"] = [server]
    try:
        for _ in range(50):  # warm up
            await client.ping()
            await bus.gather("cluster_stats", within=2)
            await floor.ask()
        return [await _block(client, bus, floor, rounds, procs) for _ in range(repeat)]
    finally:
        await floor.close()
        await bus.stop()
        await client.aclose()


async def run(redis_url: str, clusters: int, rounds: int, repeat: int) -> dict[str, Any]:
    prefix = f"bench:{os.getpid()}:{time.monotonic_ns()}:"
    keys = Keys(prefix)
    children: list[asyncio.subprocess.Process] = []
    try:  # the nodes answer until they are stopped: stopped however this ends
        for i in range(1, clusters):
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.rpc_gather",
                "--node",
                redis_url,
                prefix,
                str(i),
                stdout=asyncio.subprocess.PIPE,
            )
            children.append(child)
            assert child.stdout is not None
            line = await child.stdout.readline()
            assert line.strip() == b"READY", line
        blocks = await _measure(redis_url, keys, children, rounds, repeat)
    finally:
        await _stop_nodes(children)
    ratios = sorted(b["p99_ratio"] for b in blocks)

    def median(key: str) -> float:
        return float(sorted(b[key] for b in blocks)[len(blocks) // 2])

    return {
        "clusters": clusters,
        "rounds": rounds,
        "repeat": repeat,
        # The goal's figure: the median of the repetitions' p99 ratios, and their spread.
        "gather_p99_over_ping_p99": ratios[len(ratios) // 2],
        "p99_ratio_min": ratios[0],
        "p99_ratio_max": ratios[-1],
        "gather_p50_over_ping_p50": median("p50_ratio"),
        # The same for the floor (bare pub/sub, below the bus), and the bus over it.
        "floor_p99_over_ping_p99": median("floor_p99_ratio"),
        "gather_p99_over_floor_p99": median("p99_over_floor"),
        "blocks": blocks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clusters", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2000, help="PINGs and gathers a repetition")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions, reported each")
    args = parser.parse_args()
    with backing() as urls:
        figures = uvloop.run(run(urls["redis_url"], args.clusters, args.rounds, args.repeat))
        print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--node":
        uvloop.run(node(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        interrupt.main(main)
