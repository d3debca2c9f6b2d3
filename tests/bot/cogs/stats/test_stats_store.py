"""The statistics' SQL against a real PostgreSQL: batched day rows add up, renames keep the last
two times, settings and counters, pruning."""

from __future__ import annotations

import time
from datetime import date

import asyncpg
import pytest

from bot.cogs.stats import store
from bot.cogs.stats.tally import Tallies

pytestmark = pytest.mark.integration

G = 4242
D = date(2026, 12, 3)


async def test_flushes_add_up_and_keep_the_latest_member_count(pool: asyncpg.Pool) -> None:
    t = Tallies()
    for i in range(5):
        t.message(G, 10 + i % 2, D)
    t.join(G, D, 101)
    t.seen(G, D, members=None, online=30)
    t.ban(G, D, 7, "Raider")
    await store.flush(pool, t.take())
    t.message(G, 10, D)
    t.leave(G, D, 100)
    t.seen(G, D, members=None, online=12)
    await store.flush(pool, t.take())
    [row] = await store.days(pool, G, D, D)
    assert (row.joins, row.leaves, row.bans, row.messages) == (1, 1, 1, 6)
    assert row.peak_online == 30 and row.members == 100
    assert await store.channel_totals(pool, G, D, D) == {10: 4, 11: 2}
    assert await store.ban_names(pool, G, D, D) == ["Raider"]


async def test_a_counter_remembers_its_last_two_renames(pool: asyncpg.Pool) -> None:
    await store.set_counter(pool, G, "members", 555, template="M {count}", shown="M 1")
    now = time.time()
    for i in range(3):
        await store.renamed(pool, 555, f"M {i}", now + i)
    [row] = await store.counters(pool, [G])
    assert row.shown == "M 2"
    assert [round(t - now) for t in row.renames] == [1, 2]
    # Adopting the channel for another counter moves it; a new channel starts with no history.
    await store.set_counter(pool, G, "bans", 555, template="B {count}", shown="B 0")
    rows = await store.counters(pool, [G])
    assert [(r.kind, r.channel_id) for r in rows] == [("bans", 555)]
    assert await store.set_template(pool, G, "members", "x {count}") is None
    assert [r.kind for r in await store.drop_counters(pool, G)] == ["bans"]


async def test_settings_and_pruning(pool: asyncpg.Pool) -> None:
    s = await store.update_settings(pool, G, report_channel_id=9, tz="Europe/Paris")
    assert (s.report_channel_id, s.tz, s.report_hour, s.daily, s.weekly) == (
        9,
        "Europe/Paris",
        9,
        True,
        False,
    )
    s = await store.update_settings(pool, G, weekly=True, report_hour=18)
    assert (s.report_channel_id, s.report_hour, s.weekly) == (9, 18, True)
    with pytest.raises(ValueError, match="not a statistics setting"):
        await store.update_settings(pool, G, owner=1)
    t = Tallies()
    t.message(G, 1, date(2025, 1, 1))
    t.message(G, 1, D)
    await store.flush(pool, t.take())
    assert await store.prune(pool, date(2025, 11, 1)) == 1
    assert [r.day for r in await store.days(pool, G, date(2020, 1, 1), D)] == [D]


async def test_a_server_year_is_about_600_kb(pool: asyncpg.Pool) -> None:
    """The size docs/stats.md states: a server's year of day rows with 10 active channels a
    day, 2 bans a week (tables and indexes, as PostgreSQL stores them)."""
    from datetime import timedelta

    t = Tallies()
    first = date(2025, 12, 4)
    for i in range(365):
        day = first + timedelta(days=i)
        for channel in range(10):
            t.message(G, 1000 + channel, day)
        t.join(G, day, 500 + i)
        t.seen(G, day, members=None, online=40)
        if i % 7 in (0, 3):
            t.ban(G, day, 10**17 + i, f"raider{i}")
    await store.flush(pool, t.take())
    await pool.execute("VACUUM ANALYZE stats_days, stats_channel_days, stats_bans")
    size = await pool.fetchval(
        "SELECT sum(pg_total_relation_size(c)) FROM unnest("
        "ARRAY['stats_days', 'stats_channel_days', 'stats_bans']::regclass[]) c"
    )
    print(f"bytes per server per year: {size:,}")
    assert 300_000 < size < 800_000
