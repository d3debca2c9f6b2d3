"""Reminder storage and delivery against real PostgreSQL and Redis: exactly-once delivery with
concurrent job runners, a dead claimer's lease reclaimed (and its completed send recognised),
late delivery, repeats scheduled with the send, cancel, shard routing, limits, wake-ups.

Deliveries are jobs of the shared scheduler (bot/jobs/, tested on its own in
tests/bot/jobs/test_job_runner.py); here its runner runs the reminders' kind
(bot/cogs/reminders/sender.py). Discord is the one thing not running: deliveries go to `Sink`,
a recording channel with the two operations the sender uses on Discord (send; find a message
by its nonce).
The real Discord path is tested end to end in tests/e2e/test_reminders.py.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis.asyncio as aioredis
from waits import until

from bot import jobs, metrics
from bot.cogs.reminders import outbox, store
from bot.cogs.reminders.options import Repeat
from bot.cogs.reminders.outbox import Due
from bot.cogs.reminders.plan import Plan, Series
from bot.cogs.reminders.render import Rendered
from bot.cogs.reminders.sender import DeliveryError, Sender
from bot.db.pool import create_pool
from ipc.client import Keys

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SHARDS = 2
# Guild ids whose shard, (id >> 22) % 2, is 0 and 1.
GUILD_ON = {0: 2 << 22, 1: 3 << 22}


@dataclass
class Sent:
    message_id: int
    channel: tuple[str, int]
    nonce: str
    at: datetime
    rendered: Rendered
    by: str


@dataclass
class Sink:
    """A channel that records what is sent to it (shared by every scheduler of a test)."""

    sent: list[Sent] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    delay: float = 0.0  # s each send takes, as a round trip to Discord would
    block: asyncio.Event | None = None  # sends wait for this (never set: a hung send)
    fail_with: Exception | None = None

    def transport(self, name: str) -> SinkTransport:
        return SinkTransport(self, name)

    def nonces(self) -> list[str]:
        return [s.nonce for s in self.sent]


@dataclass
class SinkTransport:
    sink: Sink
    name: str

    async def find(self, due: Due, since: datetime) -> int | None:
        for s in self.sink.sent:
            if s.nonce == due.nonce and s.at >= since:
                return s.message_id
        return None

    async def send(self, due: Due, message: Rendered) -> int:
        if self.sink.block is not None:
            await self.sink.block.wait()
        if self.sink.delay:
            await asyncio.sleep(self.sink.delay)
        if self.sink.fail_with is not None:
            raise self.sink.fail_with
        channel = ("dm", due.author_id) if due.via == "dm" else ("channel", due.channel_id)
        sent = Sent(next(self.sink.ids), channel, due.nonce, datetime.now(UTC), message, self.name)
        self.sink.sent.append(sent)
        return sent.message_id


@pytest.fixture
async def pools(migrated_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[list[asyncpg.Pool]]:
    """Two more pools on the same database: two workers, each with its own connections."""
    made = [await create_pool(migrated_dsn, min_size=1, max_size=5) for _ in range(2)]
    yield made
    for p in made:
        await p.close()


def one_off(
    at: datetime,
    *,
    via: str = "channel",
    target: str = "me",
    leads: tuple[int, ...] = (0,),
    repeat: Repeat | None = None,
    times: int | None = None,
    message: str = "Session",
) -> Plan:
    series = Series(
        first_at=at,
        local_at=at.astimezone(UTC).replace(tzinfo=None),
        zone="UTC",
        leads=leads,
        repeat=repeat,
        times=times,
        until=at + timedelta(days=30) if repeat else None,
    )
    return Plan(message=message, series=series, target=target, via=via)


async def add(
    pool: asyncpg.Pool,
    plan: Plan,
    *,
    author: int = 1,
    guild: int | None = GUILD_ON[0],
    channel: int = 100,
    limit: int = 10_000,
) -> int:
    return await store.create(
        pool, plan, author_id=author, guild_id=guild, channel_id=channel, limit=limit
    )


def scheduler(
    pool: asyncpg.Pool,
    sink: Sink,
    name: str,
    *,
    shards: list[int] | None = None,
    lease: float = 5.0,
    max_attempts: int = 6,
    retry_delays: tuple[float, ...] = (5, 30, 120, 600),
    **kw: object,
) -> jobs.JobRunner:
    """A worker's job runner with the reminders' kind, sending to `sink`."""
    options: dict[str, object] = {"batch": 10, "max_sleep": 0.2}
    options.update(kw)
    runner = jobs.JobRunner(
        pool,
        worker=name,
        shard_count=SHARDS,
        shard_ids=[0, 1] if shards is None else shards,
        cluster=name,
        **options,  # type: ignore[arg-type]
    )
    sender = Sender(
        pool,
        sink.transport(name),
        cluster=name,
        lease=lease,
        max_attempts=max_attempts,
        retry_delays=retry_delays,
    )
    runner.register(sender.kind())
    return runner


def as_job(row: jobs.store.Claimed) -> jobs.Job:
    late_by = max(0.0, (row.claimed_at - row.due_at).total_seconds())
    return jobs.Job(
        id=row.id,
        kind=row.kind,
        key=row.key,
        guild_id=row.guild_id,
        due_at=row.due_at,
        payload=row.payload,
        attempt=row.attempts,
        first_claimed_at=row.first_claimed_at,
        claimed_at=row.claimed_at,
        late_by=late_by,
        late=late_by >= 60,
    )


async def claim(
    pool: asyncpg.Pool,
    worker: str,
    *,
    shards: list[int] | None = None,
    limit: int = 10,
    lease: float = 60.0,
) -> list[tuple[jobs.Job, Due]]:
    """Claim due deliveries' jobs as a runner would, without running them."""
    rows = await jobs.store.claim(
        pool,
        jobs.store.Routing([outbox.KIND], SHARDS, [0, 1] if shards is None else shards),
        worker=worker,
        leases={outbox.KIND: lease},
        limit=limit,
        now=None,
    )
    found = []
    for row in rows:
        job = as_job(row)
        due = await outbox.load(pool, job)
        assert due is not None
        found.append((job, due))
    return found


