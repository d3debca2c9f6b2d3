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
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import pytest
from e2e_harness import Driver, SandboxProc, start_sandbox, text_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CLI = (sys.executable, "-m", "cluster.cli")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Launcher:
    """`guildhouse run` as a subprocess in its own session (as a terminal would start it)."""

    def __init__(self, env: dict[str, str], data_dir: Path) -> None:
        self.data_dir = data_dir
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [*CLI, "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def state(self) -> dict[str, Any]:
        try:
            data = orjson.loads((self.data_dir / "launcher.json").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) and data.get("pid") == self.proc.pid else {}

    def children(self) -> dict[str, int]:
        return {role: int(key[0]) for role, key in (self.state().get("children") or {}).items()}

    def wait_for(self, what: str, check: Any, timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while not (found := check()):
            assert self.proc.poll() is None, f"launcher exited:\n{''.join(self.lines[-40:])}"
            assert time.monotonic() < deadline, f"{what}:\n{''.join(self.lines[-40:])}"
            time.sleep(0.1)
        return found

    def wait_ready(self) -> int:
        port = int(self.wait_for("no HTTP port recorded", lambda: self.state().get("http_port")))

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                    return bool(r.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        self.wait_for("never ready", ready)
        return port

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _json_lines(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
        out.append(entry)
    return out


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProc]:
    sb = start_sandbox(
        "--guilds", "4", "--members", "5", "--identify-interval", "0.2", "--max-concurrency", "2"
    )
    try:
        yield sb
    finally:
        sb.proc.terminate()
        sb.proc.wait(10)


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DISCORD_", "THROTTLE_", "DATABASE_URL", "REDIS_URL", "DATA_DIR"))
    }
    env.update(LOG_FORMAT="json", LOG_LEVEL="INFO", HTTP_PORT="0", **extra)
    return env


async def _answers(sandbox: SandboxProc, content: str) -> list[dict[str, Any]]:
    """Everything the bot sends in a channel within a few seconds of one message."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sandbox.control}/_sandbox/world") as resp:
            world = await resp.json()
        driver = Driver(http, sandbox.control, world)
        guild = world["guilds"][0]
        channel = next(int(c["id"]) for c in guild["channels"] if c.get("type", 0) == 0)
        bot_id = int(world["bot"]["id"])
        author = next(int(m["id"]) for m in guild["members"] if int(m["id"]) != bot_id)
        await driver.drain(channel)
        await driver.say(channel, author, content)
        # Two answers would arrive within a moment of each other: wait for a second one.
        return await driver.replies(channel, wait=5, count=2)


def test_sigkill_of_the_launcher_ends_its_workers_and_a_relaunch_answers_once(
    sandbox: SandboxProc, bot_db: str, redis_url: str, tmp_path: Path
) -> None:
    env = _env(
        DISCORD_TOKEN=sandbox.info["token"],
        DISCORD_API_URL=sandbox.info["api_url"],
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
        deadline = time.monotonic() + 5
        while not all(_gone(pid) for pid in workers.values()):
            assert time.monotonic() < deadline, f"workers outlived their launcher: {workers}"
            time.sleep(0.1)
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
        assert all(_gone(pid) for pid in workers.values())
        entries = _json_lines(second.lines)
        errors = [e for e in entries if e["level"] in ("ERROR", "CRITICAL")]
        assert not errors, errors
        assert not (tmp_path / "launcher.json").exists()
    finally:
        second.kill()


def test_sigkill_of_the_launcher_ends_the_sandbox_it_started(
    bot_db: str, redis_url: str, tmp_path: Path
) -> None:
    env = _env(
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
        deadline = time.monotonic() + 5
        while not all(_gone(pid) for pid in children.values()):
            assert time.monotonic() < deadline, f"outlived their launcher: {children}"
            time.sleep(0.1)
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
