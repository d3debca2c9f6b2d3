"""End to end: the real bot (real discord.py, real Postgres and Redis) against the sandbox.

The sandbox runs as its own process (`python -m sandbox`), exactly as `guildhouse run` starts
it, and is driven through its HTTP control API (`/_sandbox/...`), as a user testing their own
cogs would. Workers are started by the launcher's supervisor, as separate processes. The
pieces are in e2e_harness.py; every test here is marked `e2e` (tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from databases import clone_template, drop_database
from e2e_harness import Driver, SandboxProc, running_sandbox, world_of


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProc]:
    """One sandbox a module: 6 guilds of 20 members, quick IDENTIFYs, 1 s route windows."""
    with running_sandbox(
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
    ) as sb:
        yield sb


@pytest.fixture
async def driver(sandbox: SandboxProc) -> AsyncIterator[Driver]:
    world = await world_of(sandbox)
    async with aiohttp.ClientSession() as http:
        yield Driver(http, sandbox.control, world)


@pytest.fixture(scope="module")
async def bot_db(database_url: str, template_db: str) -> AsyncIterator[str]:
    """A migrated database for the module's bot (a clone of the session's template)."""
    dsn = await clone_template(database_url, template_db, prefix="e2e_")
    yield dsn
    await drop_database(database_url, dsn)