async def mark_sent(pool: asyncpg.Pool, job: jobs.Job, due: Due, worker: str) -> bool:
    """What the sender does after a send: the job done and the delivery marked, together."""
    async with pool.acquire() as conn, conn.transaction():
        if not await jobs.store.finish(conn, job.id, worker, state="done"):
            return False
        await outbox.finish(conn, due, status="sent", message_id=1)
    return True


async def statuses(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT status, count(*) AS n FROM reminder_deliveries GROUP BY 1")
    return {r["status"]: r["n"] for r in rows}


async def job_states(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT state, count(*) AS n FROM jobs GROUP BY 1")
    return {r["state"]: r["n"] for r in rows}


async def all_sent(pool: asyncpg.Pool, n: int) -> bool:
    return (await statuses(pool)).get("sent", 0) == n


def counter(metric: object, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())  # type: ignore[attr-defined]


# -- exactly once ------------------------------------------------------------------------------


async def test_concurrent_claims_never_overlap(
    pool: asyncpg.Pool, pools: list[asyncpg.Pool]
) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    for i in range(120):
        await add(pool, one_off(past + timedelta(microseconds=i), via="dm"))

    async def claimer(p: asyncpg.Pool, name: str) -> list[int]:
        got: list[int] = []
        while True:
            batch = await claim(p, name, limit=7)
            if not batch:
                return got
            got += [due.id for _, due in batch]

    results = await asyncio.gather(
        claimer(pools[0], "a"), claimer(pools[1], "b"), claimer(pool, "c"), claimer(pools[0], "d")
    )
    claimed = [i for r in results for i in r]
    assert len(claimed) == len(set(claimed)) == 120
    owners = await pool.fetch("SELECT claimed_by, attempts FROM jobs")
    assert len(owners) == 120 and all(r["attempts"] == 1 for r in owners)
    by = {name: len(r) for name, r in zip("abcd", results, strict=True)}
    assert {r["claimed_by"] for r in owners} == {k for k, v in by.items() if v}


async def test_two_schedulers_deliver_each_reminder_exactly_once(
    pool: asyncpg.Pool, pools: list[asyncpg.Pool]
) -> None:
    sink = Sink(delay=0.002)
    soon = datetime.now(UTC) + timedelta(seconds=0.5)
    n_dm, n_channel = 60, 60
    for i in range(n_dm):
        await add(pool, one_off(soon, via="dm"), author=1000 + i)
    for i in range(n_channel):
        await add(pool, one_off(soon), guild=GUILD_ON[i % 2], channel=200 + i)
    a = scheduler(pools[0], sink, "a")
    b = scheduler(pools[1], sink, "b")
    await a.start()
    await b.start()
    try:
        await until("every reminder sent", lambda: all_sent(pool, n_dm + n_channel))
    finally:
        await a.stop()
        await b.stop()
    nonces = sink.nonces()
    assert len(nonces) == len(set(nonces)) == n_dm + n_channel
    rows = await pool.fetch("SELECT nonce, message_id, attempts FROM reminder_deliveries")
    assert await job_states(pool) == {"done": n_dm + n_channel}
    assert {r["nonce"] for r in rows} == set(nonces)
    by_nonce = {s.nonce: s.message_id for s in sink.sent}
    assert all(r["message_id"] == by_nonce[r["nonce"]] for r in rows)
    assert all(r["attempts"] == 1 for r in rows)
    assert await pool.fetchval("SELECT count(*) FROM reminders WHERE status = 'done'") == 120


async def test_channel_reminders_go_to_the_cluster_owning_the_shard(
    pool: asyncpg.Pool, pools: list[asyncpg.Pool]
) -> None:
    sink = Sink()
    past = datetime.now(UTC) - timedelta(seconds=1)
    for shard in (0, 1):
        for i in range(5):
            await add(pool, one_off(past), guild=GUILD_ON[shard], channel=shard * 100 + i)
    for i in range(6):
        await add(pool, one_off(past, via="dm"), author=50 + i)
    zero = scheduler(pools[0], sink, "zero", shards=[0])
    one = scheduler(pools[1], sink, "one", shards=[1])
    await zero.start()
    try:
        await until("shard 0's channels and every DM sent", lambda: all_sent(pool, 5 + 6))
        assert {s.channel[1] for s in sink.sent if s.channel[0] == "channel"} == set(range(5))
        await one.start()
        await until("shard 1's channels sent too", lambda: all_sent(pool, 16))
    finally:
        await zero.stop()
        await one.stop()
    shard1 = {s.by for s in sink.sent if s.channel[0] == "channel" and s.channel[1] >= 100}
    assert shard1 == {"one"}
    assert len(sink.nonces()) == len(set(sink.nonces())) == 16


# -- leases, crashes and restarts ---------------------------------------------------------------


async def test_dead_claimers_leases_are_reclaimed_and_sent_once(
    pool: asyncpg.Pool, pools: list[asyncpg.Pool]
) -> None:
    """A worker claims three deliveries and is killed: after sending the first (before marking
    it), before sending the second, and the third never reached. After the lease passes
    another worker delivers the second and third, and recognises the first by its nonce."""
    sink = Sink()
    past = datetime.now(UTC) - timedelta(seconds=1)
    for i in range(3):
        await add(pool, one_off(past + timedelta(milliseconds=i)), channel=300 + i)
    dead = [due for _, due in await claim(pools[0], "c9:dead", limit=3, lease=1.0)]
    assert [d.channel_id for d in dead] == [300, 301, 302]
    # It sent the first; then it was killed.
    await sink.transport("dead").send(dead[0], Rendered("x", "t", "d", "f", (1,)))
    already = counter(metrics.REMINDERS_FIRED, "live", "already_sent")
    reclaimed = counter(metrics.REMINDERS_RECLAIMED, "live")
    live = scheduler(pools[1], sink, "live")
    await live.start()
    try:
        await until("the dead claimer's three sent", lambda: all_sent(pool, 3))
    finally:
        await live.stop()
    assert sorted(sink.nonces()) == sorted(d.nonce for d in dead)  # each exactly once
    assert [s.by for s in sink.sent].count("dead") == 1
    rows = await pool.fetch(
        "SELECT r.channel_id, d.attempts, j.claimed_by, d.message_id "
        "FROM reminder_deliveries d JOIN reminders r ON r.id = d.reminder_id "
        "JOIN jobs j ON j.key = 'delivery:' || d.id ORDER BY r.channel_id"
    )
    assert [r["attempts"] for r in rows] == [2, 2, 2]
    assert {r["claimed_by"] for r in rows} == {"live"}
    assert rows[0]["message_id"] == sink.sent[0].message_id  # the dead worker's message
    assert counter(metrics.REMINDERS_FIRED, "live", "already_sent") == already + 1
    assert counter(metrics.REMINDERS_RECLAIMED, "live") == reclaimed + 3


async def test_a_live_lease_is_not_taken(pool: asyncpg.Pool) -> None:
    await add(pool, one_off(datetime.now(UTC) - timedelta(seconds=1)))
    first = await claim(pool, "a", limit=5)
    second = await claim(pool, "b", limit=5)
    assert len(first) == 1 and second == []
    # And b can't mark a's delivery.
    job, due = first[0]
    assert not await mark_sent(pool, job, due, "b")
    assert await statuses(pool) == {"pending": 1}
    assert await mark_sent(pool, job, due, "a")
    assert await statuses(pool) == {"sent": 1}


async def test_restarted_cluster_frees_its_predecessors_claims(pool: asyncpg.Pool) -> None:
    await add(pool, one_off(datetime.now(UTC) - timedelta(seconds=1)))
    await add(pool, one_off(datetime.now(UTC) - timedelta(seconds=1)), guild=GUILD_ON[1])
    await claim(pool, "c1:old", shards=[0])
    await claim(pool, "c10:other", shards=[1])
    assert await jobs.store.expire_predecessors(pool, "c1:", "c1:new", now=None) == 1
    again = await claim(pool, "c1:new")
    assert [d.guild_id for _, d in again] == [GUILD_ON[0]]  # cluster 10's live lease is kept
    assert again[0][1].attempts == 2


async def test_stop_gives_back_what_it_could_not_send(
    pool: asyncpg.Pool, pools: list[asyncpg.Pool]
) -> None:
    sink = Sink(block=asyncio.Event())  # every send hangs
    await add(pool, one_off(datetime.now(UTC) - timedelta(seconds=1)))
    hung = scheduler(pools[0], sink, "hung", lease=600)
    await hung.start()

    async def claimed() -> bool:
        return (await job_states(pool)).get("running", 0) == 1

    await until("the delivery claimed", claimed)
    await hung.stop(grace=0.2)
    assert sink.sent == []
    sink.block = None
    other = scheduler(pools[1], sink, "other")
    await other.start()
    try:
        # At once, not after the 600 s lease.
        await until("the given-back delivery sent", lambda: all_sent(pool, 1))
    finally:
        await other.stop()
    assert [s.by for s in sink.sent] == ["other"]


async def test_no_claims_while_draining(pool: asyncpg.Pool) -> None:
    sink = Sink()
    accepting = False
    s = scheduler(pool, sink, "draining", accepting=lambda: accepting)
    await add(pool, one_off(datetime.now(UTC) - timedelta(seconds=1)))
    await s.start()
    try:
        await until("a round gone by, claiming nothing", lambda: s.rounds >= 1)
        assert (await job_states(pool)) == {"pending": 1}
        accepting = True
        s.wake()
        await until("the delivery sent once accepting", lambda: all_sent(pool, 1))
    finally:
        await s.stop()


# -- failures ------------------------------------------------------------------------------------


async def test_transient_failure_is_retried_after_checking_for_an_earlier_send(
    pool: asyncpg.Pool,
) -> None:
    sink = Sink(fail_with=DeliveryError("503 unavailable", permanent=False))
    await add(pool, one_off(datetime.now(UTC) - timedelta(seconds=1)))
    s = scheduler(pool, sink, "r", retry_delays=(0.2,))
    await s.start()
    try:

        async def retrying() -> bool:
            row = await pool.fetchrow("SELECT state, attempts, error FROM jobs")
            return row["state"] == "pending" and row["attempts"] >= 1 and row["error"] is not None

        await until("the failed send waiting for its retry", retrying)
        sink.fail_with = None
        await until("the retry sent", lambda: all_sent(pool, 1))
    finally:
        await s.stop()
    assert len(sink.sent) == 1
    assert await pool.fetchval("SELECT attempts FROM reminder_deliveries") >= 2
    assert "503 unavailable" in await pool.fetchval("SELECT error FROM jobs")


async def test_permanent_failure_is_marked_failed_and_a_repeat_continues(
    pool: asyncpg.Pool,
) -> None:
    sink = Sink(fail_with=DeliveryError("403 Cannot send messages to this user", permanent=True))
    first = datetime.now(UTC) - timedelta(seconds=1)
    await add(pool, one_off(first, via="dm", repeat=Repeat("hour", 1), times=3))
    s = scheduler(pool, sink, "p")
    await s.start()
    try:

        async def failed() -> bool:
            return (await statuses(pool)).get("failed", 0) == 1

        await until("the delivery marked failed", failed)
    finally:
        await s.stop()
    rows = await pool.fetch(
        "SELECT occurrence, status, error, fire_at FROM reminder_deliveries ORDER BY occurrence"
    )
    assert [(r["occurrence"], r["status"]) for r in rows] == [(0, "failed"), (1, "pending")]
    assert "403" in rows[0]["error"]
    assert rows[1]["fire_at"] == first + timedelta(hours=1)


async def test_a_delivery_that_keeps_crashing_is_given_up(pool: asyncpg.Pool) -> None:
    sink = Sink(fail_with=RuntimeError("a bug in rendering"))
    await add(pool, one_off(datetime.now(UTC) - timedelta(seconds=1)))
    errors = counter(metrics.REMINDERS_FIRED, "buggy", "error")
    s = scheduler(pool, sink, "buggy", max_attempts=2, retry_delays=(0.1,))
    await s.start()
    try:

        async def failed() -> bool:
            return (await statuses(pool)).get("failed", 0) == 1

        await until("the delivery given up", failed)
    finally:
        await s.stop()
    row = await pool.fetchrow("SELECT attempts, error FROM reminder_deliveries")
    assert (row["attempts"], row["error"]) == (2, "RuntimeError: a bug in rendering (attempt 2)")
    assert counter(metrics.REMINDERS_FIRED, "buggy", "error") == errors + 2
    assert sink.sent == []


# -- late delivery, repeats, cancel -------------------------------------------------------------


async def test_missed_reminders_fire_on_start_marked_late(pool: asyncpg.Pool) -> None:
    sink = Sink()
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2, minutes=5)
    await add(pool, one_off(two_hours_ago, message="Missed"))
    late = counter(metrics.REMINDERS_LATE, "late")
    s = scheduler(pool, sink, "late")
    await s.start()
    try:
        await until("the missed reminder sent", lambda: all_sent(pool, 1))
    finally:
        await s.stop()
    (sent,) = sink.sent
    assert "(late by 2h 5m)" in sent.rendered.content
    assert sent.rendered.description == "Missed"
    assert 7500 <= await pool.fetchval("SELECT late_seconds FROM reminder_deliveries") < 7600
    assert counter(metrics.REMINDERS_LATE, "late") == late + 1


async def test_repeat_is_scheduled_with_the_send_and_missed_repeats_collapse(
    pool: asyncpg.Pool,
) -> None:
    sink = Sink()
    first = datetime.now(UTC) - timedelta(hours=5, minutes=10)
    rid = await add(pool, one_off(first, repeat=Repeat("hour", 1), times=10, leads=(600, 0)))
    s = scheduler(pool, sink, "rep")
    await s.start()
    try:
        await until("event 0's two deliveries sent", lambda: all_sent(pool, 2))
    finally:
        await s.stop()
    rows = await pool.fetch(
        "SELECT occurrence, lead, status, event_at, fire_at FROM reminder_deliveries "
        "WHERE reminder_id = $1 ORDER BY occurrence, lead",
        rid,
    )
    # Event 0's two deliveries fired once each, late; for each lead the next is event 6 (the
    # first whose time for that lead is still ahead), not events 1-5 one after another.
    assert [(r["occurrence"], r["lead"], r["status"]) for r in rows] == [
        (0, 0, "sent"),
        (0, 600, "sent"),
        (6, 0, "pending"),
        (6, 600, "pending"),
    ]
    assert rows[2]["event_at"] == first + timedelta(hours=6)
    assert rows[3]["fire_at"] == first + timedelta(hours=6, minutes=-10)
    assert len(sink.sent) == 2


async def test_cancel_stops_pending_and_future_repeats(pool: asyncpg.Pool) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    rid = await add(pool, one_off(past, repeat=Repeat("hour", 1), times=5, leads=(60, 0)))
    # One delivery is being sent right now; the other is still pending.
    ((job, due),) = await claim(pool, "w", limit=1)
    async with pool.acquire() as conn, conn.transaction():
        result = await store.cancel(conn, rid, by=1)
    assert result == store.Cancelled(deliveries=1, firing=1)
    assert await job_states(pool) == {"running": 1, "cancelled": 1}
    # The send in flight completes; no repeat is added to a cancelled reminder.
    assert await mark_sent(pool, job, due, "w")
    assert await statuses(pool) == {"sent": 1, "cancelled": 1}
    assert await job_states(pool) == {"done": 1, "cancelled": 1}
    assert await pool.fetchval("SELECT status FROM reminders WHERE id = $1", rid) == "cancelled"
    async with pool.acquire() as conn, conn.transaction():
        assert await store.cancel(conn, rid, by=1) is None


async def test_cancel_racing_a_finish_never_leaves_a_pending_repeat(pool: asyncpg.Pool) -> None:
    for _ in range(20):
        past = datetime.now(UTC) - timedelta(seconds=1)
        rid = await add(pool, one_off(past, repeat=Repeat("hour", 1), times=5))
        ((job, due),) = await claim(pool, "w", limit=1)

        async def cancel(reminder_id: int = rid) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await store.cancel(conn, reminder_id, by=1)

        await asyncio.gather(mark_sent(pool, job, due, "w"), cancel())
        pending = await pool.fetchval(
            "SELECT count(*) FROM reminder_deliveries "
            "WHERE reminder_id = $1 AND status = 'pending'",
            rid,
        )
        assert pending == 0
    assert (await job_states(pool)).get("pending", 0) == 0


# -- creating, limits, lists, players, zones --------------------------------------------------


async def test_active_limit_holds_under_concurrent_creates(pool: asyncpg.Pool) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)

    async def create() -> bool:
        try:
            await add(pool, one_off(soon), author=7, limit=25)
        except store.LimitReached:
            return False
        return True

    results = await asyncio.gather(*(create() for _ in range(40)))
    assert results.count(True) == 25
    with pytest.raises(store.LimitReached) as err:
        await add(pool, one_off(soon), author=7, limit=25)
    assert err.value.active == 25
    await add(pool, one_off(soon), author=8, limit=25)  # someone else still can


