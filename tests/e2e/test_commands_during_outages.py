"""A worker through an outage of PostgreSQL, then of Redis: the real bot against the sandbox,
with servers of the test's own that it kills with SIGKILL and starts again on the same port.

While a server is down, a command that needs it answers one clear line (no error id), the
worker logs one WARNING for the outage (not an ERROR per command) and an INFO when it ends,
and the same worker process answers normally once the server is back: nothing restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from e2e_harness import Driver, SandboxProc, plain_members, start_cluster, text_channels, world_of
from killable import KillablePostgres, KillableRedis
from waits import until

from bot.db import migrations
from bot.errors import UNAVAILABLE
from cluster.workers import Supervisor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DATABASE_DOWN = UNAVAILABLE["postgres"]
REDIS_DOWN = UNAVAILABLE["redis"]
BOARDS_DOWN = "The leaderboards are unavailable right now; try again shortly."
WAIT = 30.0  # for an answer while Redis is down: each Redis call retries before it gives up


@contextlib.contextmanager
def stdout_to(path: Path) -> Iterator[None]:
    """Point this process's fd 1 at `path` while workers are spawned: they inherit it, and
    write their JSON log lines there for as long as they run."""
    sys.stdout.flush()
    saved = os.dup(1)
    with path.open("ab") as out:
        os.dup2(out.fileno(), 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@dataclass
class Env:
    supervisor: Supervisor
    postgres: KillablePostgres
    redis: KillableRedis
    log: Path
    channel_id: int
    member_id: int

    def mark(self) -> int:
        return self.log.stat().st_size

    def records(self, since: int) -> list[dict[str, Any]]:
        """The worker's log records written since `since` (a mark)."""
        with self.log.open("rb") as f:
            f.seek(since)
            lines = f.read().splitlines()
        out = []
        for line in lines:
            with contextlib.suppress(orjson.JSONDecodeError):
                record = orjson.loads(line)
                if isinstance(record, dict) and "level" in record:
                    out.append(record)
        return out

    async def logged(self, since: int, level: str, text: str) -> list[str]:
        """The outage lines matching, once there is one: an outage's end is logged when
        something in the worker next reaches the server, which a command alone may not do
        (a loop's next retry does, within its backoff)."""
        found: list[str] = []

        def seen() -> bool:
            found[:] = outage_records(self.records(since), level, text)
            return bool(found)

        await until(f"{level} {text!r} logged", seen, within=WAIT)
        return found

    def worker_pid(self) -> int | None:
        return self.supervisor.workers[0].pid


