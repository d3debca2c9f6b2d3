"""The launcher's lifecycle with real processes: `guildhouse run` killed, relaunched, doubled.

A launcher killed with SIGKILL (as the OOM killer does) must take its workers and its sandbox
with it, and a relaunch on the same DATA_DIR must answer each command once; a second launcher
on a DATA_DIR in use is refused in one line; Ctrl-C is the launcher's to handle.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from e2e_harness import Driver, SandboxProc, running_sandbox, text_channels, text_of, world_of
from launcher_proc import CLI, Launcher, gone, json_lines, launcher_env
from waits import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProc]:
    with running_sandbox(
        "--guilds", "4", "--members", "5", "--identify-interval", "0.2", "--max-concurrency", "2"
    ) as sb:
        yield sb


async def _answers(sandbox: SandboxProc, content: str) -> list[dict[str, Any]]:
    """Everything the bot sends in a channel within a few seconds of one message."""
    world = await world_of(sandbox)
    async with aiohttp.ClientSession() as http:
        driver = Driver(http, sandbox.control, world)
        guild = world["guilds"][0]
        channel = text_channels(guild)[0]
        bot_id = int(world["bot"]["id"])
        author = next(int(m["id"]) for m in guild["members"] if int(m["id"]) != bot_id)
        await driver.drain(channel)
        await driver.say(channel, author, content)
        # Two answers would arrive within a moment of each other: wait for a second one.
        return await driver.replies(channel, wait=5, count=2)


def test_sigkill_of_the_launcher_ends_its_workers_and_a_relaunch_answers_once(
    sandbox: SandboxProc, bot_db: str, redis_url: str, tmp_path: Path
) -> None:
    env = launcher_env(
        **sandbox.discord_env(),
        DATABASE_URL=bot_db,
        REDIS_URL=redis_url,
        REDIS_PREFIX=f"life:{uuid.uuid4().hex[:8]}:",
        SHARD_COUNT="2",
        CLUSTER_COUNT="2",
        DATA_DIR=str(tmp_path),
    )
    first = Launcher(env, tmp_path)
    try:
        first.wait_ready()
        # A worker restarted in this launch: the next launch must not inherit the count.
        old = first.children()["cluster-0"]
        os.kill(old, signal.SIGKILL)
        first.wait_for("cluster 0 not restarted", lambda: first.children()["cluster-0"] != old)
        first.wait_ready()
        workers = first.children()
        assert set(workers) == {"cluster-0", "cluster-1"}
        first.proc.kill()
        wait_until(
            f"workers outlived their launcher: {workers}",
            lambda: all(gone(pid) for pid in workers.values()),
            within=5,
        )
    finally:
        first.kill()

    second = Launcher(env, tmp_path)
    try:
        port = second.wait_ready()
        answers = asyncio.run(_answers(sandbox, "!roll 2d6"))
        assert len(answers) == 1, [text_of(a) for a in answers]
        assert "rolled" in text_of(answers[0])

        status = subprocess.run(
            [*CLI, "status", "--json"], env=env, capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 0, status.stderr
        clusters = orjson.loads(status.stdout)
        assert [c["restarts"] for c in clusters] == [0, 0]

        again = subprocess.run([*CLI, "run"], env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 1
        said = again.stderr.strip().splitlines()
        assert len(said) == 1, again.stderr
        assert f"pid {second.proc.pid}" in said[0] and f"HTTP port {port}" in said[0]

        # Ctrl-C in the terminal: SIGINT to the launcher's whole process group.
        workers = second.children()
        os.killpg(second.proc.pid, signal.SIGINT)
        assert second.proc.wait(30) == 0
        assert all(gone(pid) for pid in workers.values())
        entries = json_lines(second.lines)
        errors = [e for e in entries if e["level"] in ("ERROR", "CRITICAL")]
        assert not errors, errors
        assert not (tmp_path / "launcher.json").exists()
    finally:
        second.kill()


def test_sigkill_of_the_launcher_ends_the_sandbox_it_started(
    bot_db: str, redis_url: str, tmp_path: Path
) -> None:
    env = launcher_env(
        DATABASE_URL=bot_db,
        REDIS_URL=redis_url,
        REDIS_PREFIX=f"life:{uuid.uuid4().hex[:8]}:",
        SHARD_COUNT="2",
        CLUSTER_COUNT="2",
        DATA_DIR=str(tmp_path),
    )
    launcher = Launcher(env, tmp_path)
    try:
        children = launcher.wait_for(
            "the sandbox and both workers never started",
            lambda: (
                (c := launcher.children()).keys() >= {"sandbox", "cluster-0", "cluster-1"} and c
            ),
        )
        launcher.proc.kill()
        wait_until(
            f"outlived their launcher: {children}",
            lambda: all(gone(pid) for pid in children.values()),
            within=5,
        )
    finally:
        launcher.kill()
    # The dead launcher's sandbox.json is left behind; `chat` must not take it for a sandbox.
    chat = subprocess.run(
        [*CLI, "chat"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert chat.returncode == 1
    assert chat.stderr.strip().count("\n") == 0 and "no sandbox is running" in chat.stderr