async def test_list_shows_the_next_fire_of_active_reminders(pool: asyncpg.Pool) -> None:
    soon = datetime.now(UTC) + timedelta(hours=3)
    a = await add(pool, one_off(soon, leads=(3600, 0)), author=5)
    b = await add(pool, one_off(soon - timedelta(hours=1)), author=5, guild=GUILD_ON[1])
    await add(pool, one_off(soon), author=6)
    mine = await store.list_active(pool, author_id=5)
    assert [r.id for r in mine] == [b, a] or [r.id for r in mine] == [a, b]
    by_id = {r.id: r for r in mine}
    assert by_id[a].next_fire == soon - timedelta(hours=1) and by_id[a].pending == 2
    assert [r.id for r in await store.list_active(pool, guild_id=GUILD_ON[1])] == [b]


async def test_players_come_from_the_tabletop_table(pool: asyncpg.Pool) -> None:
    assert await outbox.table_players(pool, 900) == ()
    await pool.execute(
        "INSERT INTO tabletop_tables (channel_id, guild_id, gm_id) VALUES (900, 1, 50)"
    )
    await pool.execute(
        "INSERT INTO tabletop_combatants (channel_id, name, user_id, is_npc) VALUES "
        "(900, 'Ann', 51, false), (900, 'Bob', 52, false), (900, 'Goblin', NULL, true), "
        "(900, 'Spirit', 53, true)"
    )
    assert await outbox.table_players(pool, 900) == (50, 51, 52)


