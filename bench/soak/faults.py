"""The soak's faults, on a schedule drawn from the run's seed, one at a time: each is
injected, then the run waits until every shard is READY again (the launcher's /readyz), and
records how long that took."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import psutil
import redis.asyncio as aioredis

from bench.soak.rig import SHARDS, Rig

READY_WITHIN = 60.0  # the stated bound: every shard READY again this soon after a fault
GATEWAY = ("drop", "reconnect", "invalidate", "stall_acks")
MESSAGES = "POST /channels/{channel_id}/messages"
KINDS = (
    "worker_kill",
    "launcher_kill",
    "redis_restart",
    "redis_wipe",
    "postgres_restart",
    *(f"gateway_{k}" for k in GATEWAY),
    "rest_5xx_global",
    "rest_5xx_route",
    "rest_429_global",
    "rest_429_route",
)
ONCE = {"redis_wipe"}


@dataclass
class Fault:
    kind: str
    detail: str
    at: float  # time.monotonic() of the injection
    ready_after: float | None = None  # seconds to every shard READY again; None: not within
    end: float = 0.0  # time.monotonic() when it was over
    # gateway_stall_acks: the shard reconnected and RESUMEd (no IDENTIFY); None for others
    resumed: bool | None = None


def schedule(rng: random.Random) -> list[str]:
    """Every kind once in a seeded order, then seeded repeats (a wipe only once)."""
    first = list(KINDS)
    rng.shuffle(first)
    again = [k for k in KINDS if k not in ONCE]
    return first + [rng.choice(again) for _ in range(500)]


class Injector:
    def __init__(self, rig: Rig, http: aiohttp.ClientSession, rng: random.Random) -> None:
        self.rig = rig
        self.http = http
        self.rng = rng
        self.faults: list[Fault] = []

    async def sandbox_fault(self, **body: Any) -> None:
        async with self.http.post(f"{self.rig.control}/_sandbox/faults", json=body) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"sandbox refused fault {body}: {await resp.text()}")

    async def connections(self) -> int:
        async with self.http.get(f"{self.rig.control}/_sandbox/stats") as resp:
            return int((await resp.json())["connections"])

    async def identifies(self) -> int:
        async with self.http.get(f"{self.rig.control}/_sandbox/stats") as resp:
            return sum((await resp.json())["identifies_per_bucket"].values())

    async def run(self, until: float) -> None:
        """Inject faults from the schedule until time.monotonic() reaches `until`."""
        for kind in schedule(self.rng):
            if time.monotonic() > until:
                return
            await self.inject(kind)
            await asyncio.sleep(self.rng.uniform(6, 15))

    async def inject(self, kind: str) -> Fault:
        fault = Fault(kind, "", time.monotonic())
        self.faults.append(fault)
        began = time.monotonic()
        await getattr(self, kind.split("_", maxsplit=1)[0])(fault)
        left = READY_WITHIN - (time.monotonic() - began)
        ready = await asyncio.to_thread(self.rig.wait_ready, max(left, 0.1))
        fault.end = time.monotonic()
        if ready is not None:
            fault.ready_after = fault.end - began
        print(
            f"soak: fault {kind} {fault.detail}: READY after "
            + (f"{fault.ready_after:.1f} s" if fault.ready_after is not None else "never"),
            flush=True,
        )
        return fault

    async def worker(self, fault: Fault) -> None:
        launcher = self.rig.launcher
        assert launcher is not None
        workers = launcher.workers()
        role = self.rng.choice(sorted(workers))
        old = workers[role]
        fault.detail = f"{role} pid {old}"
        os.kill(old, signal.SIGKILL)
        await self.until(lambda: launcher.workers().get(role) not in (None, old))

    async def launcher(self, fault: Fault) -> None:
        old = self.rig.launcher
        assert old is not None
        pids = list(old.workers().values())
        fault.detail = f"pid {old.proc.pid}"
        old.kill()
        await self.until(lambda: not any(psutil.pid_exists(p) and _alive(p) for p in pids))
        self.rig.launch()

    async def redis(self, fault: Fault) -> None:
        if fault.kind == "redis_wipe":
            assert self.rig.rd is not None
            client = aioredis.from_url(self.rig.rd.url)
            try:
                await client.flushall()
            finally:
                await client.aclose()
            fault.detail = "FLUSHALL"
            return
        self.rig.redis.kill()
        await asyncio.to_thread(self.rig.redis.restart)
        fault.detail = "SIGKILL, restarted on its port"

    async def postgres(self, fault: Fault) -> None:
        self.rig.postgres.kill()
        await asyncio.to_thread(self.rig.postgres.restart)
        fault.detail = "SIGKILL, restarted on its port"

    async def gateway(self, fault: Fault) -> None:
        what = fault.kind.removeprefix("gateway_")
        shard = self.rng.randrange(SHARDS)
        fault.detail = f"shard {shard}"
        if what == "stall_acks":
            # One heartbeat goes un-ACKed. discord.py alone closed a connection only when
            # nothing at all had come for 60 s, so the shard served on, READY, and this fault
            # expected nothing more; with bot/dpy/zombie.py the shard closes the zombied
            # connection when its next heartbeat is due (HEARTBEAT_MS later, in the rig) and
            # RESUMEs: a new connection, no IDENTIFY, then READY (checks.readiness).
            before, identifies = await self.connections(), await self.identifies()
            await self.sandbox_fault(kind=what, shard=shard, count=1)
            await self.until_async(self.connections, lambda n: n > before)
            fault.resumed = (
                await self.connections() > before and await self.identifies() == identifies
            )
            fault.detail += ": resumed" if fault.resumed else ": not reconnected and resumed"
            return
        before = await self.connections()
        await self.sandbox_fault(kind=what, shard=shard)
        await self.until_async(self.connections, lambda n: n > before)

    async def rest(self, fault: Fault) -> None:
        _, what, scope = fault.kind.split("_")
        count = self.rng.randint(5, 20)
        body: dict[str, Any] = {"count": count, "route": MESSAGES if scope == "route" else "*"}
        if what == "5xx":
            body.update(kind="status", status=self.rng.choice((500, 502, 503)))
        else:
            body.update(kind="ratelimit", retry_after=round(self.rng.uniform(0.5, 2.0), 2))
            body["global"] = scope == "global"
        fault.detail = f"{body['kind']} {body.get('status', '')} x{count} on {body['route']}"
        await self.sandbox_fault(**body)

    async def until(self, check: Any, within: float = READY_WITHIN) -> None:
        deadline = time.monotonic() + within
        while not check() and time.monotonic() < deadline:  # noqa: ASYNC110 - other processes
            await asyncio.sleep(0.1)

    async def until_async(self, get: Any, ok: Any, within: float = READY_WITHIN) -> None:
        deadline = time.monotonic() + within
        while not ok(await get()) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
