"""A worker's background work through an outage of PostgreSQL or Redis.

The servers are the test's own (tests/killable.py): killed with SIGKILL, then started again on
the same port over the same data, as the launcher does. What must hold: the asyncpg pool
replaces the connections the dead server dropped; the reminder scheduler and the XP flusher
keep retrying (never die) and, once the server is back, deliver and flush what was due or
counted, exactly once; the Redis subscribers (settings invalidation, IPC bus, throttles,
reminder wake-ups) subscribe again by themselves; each outage is logged once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis
from killable import KillablePostgres, KillableRedis
from redis.exceptions import RedisError
from waits import until

from bot import jobs, metrics, outages
from bot.cogs.leveling.flusher import Flusher
from bot.cogs.reminders import store as reminders
from bot.cogs.reminders.outbox import Due
from bot.cogs.reminders.plan import Plan, Series
from bot.cogs.reminders.render import Rendered
from bot.cogs.reminders.sender import Sender
from bot.db import migrations
from bot.db.pool import create_pool
from bot.guild_cache import GuildCache
from ipc.bus import Bus, BusError
from ipc.client import Keys, create_redis
from ipc.leaderboard import Award, Leaderboard
from ipc.registry import ClusterInfo, Registry
from ipc.throttle import Rule, Throttle

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

NOW = datetime.now(UTC)
# Each wait's deadline (a killed server's restart and a loop's backoff on a loaded machine):
# it only bounds a broken run; nothing is timed.
WITHIN = 90.0


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[KillablePostgres, KillableRedis]]:
    root = tmp_path_factory.mktemp("outages")
    pg, rd = KillablePostgres(root), KillableRedis(root)
    pg.start()
    try:
        rd.start()
        try:
            yield pg, rd
        finally:
            rd.stop()
    finally:
        pg.stop()


@pytest.fixture
async def pg(servers: tuple[KillablePostgres, KillableRedis]) -> AsyncIterator[KillablePostgres]:
    server = servers[0]
    yield server
    if not server.running:  # a test that failed half way: the next one needs it running
        await asyncio.to_thread(server.restart)


@pytest.fixture
async def rd(servers: tuple[KillablePostgres, KillableRedis]) -> AsyncIterator[KillableRedis]:
    server = servers[1]
    yield server
    if not server.running:
        await asyncio.to_thread(server.restart)


@pytest.fixture
async def dsn(pg: KillablePostgres) -> AsyncIterator[str]:
    """A migrated database of its own on the killable server."""
    name = "t_" + uuid.uuid4().hex[:12]
    dsn = urlunsplit(urlsplit(pg.url)._replace(path="/" + name))
    admin = await asyncpg.connect(pg.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(dsn)
        await migrations.apply(conn)
        await conn.close()
        yield dsn
    finally:
        await admin.close()
    if not pg.running:
        await asyncio.to_thread(pg.restart)
    admin = await asyncpg.connect(pg.url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(autouse=True)
def both_reachable() -> None:
    """Each test starts with the worker's view of both servers reachable (an earlier test may
    have left an error on it)."""
    for view in outages.SERVERS.values():
        view.reachable()


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "bot.outages"]


def counter(metric: object, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())  # type: ignore[attr-defined]


# -- PostgreSQL ----------------------------------------------------------------------------------


async def test_the_pool_replaces_dropped_connections_once_postgres_is_back(
    pg: KillablePostgres, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.outages")
    pool = await create_pool(dsn, min_size=2, max_size=2)
    try:
        async with pool.acquire() as a, pool.acquire() as b:
            before = {await c.fetchval("SELECT pg_backend_pid()") for c in (a, b)}
        await asyncio.to_thread(pg.kill)
        for _ in range(5):  # whatever each attempt meets: a dropped connection, a refusal
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)) as failed:
                await pool.fetchval("SELECT 1")
            assert outages.server_of(failed.value) == outages.POSTGRES, repr(failed.value)
        assert outages.postgres.down
        await asyncio.to_thread(pg.restart)
        # The same pool, no restart: both holders connect afresh on their next acquire.
        async with pool.acquire() as a, pool.acquire() as b:
            after = {await c.fetchval("SELECT pg_backend_pid()") for c in (a, b)}
        assert len(after) == 2 and after.isdisjoint(before)
    finally:
        await pool.close()
    assert not outages.postgres.down
    lines = outage_lines(caplog)
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert lines[0][1].startswith("PostgreSQL is unreachable")
    assert lines[1][1].startswith("PostgreSQL is reachable again")


@dataclass
class Sink:
    """Where reminders go instead of Discord: records sends, finds them by nonce."""

    sent: list[str] = field(default_factory=list)
    on_send: Callable[[], Awaitable[object]] | None = None

    async def find(self, due: Due, since: datetime) -> int | None:
        return self.sent.index(due.nonce) + 1 if due.nonce in self.sent else None

    async def send(self, due: Due, message: Rendered) -> int:
        self.sent.append(due.nonce)  # Discord has it now
        if self.on_send is not None:
            await self.on_send()
        return len(self.sent)


async def add_dm_reminder(pool: asyncpg.Pool, at: datetime) -> None:
    series = Series(
        first_at=at, local_at=at.replace(tzinfo=None), zone="UTC", leads=(0,), until=None
    )
    plan = Plan(message="Session", series=series, target="me", via="dm")
    await reminders.create(pool, plan, author_id=1, guild_id=None, channel_id=100, limit=100)


async def statuses(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT status, count(*) AS n FROM reminder_deliveries GROUP BY 1")
    return {r["status"]: r["n"] for r in rows}


def scheduler(
    pool: asyncpg.Pool, sink: Sink, name: str, *, lease: float = 5.0, **options: object
) -> jobs.JobRunner:
    """A worker's job runner with the reminders' kind (bot/cogs/reminders/sender.py)."""
    kw: dict[str, object] = {"max_sleep": 0.2, "max_backoff": 0.3}
    kw.update(options)
    runner = jobs.JobRunner(
        pool,
        worker=name,
        shard_count=1,
        shard_ids=[0],
        cluster=name,
        **kw,  # type: ignore[arg-type]
    )
    runner.register(Sender(pool, sink, cluster=name, lease=lease).kind())
    return runner


async def test_a_reminder_due_during_a_postgres_outage_is_sent_once_after_it(
    pg: KillablePostgres, dsn: str
) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=4)
    sink = Sink()
    due = datetime.now(UTC) + timedelta(seconds=1)
    await add_dm_reminder(pool, due)
    s = scheduler(pool, sink, "outage")
    await s.start()
    try:
        await asyncio.to_thread(pg.kill)
        # The scheduler keeps trying while the reminder falls due.
        await until(
            "three failed rounds, the reminder due meanwhile",
            lambda: s.failed_rounds >= 3 and datetime.now(UTC) > due,
            within=WITHIN,
        )
        assert sink.sent == [] and s._task is not None and not s._task.done()
        await asyncio.to_thread(pg.restart)
        await until("the reminder sent", lambda: len(sink.sent) == 1, within=WITHIN)
        await until(
            "its delivery marked sent", lambda: _equal(statuses(pool), {"sent": 1}), within=WITHIN
        )
        rounds = s.rounds
        # And nothing more is sent meanwhile.
        await until("five more rounds", lambda: s.rounds >= rounds + 5, within=WITHIN)
    finally:
        await s.stop()
        await pool.close()
    assert len(sink.sent) == 1


async def test_a_send_whose_mark_the_outage_lost_is_not_sent_again(
    pg: KillablePostgres, dsn: str
) -> None:
    """PostgreSQL dies between the send and its mark: the delivery stays claimed until its
    lease passes; the claim after that finds the message by its nonce and marks it sent."""
    pool = await create_pool(dsn, min_size=1, max_size=4)
    sink = Sink(on_send=lambda: asyncio.to_thread(pg.kill))
    await add_dm_reminder(pool, datetime.now(UTC) - timedelta(seconds=1))
    already = counter(metrics.REMINDERS_FIRED, "lost-mark", "already_sent")
    s = scheduler(pool, sink, "lost-mark", lease=2.0)
    await s.start()
    try:
        await until(
            "the send, then a failed round (its mark lost)",
            lambda: len(sink.sent) == 1 and s.failed_rounds >= 1,
            within=WITHIN,
        )
        sink.on_send = None
        await asyncio.to_thread(pg.restart)
        await until(
            "the delivery marked sent, found by its nonce",
            lambda: _equal(statuses(pool), {"sent": 1}),
            within=WITHIN,
        )
    finally:
        await s.stop()
        await pool.close()
    assert len(sink.sent) == 1
    assert counter(metrics.REMINDERS_FIRED, "lost-mark", "already_sent") == already + 1


async def _equal(got: Awaitable[object], expected: object) -> bool:
    return await got == expected


async def xp_rows(pool: asyncpg.Pool) -> tuple[int, int, int]:
    row = await pool.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT award_id) AS ids, coalesce(sum(amount), 0) AS xp "
        "FROM xp_events"
    )
    assert row is not None
    return row["n"], row["ids"], row["xp"]


async def count_awards(redis: aioredis.Redis, keys: Keys, n: int) -> None:
    board = Leaderboard(redis, keys)
    for i in range(n):
        award = Award(f"m:{i}", 1, 10 + i % 3, 10, NOW, name=f"user{i % 3}", avatar=None)
        assert (await board.award(award)).awarded


async def test_xp_counted_before_a_postgres_outage_is_written_once_after_it(
    pg: KillablePostgres, dsn: str, redis: aioredis.Redis, keys: Keys
) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=4)
    await count_awards(redis, keys, 30)
    await asyncio.to_thread(pg.kill)
    flusher = Flusher(pool, redis, keys, "pg-outage", max_backoff=0.3)
    await flusher.start()
    try:
        # It read the entries and could not write them: they are pending under its name.
        await until("three failed flushes", lambda: flusher.failed_rounds >= 3, within=WITHIN)
        assert (await flusher.group.redis.xpending(flusher.group.stream, "flush"))["pending"] == 30
        await asyncio.to_thread(pg.restart)
        await until(
            "the 30 awards written once",
            lambda: _equal(xp_rows(pool), (30, 30, 300)),
            within=WITHIN,
        )
        assert await flusher.group.lag_seconds() == 0.0  # all acknowledged
        assert flusher._task is not None and not flusher._task.done()
    finally:
        await flusher.stop()
        await pool.close()


# -- Redis ---------------------------------------------------------------------------------------


async def test_xp_in_the_stream_outlives_a_redis_outage_and_is_written_once(
    rd: KillableRedis, pool: asyncpg.Pool, keys: Keys
) -> None:
    client = create_redis(rd.url)
    flusher = Flusher(pool, client, keys, "redis-outage", max_backoff=0.3)
    try:
        await count_awards(client, keys, 20)
        await asyncio.to_thread(rd.kill)
        await flusher.start()  # Redis down at start: the loop runs anyway
        await until("three failed flushes", lambda: flusher.failed_rounds >= 3, within=WITHIN)
        assert outages.redis.down
        await asyncio.to_thread(rd.restart)
        await until(
            "the 20 awards written once",
            lambda: _equal(xp_rows(pool), (20, 20, 200)),
            within=WITHIN,
        )
        # The flusher's rounds are how the worker learns that Redis answers again.
        await until("Redis seen reachable again", lambda: not outages.redis.down, within=WITHIN)
        assert await client.ping()  # the same client, reconnected
    finally:
        await flusher.stop()
        await client.aclose()


@dataclass
class Echo:
    text: str


async def test_redis_subscribers_subscribe_again_after_a_restart(
    rd: KillableRedis, pool: asyncpg.Pool, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.outages")
    one, other = create_redis(rd.url), create_redis(rd.url)
    stored = {"value": "old"}

    async def load(_: int) -> str:
        return stored["value"]

    channel = keys("events", "settings")
    here: GuildCache[str] = GuildCache(one, channel, load, what="test settings")
    there: GuildCache[str] = GuildCache(other, channel, load, what="test settings")
    asker, answerer = (
        Bus(one, keys, 0, Registry(one, keys)),
        Bus(other, keys, 1, Registry(other, keys)),
    )

    async def echo(req: Echo) -> str:
        return f"1:{req.text}"

    answerer.handle("echo", Echo, echo)
    throttle = Throttle(other, keys)
    wake = keys("reminders", "wake")
    woken = scheduler(pool, Sink(), "woken", max_sleep=3600, redis=other, wake_channel=wake)
    for cache in (here, there):
        await cache.start()
    await asker.start()
    await answerer.start()
    await throttle.start()
    await woken.start()
    try:
        await woken.subscribed()
        assert await there.get(7) == "old"

        await asyncio.to_thread(rd.kill)
        # Down long enough that the subscribers see it (redis-py's own retries give up), so
        # what is tested is their coming back, not a blip redis-py hid from them.
        await until("the outage seen", lambda: outages.redis.down, within=WITHIN)
        await asyncio.to_thread(rd.restart)

        # Settings: the renewed subscription drops what was cached (announcements may have
        # been missed), and a change announced from now on reaches the other worker.
        await until(
            "the renewed subscription drops the cached value",
            lambda: there.cached(7) is None,
            within=WITHIN,
        )
        assert await there.get(7) == "old"
        stored["value"] = "new"
        await here.announce(7)
        await until(
            "the announced change reaches the other worker",
            lambda: there.cached(7) is None,
            within=WITHIN,
        )
        assert await there.get(7) == "new"

        # IPC bus: a request from one cluster is answered by the other.
        await Registry(one, keys).publish(
            ClusterInfo(1, [1], os.getpid(), "test", "ready", time.time())
        )

        async def answered() -> bool:
            try:
                return bool(await asker.call(1, "echo", Echo("hi"), within=0.5) == "1:hi")
            except (BusError, RedisError, OSError):
                return False

        await until("the other cluster answers over the bus", answered, within=WITHIN)

        # Throttles: verdicts from Redis again, then decided here (the lost-window channel is
        # subscribed again, and the shared windows answer).
        rule = [("user:5", Rule.parse("1000/1m"))]

        async def decided_here() -> bool:
            before = throttle.decided_here
            assert (await throttle.hit(rule, "5:ping")).allowed
            return throttle.decided_here > before

        await until("a throttle verdict decided here", decided_here, within=WITHIN)

        # Reminder wake-ups: a notice wakes the scheduler out of an hour-long sleep.
        asleep = woken.rounds

        async def woke() -> bool:
            await one.publish(wake, b"new")  # again until one arrives: no wake-up is queued
            return woken.rounds > asleep

        await until("a wake-up notice wakes the scheduler", woke, within=WITHIN)
        assert await one.ping() and await other.ping()  # the clients reconnected
    finally:
        await woken.stop()
        await throttle.close()
        await asker.stop()
        await answerer.stop()
        for cache in (here, there):
            await cache.stop()
        await one.aclose()
        await other.aclose()
    lines = outage_lines(caplog)
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert lines[0][1].startswith("Redis is unreachable")
