"""The shared job scheduler (bot/jobs/) against real PostgreSQL and Redis: one job per key,
exactly once with racing runners, a SIGKILLed claimer's job run once after its lease, overdue
jobs marked late, the injected clock, retries, failures, routing by shard, wake-ups.

Handlers here record their effect in a table `effects` that has no unique constraint: a job
run twice would show up there twice.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from waits import until

from bot import jobs
from bot.db.pool import create_pool
from ipc.client import Keys

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KIND = "test.effect"
HOLDER = Path(__file__).with_name("claim_holder.py")
# Guild ids whose shard, (id >> 22) % 2, is 0 and 1.
GUILD_ON = {0: 2 << 22, 1: 3 << 22}


@pytest.fixture(autouse=True)
async def effects_table(pool: asyncpg.Pool) -> None:
    await pool.execute("CREATE TABLE effects (key TEXT NOT NULL, attempt INT, late BOOL)")


@pytest.fixture
async def pools(migrated_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[list[asyncpg.Pool]]:
    """Two more pools on the same database: two workers, each with its own connections."""
    made = [await create_pool(migrated_dsn, min_size=1, max_size=5) for _ in range(2)]
    yield made
    for p in made:
        await p.close()


async def record(run: jobs.Run) -> None:
    """The database-effect handler: the effect commits with the job's completion."""
    async with run.complete() as conn:
        await conn.execute(
            "INSERT INTO effects (key, attempt, late) VALUES ($1, $2, $3)",
            run.job.key,
            run.job.attempt,
            run.job.late,
        )


def runner(
    pool: asyncpg.Pool,
    name: str,
    *kinds: jobs.Kind,
    shards: list[int] | None = None,
    **options: object,
) -> jobs.JobRunner:
    settings: dict[str, object] = {"max_sleep": 0.2}
    settings.update(options)
    r = jobs.JobRunner(
        pool,
        worker=name,
        shard_count=2,
        shard_ids=[0, 1] if shards is None else shards,
        cluster=name,
        **settings,  # type: ignore[arg-type]
    )
    for kind in kinds or (jobs.Kind(KIND, record),):
        r.register(kind)
    return r


