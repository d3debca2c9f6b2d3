"""Shared fixtures: one real PostgreSQL and one real Redis for the whole test session.

With DATABASE_URL / REDIS_URL in the environment the tests use those servers; without them,
embedded servers from the wheels are started once, under a temporary DATA_DIR, and stopped at
the end. Each test that needs a clean database gets its own (`fresh_dsn`); each test that needs
Redis gets its own key prefix (`redis_prefix`), so tests never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from cluster.embedded import services
from ipc.client import Keys, create_redis


@pytest.fixture(scope="session")
def backing() -> Iterator[dict[str, str]]:
    want_pg = not os.environ.get("DATABASE_URL")
    want_redis = not os.environ.get("REDIS_URL")
    # Outside pytest's temporary tree: another pytest session on the machine prunes old runs'
    # directories there and resets its root to 0700, either of which pulls the data directory
    # from under a running PostgreSQL (which runs as an unprivileged user on a root shell).
    data_dir = Path(tempfile.mkdtemp(prefix="guildhouse-tests-"))
    try:
        with services(data_dir, postgres=want_pg, redis=want_redis) as found:
            yield {
                "database_url": os.environ.get("DATABASE_URL") or found["postgres"].url,
                "redis_url": os.environ.get("REDIS_URL") or found["redis"].url,
            }
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(backing: dict[str, str]) -> str:
    return backing["database_url"]


@pytest.fixture(scope="session")
def redis_url(backing: dict[str, str]) -> str:
    return backing["redis_url"]


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture
async def fresh_dsn(database_url: str) -> AsyncIterator[str]:
    """A new, empty database on the session's server, dropped after the test."""
    name = "t_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield _with_database(database_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def redis_prefix() -> str:
    return f"test:{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def keys(redis_prefix: str) -> Keys:
    return Keys(redis_prefix)


@pytest.fixture
async def redis(redis_url: str, redis_prefix: str) -> AsyncIterator[aioredis.Redis]:
    client = create_redis(redis_url)
    try:
        yield client
        async for key in client.scan_iter(match=redis_prefix + "*", count=500):
            await client.delete(key)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
