"""`guildhouse run` with its embedded servers, each killed with SIGKILL under light load.

The launcher (one that adopted them from a killed predecessor) brings each back on its port
within 10 s; the same worker processes serve on (none is restarted); reminders due around the
outages are each delivered exactly once; no command is answered with an error id; the status
page counts the restarts.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from e2e_harness import (
    Driver,
    SandboxProc,
    cluster_of,
    running_sandbox,
    text_channels,
    text_of,
    world_of,
)
from launcher_proc import Launcher, launcher_env
from waits import wait_until

from cluster.embedded import NotRunning, locate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

SHARDS, CLUSTERS = 4, 2
REMINDERS = range(4, 14)  # `!remind in Ns`, one a second, spanning both outages
BACK_WITHIN = 10.0  # the bound for a killed server to be serving again


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProc]:
    with running_sandbox(
        "--guilds",
        "4",
        "--members",
        "6",
        "--identify-interval",
        "0.2",
        "--max-concurrency",
        "4",
        "--route-window",
        "1",
    ) as sb:
        yield sb


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Outside pytest's temporary tree: a later pytest session resets its root to 0700, which
    # locks out the embedded PostgreSQL's unprivileged user mid-run.
    path = Path(tempfile.mkdtemp(prefix="gh-outages-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _pid_of(data_dir: Path, server: str) -> int:
    if server == "redis":
        return int((data_dir / "redis" / "server.json").read_text().split()[0])
    return int((data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])


def _kill_and_wait_back(data_dir: Path, server: str) -> float:
    """SIGKILL the server; seconds until a new process of it answers on its port."""
    old = _pid_of(data_dir, server)
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()

    def back() -> bool:
        try:
            found = locate(data_dir, postgres=server == "postgres", redis=server == "redis")
        except (NotRunning, OSError, ValueError):
            return False
        return found[server].pid != old

    wait_until(f"embedded {server} back (a new process on its port)", back, within=60)
    return time.monotonic() - killed


def _places(world: dict[str, Any]) -> list[tuple[int, int]]:
    """(channel, member) in one guild of each cluster."""
    bot_id = int(world["bot"]["id"])
    found: dict[int, tuple[int, int]] = {}
    for g in world["guilds"]:
        cluster = cluster_of(int(g["id"]), SHARDS, CLUSTERS)
        texts = text_channels(g)
        members = [int(m["id"]) for m in g["members"] if int(m["id"]) != bot_id]
        if texts and members:
            found.setdefault(cluster, (texts[0], members[0]))
    assert len(found) == CLUSTERS, "the sandbox world has no guild on some cluster"
    return [found[c] for c in sorted(found)]


async def _scenario(sandbox: SandboxProc, data_dir: Path) -> dict[str, Any]:
    world = await world_of(sandbox)
    async with aiohttp.ClientSession() as http:
        driver = Driver(http, sandbox.control, world)
        places = _places(driver.world)
        for channel, _ in places:
            await driver.drain(channel)
        channel, member = places[0]
        for n in REMINDERS:
            await driver.say(channel, member, f"!remind in {n}s outage-reminder-{n}")

        sent = 0
        stop = asyncio.Event()

        async def load() -> None:
            nonlocal sent
            while not stop.is_set():
                for ch, who in places:
                    command = "!history" if sent % 3 == 0 else "!roll 2d6"
                    await driver.say(ch, who, command)
                    sent += 1
                await asyncio.sleep(0.4)  # the load's pace: a round of commands every 0.4 s

        # Time under that load: before the outages, between them, and after them.
        loader = asyncio.create_task(load())
        await asyncio.sleep(2)
        redis_back = await asyncio.to_thread(_kill_and_wait_back, data_dir, "redis")
        await asyncio.sleep(2)
        postgres_back = await asyncio.to_thread(_kill_and_wait_back, data_dir, "postgres")
        await asyncio.sleep(4)
        stop.set()
        await loader
        # Every reminder is due by now; give the last deliveries time to arrive, and a
        # duplicate time to show itself.
        seen: dict[int, list[dict[str, Any]]] = {ch: [] for ch, _ in places}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for ch in seen:
                seen[ch] += await driver.replies(ch, wait=1, count=10_000)
            delivered = [e for e in seen[channel] if str(e.get("content", "")).startswith("⏰")]
            if len(delivered) >= len(REMINDERS):
                break
        for ch in seen:
            seen[ch] += await driver.replies(ch, wait=3, count=10_000)
        # After both outages the bot answers a database command as usual.
        await driver.say(channel, member, "!history")
        after = await driver.replies(channel, wait=15, count=1)
        return {
            "redis_back": redis_back,
            "postgres_back": postgres_back,
            "sent": sent,
            "seen": seen,
            "reminder_channel": channel,
            "after": after,
        }


def test_killed_servers_come_back_and_nothing_is_lost_or_doubled(
    sandbox: SandboxProc, data_dir: Path
) -> None:
    env = launcher_env(
        **sandbox.discord_env(),
        SHARD_COUNT=str(SHARDS),
        CLUSTER_COUNT=str(CLUSTERS),
        DATA_DIR=str(data_dir),
        THROTTLE_USER="off",
        THROTTLE_COMMAND="off",
        THROTTLE_GUILD="off",
    )
    # The servers the watch keeps alive are adopted ones: a first launcher starts them and is
    # killed (they outlive it on purpose), a second adopts them.
    first = Launcher(env, data_dir)
    try:
        first.wait_ready()
    finally:
        first.kill()
    launcher = Launcher(env, data_dir)
    try:
        port = launcher.wait_ready()
        adopted = [ln for ln in launcher.lines if "left running by an earlier run" in ln]
        assert len(adopted) == 2, "".join(launcher.lines[-30:])
        workers = launcher.children()
        result = asyncio.run(_scenario(sandbox, data_dir))

        assert result["redis_back"] < BACK_WITHIN, result["redis_back"]
        assert result["postgres_back"] < BACK_WITHIN, result["postgres_back"]
        # The same worker processes served throughout: none was restarted.
        assert launcher.children() == workers
        texts = [text_of(e) for entries in result["seen"].values() for e in entries]
        assert result["sent"] > 20
        assert not [t for t in texts if "error id" in t], [t for t in texts if "error id" in t]
        delivered = [
            text_of(e)
            for e in result["seen"][result["reminder_channel"]]
            if str(e.get("content", "")).startswith("⏰")
        ]
        for n in REMINDERS:
            hits = [t for t in delivered if re.search(rf"\boutage-reminder-{n}\b", t)]
            assert len(hits) == 1, (n, delivered)
        (answer,) = result["after"]
        assert "unavailable" not in text_of(answer), text_of(answer)

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=10) as r:
            services = orjson.loads(r.read())["services"]
        assert services["redis"]["restarts"] == 1 and services["redis"]["state"] == "up"
        assert services["postgres"]["restarts"] == 1 and services["postgres"]["state"] == "up"
        assert not [ln for ln in launcher.lines if '"level":"ERROR"' in ln], [
            ln for ln in launcher.lines if '"level":"ERROR"' in ln
        ]
    finally:
        if launcher.proc.poll() is None:
            launcher.proc.send_signal(signal.SIGTERM)
            launcher.proc.wait(60)