@pytest.fixture(scope="module")
async def env(sandbox: SandboxProc, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    root = tmp_path_factory.mktemp("e2e-outages")
    postgres, redis = KillablePostgres(root), KillableRedis(root)
    await asyncio.to_thread(postgres.start)
    await asyncio.to_thread(redis.start)
    try:
        conn = await asyncpg.connect(postgres.url)
        try:
            await migrations.apply(conn)
        finally:
            await conn.close()
        guild = (await world_of(sandbox))["guilds"][0]
        channel = text_channels(guild)[0]
        owner = int(guild["owner_id"])
        member = plain_members(guild)[0]
        log = root / "workers.log"
        with pytest.MonkeyPatch.context() as mp, stdout_to(log):
            mp.setenv("E2E_LOG_LEVEL", "INFO")  # the INFO that ends an outage, too
            supervisor = await start_cluster(
                sandbox, postgres.url, redis.url, shards=1, clusters=1, owner_id=owner
            )
        try:
            yield Env(supervisor, postgres, redis, log, channel, member)
        finally:
            await supervisor.stop()
    finally:
        await asyncio.to_thread(redis.stop)
        await asyncio.to_thread(postgres.stop)


def outage_records(records: list[dict[str, Any]], level: str, text: str) -> list[str]:
    return [
        r["message"]
        for r in records
        if r["level"] == level and r.get("logger") == "bot.outages" and text in r["message"]
    ]


def errors_in(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["level"] in ("ERROR", "CRITICAL")]


def warnings_in(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Each WARNING's logger and the start of its message (the one worker's, from any
    logger)."""
    return [
        (r.get("logger", ""), r["message"][: len("Redis is unreachable")])
        for r in records
        if r["level"] == "WARNING"
    ]


def lines(records: list[dict[str, Any]]) -> str:
    """The records as a failed assertion shows them: one per line."""
    return "\n".join(f"{r['level']} {r.get('logger')}: {r['message']}" for r in records)


async def test_a_postgres_outage_answers_one_clear_line_and_logs_one_warning(
    env: Env, driver: Driver
) -> None:
    channel, member = env.channel_id, env.member_id
    pid = env.worker_pid()
    await driver.drain(channel)
    await driver.say(channel, member, "!macro save dodge 6! tn4")
    assert "dodge" in await driver.reply_text(channel)

    since = env.mark()
    await asyncio.to_thread(env.postgres.kill)
    try:
        # Chat goes on: its XP settings can't be read (never loaded in this worker), which
        # the outage's one WARNING covers too.
        for n in range(3):
            await driver.say(channel, member, f"chatting away, line {n}")
        for command in ("!history", "!macro", "!remind list", "!achievements", "!history"):
            await driver.say(channel, member, command)
            assert await driver.reply_text(channel) == DATABASE_DOWN, command
        await driver.slash(channel, member, "history")
        assert await driver.reply_text(channel) == DATABASE_DOWN
        # An event handler that writes (the bot removed from another server) meets the same
        # outage: no ERROR with a traceback of its own.
        gone = int(driver.world["guilds"][-1]["id"])
        body = {"kind": "guild_delete", "guild_id": str(gone)}
        async with driver.http.post(f"{driver.base}/_sandbox/events", json=body) as resp:
            assert resp.status == 200, await resp.text()
        # Commands that don't need the database work as ever.
        await driver.say(channel, member, "!roll 2d6")
        assert "rolled" in await driver.reply_text(channel)
        during = env.records(since)
        # One WARNING in all, from whichever use found the server gone first.
        warnings = [r["message"] for r in during if r["level"] == "WARNING"]
        assert len(warnings) == 1 and warnings[0].startswith("PostgreSQL is unreachable")
        assert errors_in(during) == []
    finally:
        await asyncio.to_thread(env.postgres.restart)

    # The same worker, with no restart, answers from the database again.
    await driver.say(channel, member, "!macro")
    assert "dodge" in await driver.reply_text(channel)
    assert len(await env.logged(since, "INFO", "PostgreSQL is reachable again")) == 1
    records = env.records(since)
    assert len(outage_records(records, "WARNING", "PostgreSQL is unreachable")) == 1
    assert errors_in(records) == []
    assert env.worker_pid() == pid and env.supervisor.workers[0].restarts == 0


async def test_a_redis_outage_answers_one_clear_line_and_logs_one_warning(
    env: Env, driver: Driver
) -> None:
    channel, member = env.channel_id, env.member_id
    pid = env.worker_pid()
    await driver.drain(channel)
    since = env.mark()
    await asyncio.to_thread(env.redis.kill)
    try:
        await driver.say(channel, member, "!top")
        assert await driver.reply_text(channel, wait=WAIT) == BOARDS_DOWN
        await driver.say(channel, member, "!about")  # asks every cluster over the IPC bus
        assert await driver.reply_text(channel, wait=WAIT) == REDIS_DOWN
        await driver.say(channel, member, "!macro")  # PostgreSQL only
        assert "dodge" in await driver.reply_text(channel, wait=WAIT)
        during = env.records(since)
        # One WARNING in all: the IPC bus, the throttles, the REST limiter, the registry
        # publish and the settings listener each notice the outage, and each says at INFO
        # what it does meanwhile.
        assert warnings_in(during) == [("bot.outages", "Redis is unreachable")], lines(during)
        assert errors_in(during) == []
    finally:
        await asyncio.to_thread(env.redis.restart)

    await driver.say(channel, member, "!about")
    assert "1 clusters" in await driver.reply_text(channel, wait=WAIT)
    await driver.say(channel, member, "!top")
    assert (await driver.reply_text(channel, wait=WAIT)).startswith("Top of ")
    assert len(await env.logged(since, "INFO", "Redis is reachable again")) == 1
    records = env.records(since)
    # Nor a WARNING from a component that finds Redis back: each says so at INFO.
    assert warnings_in(records) == [("bot.outages", "Redis is unreachable")], lines(records)
    assert len(outage_records(records, "INFO", "Redis is reachable again")) == 1
    assert errors_in(records) == []
    assert env.worker_pid() == pid and env.supervisor.workers[0].restarts == 0