async def test_players_target_pings_the_table(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO tabletop_tables (channel_id, guild_id, gm_id) VALUES (901, 1, 60)"
    )
    await pool.execute(
        "INSERT INTO tabletop_combatants (channel_id, name, user_id) VALUES (901, 'Cy', 61)"
    )
    await add(
        pool, one_off(datetime.now(UTC) - timedelta(seconds=1), target="players"), channel=901
    )
    sink = Sink()
    s = scheduler(pool, sink, "players")
    await s.start()
    try:
        await until("the reminder sent", lambda: all_sent(pool, 1))
    finally:
        await s.stop()
    (sent,) = sink.sent
    assert sent.rendered.content.startswith("⏰ <@60> <@61>")
    assert sent.rendered.mentions == (60, 61)


async def test_timezone_setting(pool: asyncpg.Pool) -> None:
    assert await store.get_zone(pool, 77) is None
    await store.set_zone(pool, 77, "Europe/Berlin")
    assert await store.get_zone(pool, 77) == "Europe/Berlin"
    await store.set_zone(pool, 77, "UTC")
    assert await store.get_zone(pool, 77) == "UTC"


# -- waking up -----------------------------------------------------------------------------------


async def test_sleeps_until_the_next_due_time_not_the_poll(pool: asyncpg.Pool) -> None:
    """With an hour-long poll and no wake-up channel, a reminder due in a second is still
    delivered: the loop sleeps until the next due time it read from the database."""
    sink = Sink()
    await add(pool, one_off(datetime.now(UTC) + timedelta(seconds=1)))
    s = scheduler(pool, sink, "sleepy", max_sleep=3600)
    await s.start()
    try:
        await until("the reminder due in a second sent", lambda: all_sent(pool, 1), within=30)
    finally:
        await s.stop()
    assert len(sink.sent) == 1


async def test_a_new_reminder_elsewhere_wakes_the_scheduler_over_redis(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    """The scheduler sleeps with nothing scheduled (an hour-long poll); a reminder created by
    another process, which publishes the wake-up notice, is delivered without waiting."""
    sink = Sink()
    channel = keys("reminders", "wake")
    s = scheduler(pool, sink, "woken", max_sleep=3600, redis=redis, wake_channel=channel)
    await s.start()
    try:
        await asyncio.wait_for(s.subscribed(), 10)
        # The loop has read the (empty) outlook and gone to sleep, for up to an hour.
        await until("the scheduler asleep", lambda: s.rounds >= 1)
        await add(pool, one_off(datetime.now(UTC) + timedelta(milliseconds=200)))
        await redis.publish(channel, b"new")
        await until("the woken scheduler's send", lambda: all_sent(pool, 1), within=30)
    finally:
        await s.stop()
    assert len(sink.sent) == 1
