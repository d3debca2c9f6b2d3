"""Which errors mean "PostgreSQL (or Redis) can't be reached", and the worker's one view of
each server: a WARNING when an outage starts, an INFO when it ends, nothing in between."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator

import asyncpg
import pytest
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from bot import metrics, outages
from bot.cogs.leveling.service import LevelingService
from ipc.client import Degraded, Keys, process_cluster, redis_outage


def closed_port() -> int:
    """A port nothing listens on (bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fresh_view() -> Iterator[outages.Server]:
    """A tracker of its own, so other tests' errors don't decide what this one logs."""
    yield outages.Server("postgres", "PostgreSQL")


def value(metric: object, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CrashShutdownError("terminating connection because of crash of another"),
        asyncpg.exceptions.ConnectionFailureError("connection failure"),
        asyncpg.InterfaceError("cannot perform operation: connection is closed"),
        asyncpg.InterfaceError("pool is closing"),
    ],
)
def test_postgres_outage_errors(exc: BaseException) -> None:
    assert outages.server_of(exc) == outages.POSTGRES


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),  # 57014
        asyncpg.exceptions.ProtocolViolationError("protocol violation"),  # 08P01: a bug
        asyncpg.InterfaceError("cannot call Connection.fetch(): connection has been released"),
        redis_errors.ResponseError("WRONGTYPE Operation against a key"),
        redis_errors.AuthenticationError("invalid password"),
        ValueError("bad"),
        OSError("no such file"),  # not raised by a database client
        RuntimeError("boom"),
    ],
)
def test_other_errors_are_not_outages(exc: BaseException) -> None:
    assert outages.server_of(exc) is None


@pytest.mark.parametrize(
    "exc",
    [
        redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:6379"),
        redis_errors.TimeoutError("Timeout reading from socket"),
        redis_errors.BusyLoadingError("Redis is loading the dataset in memory"),
    ],
)
def test_redis_outage_errors(exc: BaseException) -> None:
    assert outages.server_of(exc) == outages.REDIS


async def test_a_refused_connection_is_told_apart_by_the_client_it_came_through() -> None:
    port = closed_port()
    with pytest.raises(OSError) as from_postgres:
        await asyncpg.connect(f"postgresql://x@127.0.0.1:{port}/x", timeout=5)
    assert outages.server_of(from_postgres.value) == outages.POSTGRES
    client = aioredis.Redis(port=port, retry=None)
    try:
        with pytest.raises(redis_errors.ConnectionError) as from_redis:
            await client.ping()
    finally:
        await client.aclose()
    assert outages.server_of(from_redis.value) == outages.REDIS
    with pytest.raises(OSError) as elsewhere:
        await asyncio.open_connection("127.0.0.1", port)
    assert outages.server_of(elsewhere.value) is None


def test_explicit_causes_and_groups_are_followed() -> None:
    refused = asyncpg.CannotConnectNowError("starting up")
    try:
        raise RuntimeError("wrapped") from refused
    except RuntimeError as exc:
        assert outages.server_of(exc) == outages.POSTGRES
    try:
        try:
            raise refused
        except asyncpg.PostgresError:
            raise ValueError("a bug while handling it") from None
    except ValueError as exc:
        assert outages.server_of(exc) is None  # only `raise ... from` counts
    both = ExceptionGroup("two", [refused, asyncpg.InterfaceError("connection is closed")])
    assert outages.server_of(both) == outages.POSTGRES
    mixed = ExceptionGroup("two", [refused, ValueError("bug")])
    assert outages.server_of(mixed) is None


def test_one_warning_per_outage_and_an_info_when_it_ends(
    fresh_view: outages.Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.outages")
    down = value(metrics.BACKEND_OUTAGES, process_cluster(), "postgres")
    fresh_view.reachable()
    assert value(metrics.BACKEND_DOWN, process_cluster(), "postgres") == 0
    for n in range(5):
        fresh_view.failed(ConnectionRefusedError(111, "refused"), f"command {n}")
    assert fresh_view.down and value(metrics.BACKEND_DOWN, process_cluster(), "postgres") == 1
    fresh_view.reachable()
    fresh_view.reachable()
    fresh_view.failed(asyncpg.CannotConnectNowError("starting up"), "the XP flusher")
    fresh_view.reachable()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == [
        logging.WARNING,
        logging.INFO,
        logging.WARNING,
        logging.INFO,
    ]
    assert lines[0][1].startswith("PostgreSQL is unreachable (command 0: ConnectionRefusedError")
    assert lines[1][1].startswith("PostgreSQL is reachable again after ")
    assert value(metrics.BACKEND_OUTAGES, process_cluster(), "postgres") == down + 2
    assert value(metrics.BACKEND_DOWN, process_cluster(), "postgres") == 0
    assert fresh_view.outages == 2


def test_the_redis_view_is_the_one_ipc_reports_to(caplog: pytest.LogCaptureFixture) -> None:
    """A component of ipc/ that meets a Redis outage counts it in the worker's metrics and
    logs it as bot.outages does PostgreSQL's; its own line is INFO."""
    assert outages.redis is redis_outage is outages.SERVERS[outages.REDIS]
    outages.redis.reachable()  # an earlier test may have left an outage on it
    caplog.set_level(logging.INFO)
    before = value(metrics.BACKEND_OUTAGES, process_cluster(), "redis")
    limiter = Degraded(
        logging.getLogger("ipc.ratelimit"),
        "REST limiter: Redis unreachable (%s); limiting this process",
        "REST limiter: Redis is back",
        what="the REST limiter",
    )
    limiter.failed(redis_errors.ConnectionError("Connection closed by server."))
    assert outages.note(redis_errors.TimeoutError("Timeout"), "command top") == outages.REDIS
    assert value(metrics.BACKEND_DOWN, process_cluster(), "redis") == 1
    limiter.succeeded()
    assert value(metrics.BACKEND_DOWN, process_cluster(), "redis") == 0
    assert value(metrics.BACKEND_OUTAGES, process_cluster(), "redis") == before + 1
    assert [(r.levelname, r.name, r.getMessage()[:31]) for r in caplog.records] == [
        ("WARNING", "bot.outages", "Redis is unreachable (the REST "),
        ("INFO", "ipc.ratelimit", "REST limiter: Redis unreachable"),
        ("INFO", "bot.outages", "Redis is reachable again after "),
        ("INFO", "ipc.ratelimit", "REST limiter: Redis is back"),
    ]


async def test_achievement_counts_skip_an_unreachable_database(
    redis: aioredis.Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """A finished command is counted towards achievements in PostgreSQL afterwards; without
    it the count is skipped (the command worked), and nothing is logged as an error."""
    pool = await asyncpg.create_pool(
        f"postgresql://x@127.0.0.1:{closed_port()}/x", min_size=0, max_size=1
    )
    service = LevelingService(pool, redis, keys)
    try:
        assert await service.achievements.command_done(1, 2) == []
        assert await service.achievements.dice_rolled(1, 2, 5) == []
    finally:
        await pool.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
