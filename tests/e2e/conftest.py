"""End to end: the real bot (real discord.py, real Postgres and Redis) against the sandbox.

The sandbox runs as its own process (`python -m sandbox`), exactly as `guildhouse run` starts
it, and is driven through its HTTP control API (`/_sandbox/...`), as a user testing their own
cogs would. Workers are started by the launcher's supervisor, as separate processes.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import asyncpg
import pytest
from e2e_harness import Driver, SandboxProc, start_sandbox

from bot.db import migrations


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProc]:
    sb = start_sandbox(
        "--guilds",
        "6",
        "--members",
        "20",
        "--seed",
        "7",
        "--identify-interval",
        "0.2",
        "--route-window",
        "1",
    )
    try:
        yield sb
    finally:
        sb.proc.terminate()
        try:
            sb.proc.wait(10)
        except subprocess.TimeoutExpired:
            sb.proc.kill()


@pytest.fixture
async def driver(sandbox: SandboxProc) -> AsyncIterator[Driver]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sandbox.control}/_sandbox/world") as resp:
            world = await resp.json()
        yield Driver(http, sandbox.control, world)


@pytest.fixture(scope="module")
async def bot_db(database_url: str) -> AsyncIterator[str]:
    """A migrated database for the module's bot."""
    name = "e2e_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = database_url.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(dsn)
    await migrations.apply(conn)
    await conn.close()
    yield dsn
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()
