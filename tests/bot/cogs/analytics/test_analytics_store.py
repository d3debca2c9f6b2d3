"""Usage analytics against a real PostgreSQL: uses recorded through the batching recorder
cost a few statements per batch (the queries are counted), add up in the figures, and the
retention rolls old days up into months."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from bot.cogs.analytics import store
from bot.cogs.analytics.figures import Use, fold, hour_lines, parse_span, to_csv
from bot.cogs.analytics.recorder import Recorder

pytestmark = pytest.mark.integration

G = 4343
TODAY = date(2026, 12, 4)


def at(day: date, hour: int = 12) -> float:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()


@pytest.fixture
async def counted(migrated_dsn: str) -> AsyncIterator[tuple[asyncpg.Pool, list[str]]]:
    """A pool whose connections log every statement they run."""
    queries: list[str] = []

    async def init(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda record: queries.append(record.query))

    pool = await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=4, init=init)
    try:
        yield pool, queries
    finally:
        await pool.close()


async def test_a_thousand_uses_are_one_transaction_not_a_thousand(
    counted: tuple[asyncpg.Pool, list[str]],
) -> None:
    pool, queries = counted
    recorder = Recorder(pool, flush=0.2)
    for i in range(1000):
        outcome = "error" if i % 100 == 0 else "refused" if i % 10 == 0 else "ok"
        recorder.record(Use(G, "roll" if i % 2 else "help", outcome, i % 37, 20, at(TODAY)))
        if i % 100 == 0:
            await asyncio.sleep(0)  # the batcher's task gets to run meanwhile, as in a worker
    await recorder.drain()
    writes = [q for q in queries if "INSERT INTO analytics" in q]
    assert writes and recorder.batcher.calls <= 2
    assert len(writes) <= 3 * recorder.batcher.calls
    f = await store.figures(pool, G, 7, TODAY)
    assert f.uses == 1000 and f.errors == 10 and f.refused == 90
    assert f.active_users == 37
    assert f.per_day[-1] == 1000 and sum(f.per_day) == 1000 and len(f.per_day) == 7
    assert {c.command: c.uses for c in f.top} == {"roll": 500, "help": 500}
    assert f.top[0].avg_ms == pytest.approx(20)


async def test_figures_keep_to_their_span_and_server(pool: asyncpg.Pool) -> None:
    uses = [
        Use(G, "roll", "ok", 1, 10, at(TODAY)),
        Use(G, "roll", "ok", 2, 30, at(TODAY - timedelta(days=6))),
        Use(G, "roll", "ok", 3, 30, at(TODAY - timedelta(days=7))),  # outside 7d
        Use(G + 1, "help", "ok", 1, 5, at(TODAY)),  # another server
    ]
    await store.write(pool, fold(uses))
    await store.write(pool, fold(uses[:1]))  # added to the same rows
    f = await store.figures(pool, G, 7, TODAY)
    assert (f.uses, f.active_users) == (3, 2)
    assert f.per_day == [1, 0, 0, 0, 0, 0, 2]
    assert f.top[0].avg_ms == pytest.approx(50 / 3)
    everywhere = await store.figures(pool, None, 30, TODAY)
    assert everywhere.uses == 5 and everywhere.active_users == 3
    csv = to_csv(f)
    assert csv.splitlines()[0] == "day,uses" and f"{TODAY.isoformat()},2" in csv
    assert '"roll",3,0,0,17' in csv


async def test_retention_rolls_old_days_into_months(pool: asyncpg.Pool) -> None:
    old = TODAY - timedelta(days=120)
    uses = [Use(G, "roll", "ok", 1, 10, at(old)), Use(G, "roll", "ok", 2, 10, at(old))]
    uses += [Use(G, "roll", "ok", 1, 10, at(TODAY - timedelta(days=9)))]
    uses += [Use(G, "roll", "ok", 1, 10, at(TODAY))]
    await store.write(pool, fold(uses))
    async with pool.acquire() as conn, conn.transaction():
        hours, days, users = await store.prune(conn, TODAY)
    assert (hours, days, users) == (2, 1, 2)  # hours of 120 and 9 days ago; the 120-day rows
    month = await pool.fetchrow(
        "SELECT month, uses, latency_ms FROM analytics_months WHERE guild_id = $1", G
    )
    assert (month["month"], month["uses"], month["latency_ms"]) == (old.replace(day=1), 2, 20)
    assert await pool.fetchval("SELECT count(*) FROM analytics_days WHERE guild_id = $1", G) == 2
    assert await pool.fetchval("SELECT count(*) FROM analytics_hours WHERE guild_id = $1", G) == 1


def test_spans() -> None:
    assert [parse_span(s) for s in ("7d", "30D", "90")] == [7, 30, 90]
    with pytest.raises(Exception, match="7d, 30d or 90d"):
        parse_span("1y")


async def test_the_last_seven_days_by_hour(pool: asyncpg.Pool) -> None:
    """Per-hour rows add up by UTC hour over the last 7 days to today, whatever the span and
    the commands; an hour 7 days back is outside; the embed's lines and the CSV show them."""
    uses = [
        Use(G, "roll", "ok", 1, 10, at(TODAY, 0)),
        Use(G, "help", "error", 2, 10, at(TODAY, 0)),
        Use(G, "roll", "ok", 1, 10, at(TODAY, 23)),
        Use(G, "roll", "ok", 1, 10, at(TODAY - timedelta(days=6), 5)),
        Use(G, "roll", "ok", 1, 10, at(TODAY - timedelta(days=7), 5)),  # outside
        Use(G + 1, "roll", "ok", 1, 10, at(TODAY, 0)),  # another server
    ]
    await store.write(pool, fold(uses))
    for days in (7, 90):
        f = await store.figures(pool, G, days, TODAY)
        assert len(f.per_hour) == 7 * 24 and sum(f.per_hour) == 4
        assert f.per_hour[6 * 24 + 0] == 2 and f.per_hour[6 * 24 + 23] == 1
        assert f.per_hour[5] == 1
        assert f.hour_days[0] == TODAY - timedelta(days=6) and f.hour_days[-1] == TODAY
    lines = hour_lines(f)
    assert len(lines) == 7 and all(len(line) == 6 + 24 for line in lines)
    assert lines[-1] == "12-04 █" + " " * 22 + "▄"  # half the busiest hour
    assert lines[0][6 + 5] == "▄" and lines[1].strip() == "11-29"
    csv = to_csv(f).splitlines()
    start = csv.index("hour_utc,uses")
    assert len(csv) - start - 1 == 168
    assert "2026-12-04T00:00Z,2" in csv and "2026-11-28T05:00Z,1" in csv
    everywhere = await store.figures(pool, None, 7, TODAY)
    assert everywhere.per_hour[6 * 24] == 3
