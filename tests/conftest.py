"""Shared fixtures: one real PostgreSQL and one real Redis for the whole test session.

With DATABASE_URL / REDIS_URL in the environment the tests use those servers; without them,
embedded servers from the wheels are started once, under a temporary DATA_DIR, and stopped at
the end. Each test that needs an empty database gets its own (`fresh_dsn`); one that needs the
schema gets a clone of a template database migrated once a session (`migrated_dsn`, and `pool`
on it); each test that needs Redis gets its own key prefix (`redis_prefix`), so tests never see
each other's data.

The kind of a test follows from what it uses, not from where it lives (the folders mirror the
packages): `pytest_collection_modifyitems` marks `integration` every test that uses the servers
(the `backing` fixture, directly or through another) or whose module starts embedded or
killable servers of its own, and `e2e` every test under tests/e2e. `backing` refuses a test that
reached it without the mark (through `request.getfixturevalue`), so the fast set,
`-m "not e2e and not integration"`, never needs a server.
"""

from __future__ import annotations

import functools
import inspect
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from databases import clone_template, create_database, drop_database, drop_named

from bot.db import migrations
from bot.db.pool import connect, create_pool
from cluster.embedded import services
from ipc.client import Keys, create_redis

TESTS = Path(__file__).resolve().parent
# A module that holds one of these names, or a test or fixture of tests/ whose code names one,
# starts PostgreSQL or Redis of its own.
_OWN_SERVERS = (
    "services",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "KillablePostgres",
    "KillableRedis",
)
_NAMED_IN_CODE = (*_OWN_SERVERS[1:], "REDIS_SERVER_PATH", "SentinelSet")


@functools.cache
def _names_a_server(function: Callable[..., object]) -> bool:
    try:
        if not Path(inspect.getsourcefile(function) or "").resolve().is_relative_to(TESTS):
            return False
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False
    return any(name in source for name in _NAMED_IN_CODE)


def _starts_servers(item: pytest.Item) -> bool:
    module = getattr(item, "module", None)
    if module is not None and any(hasattr(module, name) for name in _OWN_SERVERS):
        return True
    functions = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    if info is not None:
        functions += [d.func for defs in info.name2fixturedefs.values() for d in defs]
    return any(f is not None and _names_a_server(f) for f in functions)


def _kind(item: pytest.Item) -> str | None:
    path = Path(str(item.path)).resolve()
    if (TESTS / "e2e") in path.parents:
        return "e2e"
    if "backing" in getattr(item, "fixturenames", ()) or _starts_servers(item):
        return "integration"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        kind = _kind(item)
        if kind is not None and item.get_closest_marker(kind) is None:
            item.add_marker(kind)
    _longest_first(config, items)


def _longest_first(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with `slow` tests first, those with the longest timeout first among them; each
    file's tests stay together and in order. The suite runs in worker processes, a file to a
    worker (`--dist loadfile`), handed out in this order: a file of minutes (the soak) started
    last would run alone at the end."""
    default = float(config.getini("timeout") or 0)
    rank: dict[Path, tuple[bool, float]] = {}
    for item in items:
        marker = item.get_closest_marker("timeout")
        bound = float(marker.args[0]) if marker and marker.args else default
        slow, longest = rank.get(item.path, (False, 0.0))
        rank[item.path] = (slow or item.get_closest_marker("slow") is not None, max(longest, bound))
    items.sort(key=lambda item: (not rank[item.path][0], -rank[item.path][1]))


def _marked(request: pytest.FixtureRequest) -> bool:
    node = request.node
    return any(node.get_closest_marker(k) is not None for k in ("integration", "e2e"))


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


@pytest.fixture(autouse=True)
def _servers_only_when_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that asked for the servers at run time (`getfixturevalue`) escaped the marking
    at collection: it errors, naming the mark it needs, rather than sit in the fast set."""
    yield
    if "backing" in request.fixturenames and not _marked(request):
        pytest.fail(f"{request.node.nodeid} uses PostgreSQL/Redis: mark it integration")


@pytest.fixture(scope="session")
async def template_db(database_url: str) -> AsyncIterator[str]:
    """A database migrated once a session; `migrated_dsn` clones it (CREATE DATABASE ...
    TEMPLATE copies files, far quicker than applying every migration again). Nothing may stay
    connected to it, or the copy is refused."""
    name = "tpl_" + uuid.uuid4().hex[:12]
    conn = await connect(await create_database(database_url, name))
    try:
        await migrations.apply(conn)
    finally:
        await conn.close()
    yield name
    await drop_named(database_url, name)


@pytest.fixture
async def fresh_dsn(database_url: str) -> AsyncIterator[str]:
    """A new, empty database on the session's server, dropped after the test."""
    dsn = await create_database(database_url, "t_" + uuid.uuid4().hex[:12])
    yield dsn
    await drop_database(database_url, dsn)


@pytest.fixture
async def migrated_dsn(database_url: str, template_db: str) -> AsyncIterator[str]:
    """A new database with every migration applied (a clone of `template_db`), dropped after
    the test."""
    dsn = await clone_template(database_url, template_db)
    yield dsn
    await drop_database(database_url, dsn)


@pytest.fixture
async def pool(migrated_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool (at most 10 connections) on a migrated database of the test's own."""
    p = await create_pool(migrated_dsn, min_size=1, max_size=10)
    try:
        yield p
    finally:
        await p.close()


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