async def states(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT state, count(*) AS n FROM jobs GROUP BY 1")
    return {r["state"]: r["n"] for r in rows}


def done(pool: asyncpg.Pool, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await states(pool)).get("done", 0) == n

    return check


async def effects(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT key, attempt, late FROM effects ORDER BY key")


def ago(**kw: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kw)


# -- scheduling ----------------------------------------------------------------------------------


async def test_the_same_key_twice_is_one_job_and_reschedule_and_cancel_act_by_key(
    pool: asyncpg.Pool,
) -> None:
    at = datetime.now(UTC) + timedelta(hours=1)
    first = await jobs.store.schedule(pool, KIND, "a", at, guild_id=5, payload={"n": 1})
    again = await jobs.store.schedule(pool, KIND, "a", at + timedelta(hours=1), payload={"n": 2})
    assert first.created and not again.created
    assert (again.id, again.due_at, again.state) == (first.id, at, "pending")
    assert await pool.fetchval("SELECT payload FROM jobs") == {"n": 1}
    # The same key of another kind is another job.
    other = await jobs.store.schedule(pool, "test.other", "a", at)
    assert other.created and other.id != first.id

    later = at + timedelta(minutes=30)
    moved = await jobs.store.reschedule(pool, KIND, "a", later, payload={"n": 3})
    assert moved is not None and moved.due_at == later
    assert await pool.fetchval("SELECT payload FROM jobs WHERE id = $1", first.id) == {"n": 3}

    cancelled = await jobs.store.cancel(pool, KIND, "a")
    assert cancelled is not None and cancelled.state == "cancelled"
    # Neither moves nor revives a cancelled job; unknown keys are None.
    assert (await jobs.store.reschedule(pool, KIND, "a", at)).state == "cancelled"  # type: ignore[union-attr]
    assert await jobs.store.cancel(pool, KIND, "nope") is None
    assert await jobs.store.get(pool, KIND, "nope") is None


async def test_a_running_job_is_not_cancelled_or_moved(pool: asyncpg.Pool) -> None:
    release = asyncio.Event()

    async def slow(run: jobs.Run) -> None:
        await release.wait()

    await jobs.store.schedule(pool, KIND, "busy", ago(seconds=1))
    r = runner(pool, "w", jobs.Kind(KIND, slow))
    assert await r.run_due() == 1
    assert (await jobs.store.cancel(pool, KIND, "busy")).state == "running"  # type: ignore[union-attr]
    moved = await jobs.store.reschedule(pool, KIND, "busy", ago(hours=-1))
    assert moved is not None and moved.state == "running" and moved.due_at < datetime.now(UTC)
    release.set()
    await r.idle()
    assert await states(pool) == {"done": 1}


# -- exactly once --------------------------------------------------------------------------------


async def test_two_runners_racing_run_each_job_exactly_once(
    pool: asyncpg.Pool, pools: list[asyncpg.Pool]
) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=0.3)
    n = 150
    for i in range(n):
        guild = None if i % 3 == 0 else GUILD_ON[i % 2]
        await jobs.store.schedule(pool, KIND, f"k{i:03}", soon, guild_id=guild)
    a = runner(pools[0], "c0:a", batch=7)
    b = runner(pools[1], "c1:b", batch=7)
    await a.start()
    await b.start()
    try:
        await until(f"all {n} jobs done", done(pool, n))
    finally:
        await a.stop()
        await b.stop()
    rows = await effects(pool)
    assert [r["key"] for r in rows] == [f"k{i:03}" for i in range(n)]  # each once
    assert {r["attempt"] for r in rows} == {1}
    by = await pool.fetch("SELECT claimed_by, count(*) AS n FROM jobs GROUP BY 1")
    assert {r["claimed_by"] for r in by} == {"c0:a", "c1:b"}  # both took part


async def test_a_sigkilled_claimer_s_job_runs_once_after_its_lease(
    pool: asyncpg.Pool, migrated_dsn: str
) -> None:
    await jobs.store.schedule(pool, KIND, "held", ago(seconds=1))
    holder = subprocess.Popen(
        [sys.executable, str(HOLDER), migrated_dsn, "c7:holder", KIND, "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.to_thread(holder.stdout.readline)
        while line.strip() == "ready":
            line = await asyncio.to_thread(holder.stdout.readline)
        assert line.split() == ["running", "held", "1"]  # it holds the claim, mid-handler
    finally:
        holder.kill()  # SIGKILL: no stop(), no release
        holder.wait()
    row = await pool.fetchrow("SELECT state, claimed_by, attempts FROM jobs")
    assert dict(row) == {"state": "running", "claimed_by": "c7:holder", "attempts": 1}

    live = runner(pool, "c8:live")  # another cluster: it waits for the lease
    await live.start()
    try:
        await until("the killed claimer's job done after its lease", done(pool, 1))
    finally:
        await live.stop()
    assert [tuple(r) for r in await effects(pool)] == [("held", 2, False)]
    assert await pool.fetchval("SELECT claimed_by FROM jobs") == "c8:live"


async def test_a_restarted_cluster_takes_its_predecessor_s_claims_at_once(
    pool: asyncpg.Pool,
) -> None:
    await jobs.store.schedule(pool, KIND, "mine", ago(seconds=1), guild_id=GUILD_ON[0])
    await jobs.store.schedule(pool, KIND, "theirs", ago(seconds=1), guild_id=GUILD_ON[1])
    routing = jobs.store.Routing([KIND], 2, [0])
    await jobs.store.claim(pool, routing, worker="c1:old", leases={KIND: 600}, limit=5, now=None)
    routing = jobs.store.Routing([KIND], 2, [1])
    await jobs.store.claim(pool, routing, worker="c10:x", leases={KIND: 600}, limit=5, now=None)
    new = runner(pool, "c1:new")
    await new.start()  # frees c1:old's claim (not c10's: another cluster's live lease)
    try:
        await until("the predecessor's job done", done(pool, 1))
    finally:
        await new.stop()
    assert [tuple(r) for r in await effects(pool)] == [("mine", 2, False)]
    assert await states(pool) == {"done": 1, "running": 1}


async def test_stop_gives_back_a_job_whose_handler_hangs(
    pool: asyncpg.Pool, pools: list[asyncpg.Pool]
) -> None:
    started = asyncio.Event()

    async def hang(run: jobs.Run) -> None:
        started.set()
        await asyncio.Event().wait()

    await jobs.store.schedule(pool, KIND, "hung", ago(seconds=1))
    hung = runner(pools[0], "c0:hung", jobs.Kind(KIND, hang, lease=600))
    await hung.start()
    await started.wait()
    await hung.stop(grace=0.1)
    other = runner(pools[1], "c1:other")
    await other.start()
    try:
        await until("the given-back job done", done(pool, 1))  # at once, not after the 600 s lease
    finally:
        await other.stop()
    assert [tuple(r) for r in await effects(pool)] == [("hung", 2, False)]


async def test_a_handler_whose_claim_passed_commits_nothing(pool: asyncpg.Pool) -> None:
    """A runner that overran its lease (a clock jump) and lost the job to another can't
    complete it: ClaimLost, and its effect rolls back."""
    lost: list[bool] = []
    taken = asyncio.Event()

    async def slow(run: jobs.Run) -> None:
        await taken.wait()
        try:
            await record(run)
        except jobs.ClaimLost:
            lost.append(True)
            raise

    await jobs.store.schedule(pool, KIND, "x", ago(seconds=1))
    first = runner(pool, "c0:first", jobs.Kind(KIND, slow))
    assert await first.run_due() == 1
    await pool.execute("UPDATE jobs SET lease_until = now()")  # as if the lease passed
    second = runner(pool, "c1:second")
    assert await second.run_due() == 1
    await second.idle()
    taken.set()
    await first.idle()
    assert lost == [True]
    assert [tuple(r) for r in await effects(pool)] == [("x", 2, False)]


# -- time: late jobs and the injected clock ------------------------------------------------------


async def test_jobs_due_while_no_runner_was_up_run_on_start_marked_late(
    pool: asyncpg.Pool,
) -> None:
    await jobs.store.schedule(pool, KIND, "missed", ago(hours=2))
    await jobs.store.schedule(pool, KIND, "just", ago(seconds=1))
    seen: list[jobs.Job] = []

    async def note(run: jobs.Run) -> None:
        seen.append(run.job)
        await record(run)

    r = runner(pool, "c0:late", jobs.Kind(KIND, note, late_after=60))
    await r.start()
    try:
        await until("both overdue jobs done", done(pool, 2))
    finally:
        await r.stop()
    by_key = {j.key: j for j in seen}
    assert by_key["missed"].late and 7190 < by_key["missed"].late_by < 7300
    assert not by_key["just"].late
    assert [tuple(r) for r in await effects(pool)] == [("just", 1, False), ("missed", 1, True)]


async def test_an_injected_clock_makes_a_job_due_without_waiting(pool: asyncpg.Pool) -> None:
    in_a_minute = datetime.now(UTC) + timedelta(minutes=1)
    await jobs.store.schedule(pool, KIND, "soon", in_a_minute)
    now = datetime.now(UTC)
    r = runner(pool, "c0:clock", clock=lambda: now)
    assert await r.run_due() == 0
    outlook = await jobs.store.outlook(pool, jobs.store.Routing([KIND], 2, [0, 1]), now=now)
    assert outlook.due == {} and outlook.wait is not None and 55 < outlook.wait <= 60
    now = in_a_minute + timedelta(seconds=1)
    assert await r.run_due() == 1
    await r.idle()
    assert [tuple(x) for x in await effects(pool)] == [("soon", 1, False)]
    row = await pool.fetchrow("SELECT claimed_at, first_claimed_at FROM jobs")
    assert row["claimed_at"] == row["first_claimed_at"] == now  # the runner's clock, not the db's


# -- failures --------------------------------------------------------------------------------------


async def test_retry_backs_off_then_runs(pool: asyncpg.Pool) -> None:
    attempts: list[int] = []

    async def flaky(run: jobs.Run) -> None:
        attempts.append(run.job.attempt)
        if run.job.attempt < 3:
            raise jobs.Retry("503 from somewhere")
        await record(run)

    now = datetime.now(UTC)
    r = runner(pool, "c0:flaky", jobs.Kind(KIND, flaky, retry_delays=(10, 60)), clock=lambda: now)
    await jobs.store.schedule(pool, KIND, "f", now)
    for wait in (0, 10, 60):  # the first attempt, then each retry's delay later
        now += timedelta(seconds=wait)
        assert await r.run_due() == 1, wait
        await r.idle()
    row = await pool.fetchrow("SELECT state, attempts, error FROM jobs")
    assert (row["state"], row["attempts"]) == ("done", 3)
    assert attempts == [1, 2, 3]


async def test_retry_waits_for_its_delay(pool: asyncpg.Pool) -> None:
    async def flaky(run: jobs.Run) -> None:
        raise jobs.Retry("not yet")

    now = datetime.now(UTC)
    r = runner(pool, "c0:w", jobs.Kind(KIND, flaky, retry_delays=(30,)), clock=lambda: now)
    await jobs.store.schedule(pool, KIND, "f", now)
    assert await r.run_due() == 1
    await r.idle()
    now += timedelta(seconds=29)
    assert await r.run_due() == 0
    now += timedelta(seconds=2)
    assert await r.run_due() == 1
    await r.idle()
    assert await pool.fetchval("SELECT error FROM jobs") == "not yet"


async def test_permanent_failure_and_its_record_commit_together(pool: asyncpg.Pool) -> None:
    async def hopeless(run: jobs.Run) -> None:
        raise jobs.Failed("403 Missing Permissions")

    async def on_failed(conn: asyncpg.Connection, job: jobs.Job, error: str) -> None:
        await conn.execute("INSERT INTO effects (key, attempt) VALUES ($1, $2)", error, job.attempt)

    await jobs.store.schedule(pool, KIND, "p", ago(seconds=1))
    r = runner(pool, "c0:p", jobs.Kind(KIND, hopeless, on_failed=on_failed))
    await r.run_due()
    await r.idle()
    row = await pool.fetchrow("SELECT state, error FROM jobs")
    assert tuple(row) == ("failed", "403 Missing Permissions")
    assert [tuple(x) for x in await effects(pool)] == [("403 Missing Permissions", 1, None)]


async def test_a_handler_that_keeps_crashing_is_given_up(pool: asyncpg.Pool) -> None:
    failed: list[str] = []

    async def buggy(run: jobs.Run) -> None:
        raise RuntimeError("a bug")

    async def on_failed(conn: asyncpg.Connection, job: jobs.Job, error: str) -> None:
        failed.append(error)

    now = datetime.now(UTC)
    kind = jobs.Kind(KIND, buggy, on_failed=on_failed, max_attempts=3, retry_delays=(1,))
    r = runner(pool, "c0:bug", kind, clock=lambda: now)
    await jobs.store.schedule(pool, KIND, "b", now)
    for _ in range(3):
        assert await r.run_due() == 1
        await r.idle()
        now += timedelta(seconds=2)
    assert await r.run_due() == 0
    row = await pool.fetchrow("SELECT state, attempts FROM jobs")
    assert tuple(row) == ("failed", 3)
    assert failed == ["RuntimeError: a bug (attempt 3)"]


async def test_a_job_whose_runners_keep_dying_is_given_up(pool: asyncpg.Pool) -> None:
    await jobs.store.schedule(pool, KIND, "doomed", ago(seconds=1))
    await pool.execute("UPDATE jobs SET state = 'running', attempts = 6, lease_until = now()")
    r = runner(pool, "c0:x", jobs.Kind(KIND, record, max_attempts=6))
    assert await r.run_due() == 1
    await r.idle()
    assert tuple(await pool.fetchrow("SELECT state, attempts FROM jobs")) == ("failed", 7)
    assert await effects(pool) == []


# -- routing and registration --------------------------------------------------------------------


async def test_a_guild_s_jobs_run_on_its_shard_s_cluster_and_guildless_anywhere(
    pool: asyncpg.Pool,
) -> None:
    await jobs.store.schedule(pool, KIND, "g0", ago(seconds=1), guild_id=GUILD_ON[0])
    await jobs.store.schedule(pool, KIND, "g1", ago(seconds=1), guild_id=GUILD_ON[1])
    await jobs.store.schedule(pool, KIND, "none", ago(seconds=1))
    await jobs.store.schedule(pool, "test.unknown", "u", ago(seconds=1))
    one = runner(pool, "c1:one", shards=[1])
    assert await one.run_due() == 2
    await one.idle()
    assert [r["key"] for r in await effects(pool)] == ["g1", "none"]
    zero = runner(pool, "c0:zero", shards=[0])
    assert await zero.run_due() == 1
    await zero.idle()
    # A kind no runner registered is never claimed.
    assert (await states(pool)) == {"done": 3, "pending": 1}


async def test_a_kind_that_is_not_available_is_not_claimed_or_waited_for(
    pool: asyncpg.Pool,
) -> None:
    """A handler that needs the guild cache says so with `available`: until the worker is
    ready its due jobs stay pending, and they don't make the loop spin (the outlook leaves
    them out, so the runner sleeps until woken)."""
    ready = False
    r = runner(pool, "c0:r", jobs.Kind(KIND, record, available=lambda: ready))
    await jobs.store.schedule(pool, KIND, "cached", ago(seconds=1))
    assert await r.run_due() == 0
    outlook = await jobs.store.outlook(pool, r._routing_now(), now=None)
    assert outlook.due == {} and outlook.wait is None
    ready = True
    assert await r.run_due() == 1
    await r.idle()
    assert [x["key"] for x in await effects(pool)] == ["cached"]


# -- waking ----------------------------------------------------------------------------------------


async def test_a_job_scheduled_elsewhere_wakes_the_runner_over_redis(
    pool: asyncpg.Pool, pools: list[asyncpg.Pool], redis: aioredis.Redis, keys: Keys
) -> None:
    channel = keys("jobs", "wake")
    sleeper = runner(pools[0], "c0:sleepy", max_sleep=3600, redis=redis, wake_channel=channel)
    other = runner(pools[1], "c1:other", redis=redis, wake_channel=channel)  # not started
    await sleeper.start()
    try:
        await asyncio.wait_for(sleeper.subscribed(), 10)
        await until("the runner asleep after a round", lambda: sleeper.rounds >= 1)
        await other.schedule(KIND, "woke", datetime.now(UTC))
        await until("the job scheduled elsewhere done", done(pool, 1), within=30)
    finally:
        await sleeper.stop()
    assert [r["key"] for r in await effects(pool)] == ["woke"]


async def test_sleeps_until_the_next_due_time_not_the_poll(pool: asyncpg.Pool) -> None:
    r = runner(pool, "c0:s", max_sleep=3600)
    await jobs.store.schedule(pool, KIND, "next", datetime.now(UTC) + timedelta(seconds=0.5))
    await r.start()
    try:
        await until("the job due in 0.5 s done", done(pool, 1), within=30)
    finally:
        await r.stop()
